"""schemathesis against the served OpenAPI spec: no parameter combination makes a server error, and
every response matches the schema the spec documents.

Every operation (but the endless event stream) gets generated cases, authenticated as admin
(every code path), as a province and as an enterprise (the scoped ones) and as an operator (the
fleet-health role, refused energy figures with a 403); a bounded number of examples per role keeps
the run under a minute. The database holds the product plants of apikit.WORLD too, so the
intensity, attainment and green-power paths have data to work on.
"""

from __future__ import annotations

import pytest
from apikit import product_world

pytestmark = pytest.mark.timeout(240)

# generated cases per operation and role: most for admin, fewer for the scoped roles
EXAMPLES = {"admin": 50, "shanxi": 16, "A": 16, "operator": 10}


def test_no_server_error_on_any_operation(api):
    schemathesis = pytest.importorskip("schemathesis", reason="schemathesis (pip) is needed for this test")
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    operations = [op for op in operations if not op.path.endswith("/stream")]
    assert len(operations) >= 18
    product_world(api.db_url)
    by_role = {}
    for who, examples in EXAMPLES.items():
        calls = {"n": 0, "statuses": set()}
        for op in operations:
            _checker(api.url, api.headers(who), op, examples, calls)()
        by_role[who] = calls
    print("schemathesis:", {who: (c["n"], sorted(c["statuses"])) for who, c in by_role.items()})
    for who, calls in by_role.items():
        assert calls["n"] > len(operations) * 3, who
        assert 200 in calls["statuses"] and 422 in calls["statuses"], who  # answers and refusals exercised
    assert 403 in by_role["operator"]["statuses"]  # energy figures refused to the operator
    assert 404 in by_role["shanxi"]["statuses"]  # objects outside the province


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
