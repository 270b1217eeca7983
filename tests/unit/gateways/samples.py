"""Fixture access and test-key signing for the gateway adapter tests (reads files only)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gateways"

MIDTRANS_SERVER_KEY = "SB-Mid-server-omniledger-TEST"
XENDIT_TOKEN = "xnd-callback-token-TEST"
SHOPEE_PARTNER_KEY = "shopee-partner-key-TEST"
SHOPEE_CALLBACK_URL = "https://ledger.example.test/v1/gateways/shopee/push"


def raw(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def load(name: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(raw(name))
    return value


def names(prefix: str) -> list[str]:
    return sorted(path.stem for path in FIXTURES.glob(f"{prefix}_*.json"))


def midtrans_signed(body: dict[str, Any], server_key: str = MIDTRANS_SERVER_KEY) -> bytes:
    """Re-signs a Midtrans body (as a gateway would) and encodes it."""
    body = dict(body)
    body["signature_key"] = hashlib.sha512(
        (body["order_id"] + body["status_code"] + body["gross_amount"] + server_key).encode()
    ).hexdigest()
    return json.dumps(body).encode()


def shopee_signature(raw_body: bytes) -> str:
    message = SHOPEE_CALLBACK_URL.encode() + b"|" + raw_body
    return hmac.new(SHOPEE_PARTNER_KEY.encode(), message, hashlib.sha256).hexdigest()
