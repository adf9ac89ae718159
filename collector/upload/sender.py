"""One HTTPS request to a monitoring platform and the check of its acknowledgement.

A batch is a JSON object ``{"schema", "destination", "indicators": [...]}``; the request carries
an ``Idempotency-Key`` header (the keys of the batch, joined). The platform acknowledges with a
2xx status and a JSON body ``{"ack": [key, ...]}`` naming every indicator of the batch; anything
else (another status, a timeout, a refused connection, a body that does not name them all) is a
failure, and the whole batch is sent again later. Platforms deduplicate by key, so a batch that
arrived but whose acknowledgement was lost does no harm when it comes again.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import urllib.error
import urllib.request

from .config import Destination
from .indicators import SCHEMA


class NotAcknowledged(Exception):
    """The platform did not acknowledge the batch; the message says why."""


def ssl_context(d: Destination) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(d.ca_file) if d.ca_file else None)
    if d.client_cert is not None:
        ctx.load_cert_chain(str(d.client_cert), str(d.client_key))
    return ctx


def batch_key(keys: list[str]) -> str:
    """A short idempotency key for a batch (the indicators carry their own keys)."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:32]


def post_batch(d: Destination, ctx: ssl.SSLContext, indicators: list[dict], token: str | None = None) -> None:
    """Send one batch; return when it is acknowledged, raise NotAcknowledged otherwise."""
    keys = [doc["key"] for doc in indicators]
    body = json.dumps({"schema": SCHEMA, "destination": d.name, "indicators": indicators}, ensure_ascii=False)
    headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": batch_key(keys)}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(d.url, data=body.encode("utf-8"), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=d.timeout, context=ctx) as response:
            status, raw = response.status, response.read(1 << 20)
    except urllib.error.HTTPError as exc:
        raise NotAcknowledged(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise NotAcknowledged(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
    if not 200 <= status < 300:
        raise NotAcknowledged(f"HTTP {status}")
    try:
        acked = set(json.loads(raw)["ack"])
    except (ValueError, KeyError, TypeError):
        raise NotAcknowledged(f"HTTP {status} without an acknowledgement body") from None
    missing = [k for k in keys if k not in acked]
    if missing:
        raise NotAcknowledged(f"{len(missing)} of {len(keys)} indicators not acknowledged (first: {missing[0]})")
