"""Message validation: the fast path agrees with the pydantic schema on everything it accepts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fleet import make_site, point_names, register, scratch_database
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from carbonwatch.collector.registry import Registry
from carbonwatch.collector.validate import Message, parse_message
from carbonwatch.contracts.payload import topic

NOW = datetime(2026, 6, 1, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def world(pg_admin_url, pg_template):
    """One registered site for the whole module (the property test runs many examples)."""
    with scratch_database(pg_admin_url, pg_template) as url:
        site = make_site(gateways=2, points=4)
        register(url, site)
        registry = Registry(url)
        registry.refresh()
        yield site, registry


ODD_STAMPS = [
    "2026-05-01T10:00:00.123Z", "2026-05-01T10:00:00Z", "2026-05-01T10:00:00.1Z", "2026-05-01T10:00:00.1234567Z",
    "2026-05-01T10:00:00+00:00", "2026-05-01T18:00:00+08:00", "2026-05-01T10:00:00z", "2026-05-01 10:00:00Z",
    "2026-05-01T10:00:00", "2026-05-01", "2026-02-30T10:00:00Z", "2026-05-01T24:00:00Z", "2026-06-30T23:59:60Z",
    "2026-05-01T10:00Z", "yesterday", "", "20260501T100000Z", "2026-05-01T10:00:00.000ZZ", "2026-13-01T10:00:00Z",
    "1999-12-31T23:59:59Z", "2026-06-02T00:00:00Z", 1_780_000_000, 1.78e9, None,
]  # fmt: skip
GOOD_STAMPS = st.builds(
    lambda d, spec: d.isoformat(timespec=spec).replace("+00:00", "Z"),
    st.datetimes(min_value=datetime(2000, 1, 3), max_value=datetime(2026, 5, 31), timezones=st.just(UTC)),
    st.sampled_from(["seconds", "milliseconds", "microseconds"]),
)
GOOD_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(min_value=-(2**60), max_value=2**60)
)
ODD_VALUES = st.sampled_from(["1.5", True, False, [1], {"x": 1}, 2**70, None, 1e308])
MUTATIONS = [
    "version", "enterprise", "gateway", "seq", "sent", "no readings", "drop field", "extra field", "stamp",
    "value", "quality", "point", "reading field", "drop reading field", "duplicate key", "huge value",
]  # fmt: skip


@st.composite
def documents(draw, site):
    """A valid message from gw-0, then none, one or two changes that may or may not break it."""
    names = point_names(site, 0)
    readings = []
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        q = draw(st.sampled_from(["good", "good", "uncertain", "bad", None]))
        r = {"p": draw(st.sampled_from(names)), "t": draw(GOOD_STAMPS), "v": None if q == "bad" else draw(GOOD_VALUES)}
        if q is not None:
            r["q"] = q
        readings.append(r)
    doc = {"v": 1, "enterprise": site.enterprise.code, "gateway": "gw-0", "seq": draw(st.integers(0, 2**62)),
           "sent": draw(GOOD_STAMPS), "readings": readings}  # fmt: skip
    dup = False
    for change in draw(st.lists(st.sampled_from(MUTATIONS), max_size=2)):
        r = draw(st.sampled_from(readings))
        if change == "version":
            doc["v"] = draw(st.sampled_from([2, 0, 1.0, "1", True, None]))
        elif change == "enterprise":
            doc["enterprise"] = draw(st.sampled_from(["91140105MA0000077X", "short", 1]))
        elif change == "gateway":
            doc["gateway"] = draw(st.sampled_from(["gw-1", "gw 0", "", None]))
        elif change == "seq":
            doc["seq"] = draw(st.sampled_from([-1, 2**70, 1.0, 2.5, "3", True, None]))
        elif change == "sent":
            doc["sent"] = draw(st.sampled_from(ODD_STAMPS))
        elif change == "no readings":
            doc["readings"] = []
        elif change == "drop field":
            del doc[draw(st.sampled_from(sorted(doc)))]
        elif change == "extra field":
            doc["colour"] = "red"
        elif change == "stamp":
            r["t"] = draw(st.sampled_from(ODD_STAMPS))
        elif change == "value":
            r["v"] = draw(ODD_VALUES)
        elif change == "huge value":
            r["v"] = draw(st.sampled_from([1e308, -1e308, 2**53 + 1, 0, -0.0]))
        elif change == "quality":
            r["q"] = draw(st.sampled_from(["good", "uncertain", "bad", "GOOD", "", None, 1]))
        elif change == "point":
            r["p"] = draw(st.sampled_from(["no.such_point", "bad point!", point_names(site, 1)[0], 7]))
        elif change == "reading field":
            r[draw(st.sampled_from(["x", "P", "value"]))] = 1
        elif change == "drop reading field":
            r.pop(draw(st.sampled_from(["p", "t", "v", "q"])), None)
        elif change == "duplicate key":
            dup = True
    raw = json.dumps(doc).encode()
    if dup:
        raw = raw.replace(b'"p": ', b'"p": "no.such_point", "p": ', 1).replace(b'"seq": ', b'"seq": -5, "seq": ', 1)
    return raw


def outcome(p):
    if p.dead is not None:
        return ("dead", p.dead.reason)
    return ("ok", p.point_id.tolist(), p.ts_us.tolist(), np.nan_to_num(p.value, nan=-1e300).tolist(),
            p.quality.tolist(), p.gateway_id, p.seq)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_fast_path_never_accepts_what_the_schema_refuses(world, data):
    site, registry = world
    payload = data.draw(documents(site))
    m = Message(topic(site.enterprise.code, "gw-0", "telemetry"), payload, 1, 1)
    fast = parse_message(m, registry, 600.0, now=NOW)
    slow = parse_message(m, registry, 600.0, now=NOW, fast=False)
    assert outcome(fast) == outcome(slow)
    event("accepted" if slow.dead is None else f"refused: {slow.dead.reason}")


def test_the_agents_own_messages_take_the_fast_path(world, monkeypatch):
    from fleet import reading, telemetry

    from carbonwatch.collector import validate

    site, registry = world
    names = point_names(site, 0)
    t = datetime(2026, 5, 31, 12, 0, 0, 123000, tzinfo=UTC)
    msg = telemetry(site, 0, 5, [reading(n, t + timedelta(seconds=i), 10.0 * i) for i, n in enumerate(names)])
    monkeypatch.setattr(validate, "_slow", lambda *a: pytest.fail("the slow path was used"))
    p = parse_message(Message(msg[0], msg[1], 1, 1), registry, 600.0, now=NOW)
    assert p.dead is None
    assert p.ts_us.tolist() == [round((t + timedelta(seconds=i)).timestamp() * 1e6) for i in range(len(names))]
    assert p.value.tolist() == [10.0 * i for i in range(len(names))]
