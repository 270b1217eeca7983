"""Locust scenarios for the high-volume path: gateways, batch posters, readers.

Users (weights in brackets):

- ``GatewayUser`` [6]: a payment gateway posting single canonical events in
  the order they happen: ``order.placed``, then ``payment.captured`` (with
  the gateway's fee), and for about one sale in ten a partial
  ``refund.issued``. About 5 % of the posts are sent a second time with the
  same key and the same body, as a gateway retrying after a lost answer:
  those must come back ``200`` with ``"status": "duplicate"``.
- ``BatchPoster`` [1]: a channel importer posting ``{"events": [...]}`` of
  100 ``order.placed``, then 100 ``payment.captured`` for those orders (two
  requests: the events of one batch are decided independently, so a capture
  must not ride in the batch of its own order); every item must be recorded.
- ``Reader`` [3]: a seller or the incubator reading
  ``GET /v1/sellers/{id}/balance`` and
  ``GET /v1/sellers/{id}/recaps?from=&to=`` (the last 7 local days).

Set-up (on every locust process, at test start): registers the sellers
``<LOCUST_SELLER_PREFIX>-0 .. -<LOCUST_SELLERS - 1>`` with ``POST /v1/sellers``
(idempotent: a second registration with the same body is a ``200``), and
mints a ``gateway`` and an ``auditor`` key with ``POST /v1/keys``; both need
the admin key from ``LOCUST_ADMIN_KEY`` or ``OMNILEDGER_ADMIN_KEY``.

Run headless against ``omniledger up`` (loopback only; the run is bounded
by ``-t``)::

    OMNILEDGER_ADMIN_KEY=bench-admin .venv/bin/omniledger up --port 8080 &
    OMNILEDGER_ADMIN_KEY=bench-admin .venv/bin/locust -f loadtests/locustfile.py \\
        --headless -u 64 -r 16 -t 60s --host http://127.0.0.1:8080 --only-summary

Locust itself is too heavy a client to measure the service's ceiling on a
2-core box; ``python -m loadtests.bench`` (wrk) does that. This file is for
realistic mixed traffic: ordering, retries, reads alongside writes.

Environment: ``LOCUST_SELLERS`` (default 50), ``LOCUST_SELLER_PREFIX``
(default ``locust``), ``LOCUST_REFUND_RATIO`` (0.1), ``LOCUST_DUPLICATE_RATIO``
(0.05), ``LOCUST_BATCH_SIZE`` (100).
"""

from __future__ import annotations

import itertools
import os
import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import requests
from locust import HttpUser, between, events, task
from locust.env import Environment

ADMIN_KEY = os.environ.get("LOCUST_ADMIN_KEY") or os.environ.get("OMNILEDGER_ADMIN_KEY") or ""
SELLERS = int(os.environ.get("LOCUST_SELLERS", "50"))
SELLER_PREFIX = os.environ.get("LOCUST_SELLER_PREFIX", "locust")
REFUND_RATIO = float(os.environ.get("LOCUST_REFUND_RATIO", "0.1"))
DUPLICATE_RATIO = float(os.environ.get("LOCUST_DUPLICATE_RATIO", "0.05"))
BATCH_SIZE = int(os.environ.get("LOCUST_BATCH_SIZE", "100"))

WITA = timezone(timedelta(hours=8))
CHANNELS = ("qris", "shopee", "tokopedia", "whatsapp", "instagram", "website", "pos")
GATEWAYS = ("midtrans", "xendit")
DISTRICTS = ("Tamalate", "Panakkukang", "Rappocini", "Mariso", "Ujung Pandang", "Biringkanaya")

#: Unique per locust process; with the counter, every key and order id is unique.
RUN = uuid.uuid4().hex[:8]
_counter = itertools.count(1)

#: Keys minted at test start (see ``set_up``); admin until then.
KEYS: dict[str, str] = {"gateway": ADMIN_KEY, "auditor": ADMIN_KEY}


def seller_id(index: int) -> str:
    return f"{SELLER_PREFIX}-{index}"


def _next_id(kind: str) -> str:
    return f"{kind}-{RUN}-{next(_counter)}"


def _now() -> str:
    return datetime.now(WITA).isoformat(timespec="seconds")


def _auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


@events.test_start.add_listener
def set_up(environment: Environment, **_kwargs: Any) -> None:
    """Registers the sellers and mints the gateway and auditor keys (each locust process)."""
    if not ADMIN_KEY:
        raise RuntimeError(
            "set LOCUST_ADMIN_KEY or OMNILEDGER_ADMIN_KEY to the service's admin key"
        )
    host = (environment.host or "").rstrip("/")
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with requests.Session() as http:
        for i in range(SELLERS):
            body = {
                "seller_id": seller_id(i),
                "name": f"Toko Locust {i}",
                "district": DISTRICTS[i % len(DISTRICTS)],
            }
            r = http.post(f"{host}/v1/sellers", json=body, headers=admin, timeout=10)
            if r.status_code not in (200, 201):
                raise RuntimeError(f"POST /v1/sellers {seller_id(i)}: {r.status_code} {r.text}")
        for role in ("gateway", "auditor"):
            r = http.post(f"{host}/v1/keys", json={"role": role}, headers=admin, timeout=10)
            if r.status_code != 201:
                raise RuntimeError(f"POST /v1/keys {role}: {r.status_code} {r.text}")
            KEYS[role] = r.json()["key"]


class GatewayUser(HttpUser):
    """Single events in realistic order, with retried duplicates."""

    weight = 6
    wait_time = between(0.0, 0.05)

    def _post(self, body: dict[str, Any], name: str) -> None:
        self._post_once(body, name, expect_status=201, expect="recorded")
        if random.random() < DUPLICATE_RATIO:
            # the gateway lost our answer and retries: same key, same body
            self._post_once(body, f"{name} (retry)", expect_status=200, expect="duplicate")

    def _post_once(
        self, body: dict[str, Any], name: str, *, expect_status: int, expect: str
    ) -> None:
        with self.client.post(
            "/v1/events", json=body, headers=_auth("gateway"), name=name, catch_response=True
        ) as r:
            if r.status_code != expect_status:
                r.failure(f"{r.status_code}: {r.text[:200]}")
                return
            status = r.json().get("status")
            if status != expect:
                r.failure(f"status {status!r}, expected {expect!r}")

    def on_start(self) -> None:
        self.seller = seller_id(random.randrange(SELLERS))

    @task
    def sale(self) -> None:
        order_id = _next_id("INV")
        channel = random.choice(CHANNELS)
        gateway = random.choice(GATEWAYS)
        amount = random.randrange(10_000, 500_000, 500)
        fee = amount * 7 // 1000  # QRIS MDR 0.7 %, whole rupiah
        self._post(
            {
                "idempotency_key": f"placed:{order_id}",
                "type": "order.placed",
                "occurred_at": _now(),
                "seller_id": self.seller,
                "order_id": order_id,
                "channel": channel,
                "amount": str(amount),
            },
            "/v1/events order.placed",
        )
        payment_ref = _next_id("trx")
        self._post(
            {
                "idempotency_key": f"captured:{payment_ref}",
                "type": "payment.captured",
                "occurred_at": _now(),
                "order_id": order_id,
                "channel": channel,
                "amount": str(amount),
                "fee": str(fee),
                "gateway": gateway,
                "gateway_ref": payment_ref,
            },
            "/v1/events payment.captured",
        )
        if random.random() < REFUND_RATIO:
            refund_ref = _next_id("rfd")
            self._post(
                {
                    "idempotency_key": f"refund:{refund_ref}",
                    "type": "refund.issued",
                    "occurred_at": _now(),
                    "order_id": order_id,
                    "channel": channel,
                    "amount": str(amount // 2),
                    "gateway": gateway,
                    "gateway_ref": refund_ref,
                },
                "/v1/events refund.issued",
            )


class BatchPoster(HttpUser):
    """100 orders in one request, then their 100 payments in the next."""

    weight = 1
    wait_time = between(0.0, 0.2)

    def _post_batch(self, events_: list[dict[str, Any]], name: str) -> None:
        with self.client.post(
            "/v1/events",
            json={"events": events_},
            headers=_auth("gateway"),
            name=name,
            catch_response=True,
        ) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}: {r.text[:200]}")
                return
            results = r.json().get("results", [])
            refused = [x for x in results if x.get("status") != "recorded"]
            if len(results) != len(events_) or refused:
                first = refused[0] if refused else {}
                r.failure(f"{len(refused)} of {len(events_)} not recorded, e.g. {first}")

    @task
    def import_batch(self) -> None:
        orders = []
        for _ in range(BATCH_SIZE):
            order_id = _next_id("B")
            orders.append(
                {
                    "idempotency_key": f"placed:{order_id}",
                    "type": "order.placed",
                    "occurred_at": _now(),
                    "seller_id": seller_id(random.randrange(SELLERS)),
                    "order_id": order_id,
                    "channel": random.choice(CHANNELS),
                    "amount": str(random.randrange(10_000, 500_000, 500)),
                }
            )
        self._post_batch(orders, f"/v1/events batch of {BATCH_SIZE} order.placed")
        payments = []
        for order in orders:
            ref = _next_id("btrx")
            payments.append(
                {
                    "idempotency_key": f"captured:{ref}",
                    "type": "payment.captured",
                    "occurred_at": _now(),
                    "order_id": order["order_id"],
                    "channel": order["channel"],
                    "amount": order["amount"],
                    "gateway": "xendit",
                    "gateway_ref": ref,
                }
            )
        self._post_batch(payments, f"/v1/events batch of {BATCH_SIZE} payment.captured")


class Reader(HttpUser):
    """Balances and the last week's recaps of random sellers."""

    weight = 3
    wait_time = between(0.05, 0.3)

    @task(3)
    def balance(self) -> None:
        self.client.get(
            f"/v1/sellers/{seller_id(random.randrange(SELLERS))}/balance",
            headers=_auth("auditor"),
            name="/v1/sellers/{id}/balance",
        )

    @task(1)
    def recaps(self) -> None:
        today = datetime.now(WITA).date()
        self.client.get(
            f"/v1/sellers/{seller_id(random.randrange(SELLERS))}/recaps",
            params={"from": (today - timedelta(days=6)).isoformat(), "to": today.isoformat()},
            headers=_auth("auditor"),
            name="/v1/sellers/{id}/recaps",
        )
