"""schemathesis against the served OpenAPI spec: no parameter combination makes a server error, and
every response matches the schema the spec documents.

Every operation (but the endless event stream) gets generated cases, authenticated as admin
(every code path) and as an enterprise (the scoped ones); a bounded number of examples keeps
the run under a minute.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(240)

EXAMPLES = 50


def test_no_server_error_on_any_operation(api):
    schemathesis = pytest.importorskip("schemathesis", reason="schemathesis (pip) is needed for this test")
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    operations = [op for op in operations if not op.path.endswith("/stream")]
    assert len(operations) >= 18
    calls = {"n": 0, "statuses": set()}
    for who in ("admin", "A"):
        for op in operations:
            check = _checker(api.url, api.headers(who), op, EXAMPLES if who == "admin" else EXAMPLES // 3, calls)
            check()
    print(f"schemathesis: {calls['n']} calls, statuses {sorted(calls['statuses'])}")
    assert calls["n"] > len(operations) * 5
    assert 200 in calls["statuses"] and 422 in calls["statuses"]  # both answers and refusals were exercised


def _checker(base_url: str, headers: dict, op, examples: int, calls: dict):
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def check(case):
        response = case.call_and_validate(
            base_url=base_url, headers=headers, checks=[not_a_server_error, response_schema_conformance]
        )
        calls["n"] += 1
        calls["statuses"].add(response.status_code)

    return check
