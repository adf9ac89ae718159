"""Fixtures shared by the collector tests."""

from __future__ import annotations

import psycopg
import pytest

from carbonwatch.collector.writer import prepare


@pytest.fixture
def conn(db_url):
    """An autocommit connection to the test database with the writer's staging table, as a
    collector's writer has it."""
    with psycopg.connect(db_url, autocommit=True) as c:
        prepare(c)
        yield c
