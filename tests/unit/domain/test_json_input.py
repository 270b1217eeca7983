"""``loads_unique``: its fast colon-count proof never lets a duplicate key through."""

from __future__ import annotations

import json
import random

import orjson
import pytest

from ledger.domain.errors import BadRequest, DuplicateKey
from ledger.domain.json_input import loads_unique, unique_pairs

#: pieces of text chosen to confuse a byte-level count: colons, quotes, escapes
TEXTS = ["a", "b", ":", '":', '\\":', "\u00e9", "a:b", '"', "\\", " : ", "\u2028", "x" * 3]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(TEXTS) for _ in range(rng.randint(0, 3)))


def _encode_string(rng: random.Random, value: str) -> str:
    """A JSON string for ``value``, sometimes with needless \\u escapes."""
    out = []
    for char in value:
        if char in '"\\' or rng.random() < 0.2:
            out.append(
                f"\\u{ord(char):04x}" if rng.random() < 0.5 or char not in '"\\' else "\\" + char
            )
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _document(rng: random.Random, depth: int = 0) -> str:
    kind = rng.random()
    if depth > 3 or kind < 0.3:
        return rng.choice(["1", "null", "true", "2.5", _encode_string(rng, _text(rng))])
    if kind < 0.45:
        return "[" + ", ".join(_document(rng, depth + 1) for _ in range(rng.randint(0, 3))) + "]"
    keys = [_text(rng) for _ in range(rng.randint(0, 4))]
    if keys and rng.random() < 0.3:
        keys.append(rng.choice(keys))  # a duplicate
    rng.shuffle(keys)
    sep = rng.choice([":", " : ", ":\n"])
    members = [_encode_string(rng, k) + sep + _document(rng, depth + 1) for k in keys]
    return "{" + ", ".join(members) + "}"


def _truth(raw: bytes) -> bool:
    """Whether ``raw`` has a duplicate key, by the exact and slow way."""
    try:
        json.loads(raw, object_pairs_hook=unique_pairs)
    except DuplicateKey:
        return True
    return False


def test_the_fast_path_agrees_with_the_exact_one_on_random_documents() -> None:
    rng = random.Random(10)
    seen = {True: 0, False: 0}
    for _ in range(20_000):
        raw = _document(rng).encode()
        try:
            orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue  # (a lone surrogate from the escapes) not our question
        doubled = _truth(raw)
        seen[doubled] += 1
        if doubled:
            with pytest.raises(DuplicateKey):
                loads_unique(raw)
        else:
            assert loads_unique(raw) == orjson.loads(raw), raw
    assert min(seen.values()) > 1000, seen  # both kinds were tried


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1,"a":2}',
        b'{"a":1,"b":"\\u0022:","a":2}',  # an escape that hides a colon-quote from a byte count
        b'{"a":"x:y","a":1}',
        b'{"a" :1,"a":1}',
        b'[{"k":{"k":1,"k":1}}]',
        b'{"\\u0061":1,"a":2}',
    ],
)
def test_a_duplicate_is_refused_naming_the_key(raw: bytes) -> None:
    with pytest.raises(DuplicateKey) as caught:
        loads_unique(raw)
    assert caught.value.as_dict()["code"] == "duplicate_key"
    assert caught.value.field in ("a", "k")


def test_a_long_duplicate_key_is_named_by_its_prefix() -> None:
    key = "k" * 10_000
    with pytest.raises(DuplicateKey) as caught:
        loads_unique(orjson.dumps({key: 1})[:-1] + b',"' + key.encode() + b'":2}')
    assert len(caught.value.message) < 200 and len(caught.value.field or "") < 100


@pytest.mark.parametrize("raw", [b"1", b'"a:b"', b"[]", b"{}", b'{"a":{"b":[1,{"c":":"}]}}'])
def test_unique_documents_come_back_as_orjson_reads_them(raw: bytes) -> None:
    assert loads_unique(raw) == orjson.loads(raw)


def test_nesting_the_stdlib_cannot_check_is_a_bad_request() -> None:
    raw = b'{"\\u0061":' * 1000 + b"1" + b"}" * 1000  # an escape: the exact path is taken
    with pytest.raises(BadRequest):
        loads_unique(raw)


def test_invalid_json_is_orjsons_error() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        loads_unique(b'{"a":')
