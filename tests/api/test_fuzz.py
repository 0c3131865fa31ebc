"""Property-based fuzzing of every API operation against the app's own OpenAPI schema.

Schemathesis generates valid and invalid requests for each operation and checks that the server
never answers 5xx and that every answer is documented: status code, content type and body schema.
The app runs in-process on each database backend; schemathesis starts its lifespan and its
pytest plugin ends it at teardown.

`schemathesis.pytest.from_fixture` would give one pytest item per operation, but it sets
`Node._nodeid`, which pytest 9.2 no longer has; so one test drives each operation's strategy
with Hypothesis and reports the operations as subtests.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.settings import Settings
from tests.api.test_decisions_api import add_customer, decide_until_contact, not_in_holdout

# Examples per operation and generation mode; raise it (CAMPOPT_FUZZ_EXAMPLES=300) to dig deeper.
MAX_EXAMPLES = int(os.environ.get("CAMPOPT_FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _seed(client: TestClient) -> dict[str, str]:
    """A customer with consents and one logged decision, so path parameters can hit them."""
    customer = not_in_holdout("fuzz-")
    add_customer(client, customer)
    decision = decide_until_contact(client, "fuzz-req", customer).json()["decision_id"]
    return {
        "customer_id": customer,
        "decision_id": decision,
        "key": "churn_prevention",
        "channel": "email",
        "version": "1",
    }


def test_every_operation_answers_as_documented(
    settings: Settings, admin_key: str, subtests: pytest.Subtests
) -> None:
    app = create_app(settings)
    auth = {"Authorization": f"Bearer {admin_key}"}
    with TestClient(app, headers=auth) as client:
        existing = _seed(client)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    @schema.hook
    def flatmap_path_parameters(_context: Any, path_parameters: dict[str, Any] | None) -> Any:
        """Half the time, point the generated path at objects that exist."""
        known = {name: existing[name] for name in path_parameters or {} if name in existing}
        if not known:
            return st.just(path_parameters)
        return st.sampled_from([path_parameters, {**path_parameters, **known}])

    operations = [result.ok() for result in schema.get_all_operations()]
    # Erasing the seeded customer early would leave the later operations nothing to hit.
    operations.sort(key=lambda operation: operation.method.upper() == "DELETE")
    assert len(operations) >= 20
    for operation in operations:

        @given(
            case=st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE),
                operation.as_strategy(GenerationMode.NEGATIVE),
            )
        )
        @hypothesis_settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=auth, checks=CHECKS)

        with subtests.test(msg=operation.label):
            fuzz()


NUL = "a\u0000b"
CUSTOMER = "fuzz-regression"


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("put", f"/v1/customers/{CUSTOMER}", {"attributes": {"plan": NUL}}, "attributes"),
        (
            "put",
            f"/v1/customers/{CUSTOMER}/consents/email",
            {"granted": True, "source": NUL},
            "source",
        ),
        (
            "post",
            "/v1/conversions",
            {
                "conversion_id": "c1",
                "customer_id": CUSTOMER,
                "type": NUL,
                "occurred_at": "2026-11-23T10:15:00+01:00",
            },
            "type",
        ),
        (
            "post",
            "/v1/decisions",
            {
                "request_id": "r1",
                "customer_id": CUSTOMER,
                "trigger": "health_c_to_d",
                "channels": ["email"],
                "context": {"plan": NUL},
            },
            "context",
        ),
        ("post", "/v1/frames/churn_prevention/resume", {"reason": NUL}, "reason"),
        ("get", "/v1/audit?action=a%00b", None, "action"),
        ("post", "/v1/outbox/ack", {"ids": [2**63]}, "ids[0]"),
    ],
)
def test_input_the_database_cannot_store_is_refused_naming_the_field(
    client: TestClient, method: str, url: str, body: Any, field: str
) -> None:
    """Found by fuzzing: PostgreSQL refuses NUL characters and SQLite integers beyond 64 bits."""
    response = client.request(method, url, json=body)
    assert response.status_code == 422, response.text
    assert [problem["field"] for problem in response.json()["problems"]] == [field]


def test_a_body_that_is_not_utf8_is_refused_naming_the_body(client: TestClient) -> None:
    response = client.post(
        "/v1/conversions", content=b'{"type": "\x80"}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["problems"][0]["field"] == "body"
