"""Dependencies injected into the API routes: database connections (and, later, the caller)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request
from psycopg import AsyncConnection


async def db(request: Request) -> AsyncIterator[AsyncConnection]:
    """A pooled connection for the duration of one request."""
    async with request.app.state.pool.connection() as conn:
        yield conn
