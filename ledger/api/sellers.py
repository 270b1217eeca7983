"""``/v1/sellers``: register a seller, record the incubator's curation."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from ledger.api.auth import require
from ledger.api.context import LEDGER, SETTINGS
from ledger.api.responses import json_response, read_json
from ledger.api.spec import (
    CHANNEL,
    DAY,
    ID,
    Param,
    Reply,
    json_pattern,
    obj,
    recorded_and,
    ref,
    spec,
)
from ledger.domain.commands import CHANNELS, parse_day, parse_identifier, reject_nul
from ledger.domain.districts import district_in
from ledger.domain.errors import BadRequest, ValidationError
from ledger.domain.sellers import CERTIFICATION_KINDS, CURATION_STATUSES

__all__ = ["parse_curation", "post_curation", "post_sellers"]

NAME_CHARS_MAX: Final = 200
DISTRICT_CHARS_MAX: Final = 100
NIB_CHARS_MAX: Final = 32
CERTIFICATIONS_MAX: Final = 50
CERTIFICATION_NUMBER_CHARS_MAX: Final = 64

#: a channel's account id (a Shopee shop id, a Tokopedia shop domain): printable, no spaces
_CHANNEL_ACCOUNT: Final = re.compile(r"\A[\x21-\x7e]{1,64}\Z")

_REGISTERED: Final = recorded_and({"seller_id": ID})


@spec(
    "Register a seller",
    {201: Reply(_REGISTERED, "registered"), 200: Reply(_REGISTERED, "the same seller again")},
    errors=(409, 422),
    body=obj(
        {
            "seller_id": ID,
            "name": {"type": "string", "minLength": 1, "maxLength": NAME_CHARS_MAX},
            "district": {"type": "string", "minLength": 1, "maxLength": DISTRICT_CHARS_MAX},
            "nib": {"type": "string", "minLength": 1, "maxLength": NIB_CHARS_MAX},
            "channels": {
                "type": "object",
                "propertyNames": CHANNEL,
                "additionalProperties": {
                    "type": ["string", "integer"],
                    "pattern": json_pattern(_CHANNEL_ACCOUNT),
                    "description": "the seller's account id on that channel (a shop id)",
                },
            },
        },
        optional=("district", "nib", "channels"),
    ),
)
@require("admin")
async def post_sellers(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    reject_nul(body)
    seller_id = parse_identifier(body.get("seller_id"), "seller_id")
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= NAME_CHARS_MAX:
        raise ValidationError(f"name must be 1-{NAME_CHARS_MAX} characters", field="name")
    district = _optional_text(body, "district", DISTRICT_CHARS_MAX)
    districts = request.app[SETTINGS].districts
    if district is not None and districts:
        known = district_in(district, districts)
        if known is None:
            raise ValidationError(
                f"district must be one of the city's: {', '.join(districts)}", field="district"
            )
        district = known
    nib = _optional_text(body, "nib", NIB_CHARS_MAX)
    channels = body.get("channels")
    if channels is None:
        channels = {}
    if not isinstance(channels, dict):
        raise ValidationError("channels must map a channel to an account id", field="channels")
    clean: dict[str, str] = {}
    for channel, account in channels.items():
        if channel not in CHANNELS:
            raise ValidationError(
                f"unknown channel {channel[:20]!r}; known: {', '.join(sorted(CHANNELS))}",
                field="channels",
            )
        if isinstance(account, int) and not isinstance(account, bool):
            account = str(account)
        if not isinstance(account, str) or not _CHANNEL_ACCOUNT.match(account):
            raise ValidationError(
                f"account for {channel} must be 1-64 printable characters without spaces",
                field="channels",
            )
        clean[channel] = account
    occurred_at = datetime.now(UTC).isoformat()
    fingerprint = orjson.dumps(
        {"seller_id": seller_id, "name": name, "district": district, "nib": nib, "channels": clean},
        option=orjson.OPT_SORT_KEYS,
    )
    result = await request.app[LEDGER].register_seller(
        seller_id=seller_id,
        name=name.strip(),
        district=district,
        nib=nib,
        channels=clean,
        occurred_at=occurred_at,
        fingerprint=fingerprint,
    )
    body_out = result.as_dict() | {"seller_id": seller_id}
    return json_response(body_out, 201 if result.status == "recorded" else 200)


def _optional_text(body: dict[str, Any], name: str, chars_max: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= chars_max:
        raise ValidationError(f"{name} must be 1-{chars_max} characters", field=name)
    return value


@spec(
    "Record the incubator's curation",
    {201: Reply(ref("Recorded"), "recorded")},
    errors=(422,),
    params=(Param("seller_id", ID, "path", True),),
    body=obj(
        {
            "status": {"enum": sorted(CURATION_STATUSES)},
            "certifications": {
                "type": "array",
                "maxItems": CERTIFICATIONS_MAX,
                "items": obj(
                    {
                        "kind": {"enum": sorted(CERTIFICATION_KINDS)},
                        "number": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": CERTIFICATION_NUMBER_CHARS_MAX,
                        },
                        "valid_until": DAY,
                    },
                    optional=("valid_until",),
                ),
            },
        },
        optional=("certifications",),
    ),
)
@require("admin")
async def post_curation(request: web.Request) -> web.Response:
    seller_id = parse_identifier(request.match_info["seller_id"], "seller_id")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    reject_nul(body)
    status, certs = parse_curation(body)
    result = await request.app[LEDGER].curate_seller(
        seller_id=seller_id,
        status=status,
        certifications=certs,
        occurred_at=datetime.now(UTC).isoformat(),
    )
    return json_response(result.as_dict(), 201)


def parse_curation(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """A curation's status and certifications as recorded (the dasbor's form uses it too)."""
    status = body.get("status")
    if not isinstance(status, str) or status not in CURATION_STATUSES:
        raise ValidationError(
            f"status must be one of {', '.join(sorted(CURATION_STATUSES))}", field="status"
        )
    certs_in = body.get("certifications") or []
    if not isinstance(certs_in, list) or len(certs_in) > CERTIFICATIONS_MAX:
        raise ValidationError(
            f"certifications must be a list of at most {CERTIFICATIONS_MAX}", field="certifications"
        )
    certs: list[dict[str, Any]] = []
    for cert in certs_in:
        if (
            not isinstance(cert, dict)
            or not isinstance(cert.get("kind"), str)
            or (cert["kind"] not in CERTIFICATION_KINDS)
        ):
            raise ValidationError(
                f"each certification needs kind in {', '.join(sorted(CERTIFICATION_KINDS))}",
                field="certifications",
            )
        number = cert.get("number")
        if not isinstance(number, str) or not 1 <= len(number) <= CERTIFICATION_NUMBER_CHARS_MAX:
            raise ValidationError("each certification needs a number", field="certifications")
        entry: dict[str, Any] = {"kind": cert["kind"], "number": number}
        if cert.get("valid_until") is not None:
            valid = cert["valid_until"]
            # strptime's %m and %d also took "2026-1-5": one spelling per day
            try:
                entry["valid_until"] = parse_day(valid, "valid_until").isoformat()
            except ValidationError as e:
                raise ValidationError(e.message, field="certifications") from None
        certs.append(entry)
    return status, certs
