"""Gateway adapters: a gateway's native webhook -> canonical ledger events.

One module per gateway (``midtrans``, ``xendit``, ``shopee``), each with the
same three pure functions, called in this order by the HTTP layer:

1. ``verify(...)`` - the gateway's own authentication (signature or token),
   constant-time; raises ``gateways.errors.SignatureInvalid`` (401,
   ``invalid_signature``). Nothing in a body is used before this passes.
2. ``parse(raw_body) -> dict`` - ``ledger.domain.errors.BadRequest`` (400)
   for a body that is not a UTF-8 JSON object, ``ValidationError`` (422) for a
   readable notification missing a field or carrying a bad amount or time.
3. ``to_events(payload) -> list[dict]`` - bodies for ``POST /v1/events``
   (CONTRACT section 2), idempotency keys derived from the gateway's own ids
   so that every redelivery is an exact duplicate. ``[]`` means "acknowledge,
   nothing to record".

What an adapter cannot know is left to the ledger: the seller (found from
the order, or from a Shopee ``shop_id``), the sales ``channel`` when the
gateway does not name one (Midtrans, Xendit), and the order of a refund that
names only its payment (``payment_ref`` = the payment's ``gateway_ref``).
No SQL, no NATS, no HTTP, no asyncio, no environment in an adapter.

Around the adapters:

- ``routes`` - the HTTP edge: reads the body, checks the secret is set,
  verifies, parses, hands the events to ``intake`` and answers; the suspense
  list routes;
- ``intake`` - apply or suspend, one event at a time (Midtrans' money facts
  confirmed first, the status call passed in); no aiohttp;
- ``suspense`` - the suspense list: open entries, resolving one, applying a
  suspended fact; no aiohttp;
- ``_commands`` - every construction and read of a ledger ``Command`` here;
- ``midtrans_api`` - the one outgoing call (Midtrans' Get Status);
- ``midtrans_confirm`` - what its answer confirms (pure, re-exported by
  ``midtrans``); ``_midtrans_note``, ``_xendit_*`` - the adapters' parts.
"""
