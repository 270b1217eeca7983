"""``POST /v1/keys``: make an API key (shown once, stored hashed)."""

from __future__ import annotations

import secrets

from aiohttp import web

from ledger.api.auth import ROLES, hash_key, require
from ledger.api.context import STORE
from ledger.api.responses import json_response, read_json
from ledger.api.spec import GATEWAY, ID, Reply, nullable, obj, spec
from ledger.domain.commands import GATEWAYS, parse_identifier
from ledger.domain.errors import BadRequest, UnknownSeller, ValidationError
from ledger.domain.sellers import seller_stream_id

__all__ = ["post_keys"]


@spec(
    "Create an API key (shown once)",
    {
        201: Reply(
            obj(
                {
                    "key": {"type": "string"},
                    "role": {"enum": sorted(ROLES)},
                    "seller_id": nullable(ID),
                    "gateway": nullable(GATEWAY),
                }
            ),
            "made; the key is not shown again",
        )
    },
    errors=(422,),
    body=obj(
        {
            "role": {"enum": sorted(ROLES)},
            "seller_id": {
                **ID,
                "description": "a seller key's seller (required); a gateway"
                " key bound to one seller (optional)",
            },
            "gateway": {
                **GATEWAY,
                "description": "a gateway key bound to one gateway name: it"
                " posts only facts naming it",
            },
        },
        optional=("seller_id", "gateway"),
    ),
)
@require("admin")
async def post_keys(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    role = body.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(sorted(ROLES))}", field="role")
    seller_id = body.get("seller_id")
    gateway = body.get("gateway")
    if role == "seller" or (role == "gateway" and seller_id is not None):
        seller_id = parse_identifier(seller_id, "seller_id")
        if not await request.app[STORE].stream_exists(seller_stream_id(seller_id)):
            # a key for a typo would never work, or would open a later seller's data
            raise UnknownSeller(f"seller {seller_id} is not registered", field="seller_id")
    elif seller_id is not None:
        raise ValidationError("only a seller or gateway key names a seller_id", field="seller_id")
    if gateway is not None:
        if role != "gateway":
            raise ValidationError("only a gateway key names a gateway", field="gateway")
        if not isinstance(gateway, str) or gateway not in GATEWAYS:
            raise ValidationError(
                f"gateway must be one of {', '.join(sorted(GATEWAYS))}", field="gateway"
            )
    key = "olk_" + secrets.token_urlsafe(32)
    await request.app[STORE].add_key(hash_key(key), role, seller_id, gateway)
    return json_response(
        {"key": key, "role": role, "seller_id": seller_id, "gateway": gateway}, 201
    )
