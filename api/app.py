"""The FastAPI application: ``create_app(database_url)`` builds it with its connection pool and live notifier."""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib import resources

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from psycopg_pool import AsyncConnectionPool

from carbonwatch import __version__

from . import energy_routes, metrics, quality_routes, report, routes, stream
from .models import ERRORS

DESCRIPTION = """Energy (tce) and CO2 of key energy-using enterprises (重点用能单位), from live meter data.

Every route except `/api/v1/health` needs a bearer token (`Authorization: Bearer <token>`), made with
`carbonwatch db token create --role enterprise|province|operator|admin [--scope CODE] --label TEXT`.
Enterprise tokens read their enterprise, province tokens their province, operators fleet health
(no energy figures), admins everything. Objects outside a token's scope answer 404.
Figures carry the accounting method version and factor set they were computed with."""


def create_app(
    database_url: str,
    *,
    stream_lifetime: float = 300.0,
    stream_heartbeat: float = 15.0,
    stream_min_gap: float = 1.0,
    stream_max_clients: int = 200,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool = AsyncConnectionPool(database_url, min_size=1, max_size=8, open=False)
        await pool.open(wait=True, timeout=30)
        app.state.pool = pool
        notifier = stream.IntervalNotifier(database_url)
        notifier.start()
        app.state.notifier = notifier
        try:
            yield
        finally:
            await notifier.stop()
            await pool.close()

    app = FastAPI(
        title="carbonwatch API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.stream = {
        "lifetime": stream_lifetime,
        "heartbeat": stream_heartbeat,
        "min_gap": stream_min_gap,
        "max_clients": stream_max_clients,
        "open": 0,
    }
    app.state.snapshots = {}  # (role, scope, interval version) -> today's figures, shared by streams
    metrics.install(app)
    for module in (routes, energy_routes, quality_routes, report, stream):
        app.include_router(module.router, prefix="/api/v1", responses=ERRORS)

    @app.exception_handler(psycopg.errors.DataError)
    async def data_error(request: Request, exc: psycopg.errors.DataError) -> JSONResponse:
        # a value the database refuses (out of range, bad text): the caller's input, not a server fault
        return JSONResponse({"detail": f"invalid value: {exc.diag.message_primary or exc}"}, status_code=422)

    static = resources.files("carbonwatch.api").joinpath("static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> str:
        return static.joinpath("index.html").read_text("utf-8")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app
