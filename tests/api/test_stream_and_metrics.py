"""Live updates and metrics: the event stream is scoped to its token and pushes new figures when
intervals commit (PostgreSQL NOTIFY from the interval table); /metrics counts requests by route
template with bounded labels."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from apikit import QINGHAI, SHANXI_A, SHANXI_B

from support import wait_until

pytestmark = pytest.mark.timeout(120)


class StreamReader:
    """Reads a server-sent-event stream in a thread, keeping the parsed ``data`` of each event."""

    def __init__(self, url: str, token: str) -> None:
        self.events: list[dict] = []
        self.status: int | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=30))
        self._thread = threading.Thread(target=self._run, args=(url, token), daemon=True)

    def _run(self, url: str, token: str) -> None:
        try:
            with self._client.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as r:
                self.status = r.status_code
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by the test

    def __enter__(self) -> StreamReader:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._client.close()
        self._thread.join(10)


def _add_interval(db_url: str, code: str, kwh: float) -> None:
    """A new 15-minute interval on the enterprise's incomer, in the current bucket (as the collector writes)."""
    now = datetime.now(UTC)
    bucket = now - timedelta(minutes=now.minute % 15, seconds=now.second, microseconds=now.microsecond)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            """INSERT INTO intervals_15m (point_id, bucket, quantity)
               SELECT id, %s, %s FROM points WHERE enterprise = %s AND point = 'incomer.import_kwh'
               ON CONFLICT (point_id, bucket) DO UPDATE SET quantity = intervals_15m.quantity + EXCLUDED.quantity""",
            (bucket, kwh, code),
        )


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

        _add_interval(api.db_url, SHANXI_B, 5000.0)  # B's change wakes A's stream but must not show in it
        _add_interval(api.db_url, SHANXI_A, 2000.0)
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
