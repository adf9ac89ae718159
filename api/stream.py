"""Live updates: server-sent events (``/api/v1/stream``) when new 15-minute intervals are committed.

One LISTEN connection per app hears ``cw_intervals`` (a statement trigger on ``intervals_15m``,
migration 0006) and wakes the streams; on a streaming replica, where notifications are not
replayed and LISTEN is refused, it polls the replay position instead. Each stream then sends its
caller's own figures for today, at most once per ``min_gap`` seconds, and a comment line every
``heartbeat`` seconds so proxies keep the connection. Streams are scoped like every query and bounded in number and
lifetime (the browser reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import psycopg
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from .auth import Caller, CallerDep
from .energy import energy
from .windows import default_window

log = logging.getLogger("carbonwatch.api.stream")
router = APIRouter()


class IntervalNotifier:
    """Counts committed interval writes, from PostgreSQL notifications; streams wait on it."""

    def __init__(self, database_url: str, replica_poll: float = 2.0) -> None:
        self.database_url = database_url
        self.replica_poll = replica_poll
        self.version = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="interval-notifier")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _bump(self) -> None:
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    async def _listen(self) -> None:
        delay = 1.0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
                    standby = (await (await conn.execute("SELECT pg_is_in_recovery()")).fetchone())[0]
                    if not standby:
                        await conn.execute("LISTEN cw_intervals")
                    delay = 1.0
                    await self._bump()  # anything missed while disconnected
                    if standby:
                        await self._follow_replay(conn)
                    else:
                        async for _ in conn.notifies():
                            await self._bump()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database restarting must not end live updates for good
                log.warning("interval notifications lost (%s); reconnecting in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _follow_replay(self, conn: psycopg.AsyncConnection) -> None:
        """A standby: wake the streams whenever it has replayed a new transaction (any table; the
        streams' own rate limit keeps that cheap). Returns if the standby is promoted."""
        last = None
        while True:
            row = await (await conn.execute("SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp()")).fetchone()
            if not row[0]:
                return  # promoted: reconnect and LISTEN like a primary
            if row[1] != last:
                last = row[1]
                await self._bump()
            await asyncio.sleep(self.replica_poll)

    async def wait_newer(self, seen: int, timeout: float) -> int:
        """The version once it is past ``seen``, or the current one after ``timeout`` seconds."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: self.version > seen), timeout)
            return self.version


async def snapshot(request: Request, who: Caller, version: int) -> dict:
    """Today's figures per enterprise in the caller's scope (none for operators), computed once per
    scope and interval version however many streams share that scope."""
    cache: dict = request.app.state.snapshots
    key = (who.role, who.scope, version)
    if key not in cache:
        if len(cache) > 1000:  # older versions are never asked for again
            cache.clear()
        cache[key] = asyncio.ensure_future(_snapshot(request, who))
    try:
        return await asyncio.shield(cache[key])
    except Exception:
        cache.pop(key, None)
        raise


async def _snapshot(request: Request, who: Caller) -> dict:
    out: dict = {"at": datetime.now(UTC).isoformat()}
    if not who.reads_energy:
        return out
    lo, hi = default_window("15min")
    async with request.app.state.pool.connection() as conn:
        fig = await energy(conn, who, "enterprise", "day", lo, hi, table="intervals_15m")
    out["day_start"] = lo.isoformat()
    out["enterprises"] = [
        {
            "enterprise": key,
            "tce": float(fig.tce[i].sum()),
            "tce_dual_control": float(fig.tce_dual_control[i].sum()),
            "co2_location_t": float(fig.co2_location_t[i].sum()),
            "co2_market_t": float(fig.co2_market_t[i].sum()),
        }
        for i, key in enumerate(fig.keys)
    ]
    return out


@router.get(
    "/stream",
    tags=["live"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
)
async def stream(request: Request, who: CallerDep) -> StreamingResponse:
    """Server-sent events: ``intervals`` (today's tce and CO2 per enterprise in scope) whenever intervals commit."""
    settings = request.app.state.stream
    metrics = request.app.state.metrics
    if settings["open"] >= settings["max_clients"]:
        raise HTTPException(503, "too many live streams open; retry later")
    notifier: IntervalNotifier = request.app.state.notifier

    async def events() -> AsyncIterator[str]:
        settings["open"] += 1
        metrics.sse_clients.inc()
        try:
            ends = time.monotonic() + settings["lifetime"]
            seen = notifier.version
            yield f"retry: 3000\nevent: intervals\ndata: {json.dumps(await snapshot(request, who, seen))}\n\n"
            while time.monotonic() < ends:
                version = await notifier.wait_newer(seen, settings["heartbeat"])
                if version == seen:
                    yield ": keep-alive\n\n"
                    continue
                seen = version
                metrics.sse_events.inc()
                yield f"event: intervals\ndata: {json.dumps(await snapshot(request, who, version))}\n\n"
                await asyncio.sleep(settings["min_gap"])  # bound the rate of queries per stream
        finally:
            settings["open"] -= 1
            metrics.sse_clients.dec()

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
