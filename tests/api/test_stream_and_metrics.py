"""Live updates and metrics: the event stream is scoped to its token and pushes new figures when
intervals commit (PostgreSQL NOTIFY from the interval table); /metrics counts requests by route
template with bounded labels."""

from __future__ import annotations

import json

import httpx
import pytest
from apikit import QINGHAI, SHANXI_A, SHANXI_B

from support import StreamReader, add_interval, wait_until

pytestmark = pytest.mark.timeout(120)


def test_stream_is_scoped_and_pushes_new_intervals(api):
    url = f"{api.url}/api/v1/stream"
    with (
        StreamReader(url, api.tokens["A"]) as a,
        StreamReader(url, api.tokens["shanxi"]) as prov,
        StreamReader(url, api.tokens["operator"]) as op,
    ):
        wait_until(lambda: a.events and prov.events and op.events, 20, what="first events")
        assert [e["enterprise"] for e in a.events[0]["enterprises"]] == [SHANXI_A]
        assert {e["enterprise"] for e in prov.events[0]["enterprises"]} == {SHANXI_A, SHANXI_B}
        assert "enterprises" not in op.events[0]  # operators get no energy figures
        first = a.events[0]["enterprises"][0]["co2_location_t"]

        add_interval(api.db_url, SHANXI_B, 5000.0)  # B's change wakes A's stream but must not show in it
        add_interval(api.db_url, SHANXI_A, 2000.0)
        wait_until(lambda: len(a.events) >= 2 and a.events[-1]["enterprises"][0]["co2_location_t"] > first, 20,
                   what="A's stream to carry the new interval")  # fmt: skip
        latest = a.events[-1]["enterprises"][0]["co2_location_t"]
        assert latest - first == pytest.approx(2.0 * 0.6634, rel=1e-6)  # 2 MWh at Shanxi's 2023 grid factor
        assert all(e["enterprise"] == SHANXI_A for ev in a.events for e in ev["enterprises"])
        assert all(QINGHAI not in json.dumps(ev) for ev in prov.events)
        metrics = httpx.get(f"{api.url}/metrics", timeout=10).text
        assert "carbonwatch_api_sse_clients 3.0" in metrics


def test_metrics_use_route_templates(api):
    for code in (SHANXI_A, SHANXI_B, "91000000000000000X"):
        httpx.get(f"{api.url}/api/v1/enterprises/{code}", headers=api.headers("admin"), timeout=10)
    for i in range(5):
        httpx.get(f"{api.url}/no/such/path/{i}", timeout=10)
    httpx.get(f"{api.url}/api/v1/enterprises", timeout=10)  # 401
    text = httpx.get(f"{api.url}/metrics", timeout=10).text
    assert 'carbonwatch_api_requests_total{method="GET",route="/api/v1/enterprises/{code}",status="2xx"} 2.0' in text
    assert 'route="/api/v1/enterprises/{code}",status="4xx"} 1.0' in text
    assert 'carbonwatch_api_requests_total{method="GET",route="unmatched",status="4xx"} 5.0' in text
    assert 'route="/api/v1/enterprises",status="4xx"} 1.0' in text
    assert "carbonwatch_api_request_seconds_bucket" in text
    assert SHANXI_B not in text and "no/such" not in text  # no raw paths in labels
