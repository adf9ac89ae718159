"""A served API over a real database (see apikit for what it holds)."""

from __future__ import annotations

import pytest
from apikit import ApiEnv, seed

from carbonwatch.api.app import create_app
from carbonwatch.embedded import free_port

from support import UvicornThread


@pytest.fixture
def api(db_url):
    tokens = seed(db_url)
    with UvicornThread(create_app(db_url, stream_heartbeat=1.0, stream_lifetime=30), free_port()) as server:
        yield ApiEnv(server.url, db_url, tokens)
