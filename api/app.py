"""The FastAPI application: ``create_app(database_url)`` builds it with its connection pool."""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from psycopg_pool import AsyncConnectionPool

from carbonwatch import __version__

from .routes import router


def create_app(database_url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool = AsyncConnectionPool(database_url, min_size=1, max_size=8, open=False)
        await pool.open(wait=True, timeout=30)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(
        title="carbonwatch API",
        version=__version__,
        description="Energy (tce) and CO2 of key energy-using enterprises, from live meter data.",
        lifespan=lifespan,
    )
    app.include_router(router, prefix="/api/v1")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> str:
        return resources.files("carbonwatch.api").joinpath("static/index.html").read_text("utf-8")

    return app
