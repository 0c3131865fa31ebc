"""Property-based fuzzing of every API operation against the app's own OpenAPI schema.

Schemathesis builds each operation's test as its pytest plugin does: the schema's examples, the
coverage phase (boundary values, every undeclared HTTP method, missing and malformed parameters)
and Hypothesis fuzzing in positive and negative modes. Every built-in check runs on every answer:
no 5xx, documented status codes, content types, headers and bodies, 405 with `Allow` for an
undeclared method, schema-valid requests accepted and schema-violating ones rejected. The app
runs in-process on each database backend; schemathesis starts its lifespan and its pytest plugin
ends it at teardown.

`schemathesis.pytest.from_fixture` would give one pytest item per operation, but it sets
`Node._nodeid`, which pytest 9.2 no longer has; so one test runs each operation's test and
reports the operations as subtests.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.pytest._test_builder import build_operation_test
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from api.settings import Settings
from tests.api.test_decisions_api import add_customer, decide_until_contact, not_in_holdout

# Fuzzing examples per operation; raise it (CAMPOPT_FUZZ_EXAMPLES=300) to dig deeper.
MAX_EXAMPLES = int(os.environ.get("CAMPOPT_FUZZ_EXAMPLES", "10"))
CONFIG = {
    # NUL is refused in every text (PostgreSQL stores none); the regression tests below check it
    # The test sends the admin key itself (test_auth checks what comes without one).
    "generation": {
        "max-examples": MAX_EXAMPLES,
        "mode": "all",
        "allow-x00": False,
        "with-security-parameters": False,
    },
    "phases": {
        "examples": {"enabled": True},
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": False},
    },
    "suppress-health-check": ["too_slow", "filter_too_much"],
}

# Rules no JSON schema can state: the catalog's trigger and channel keys and the frame's reward
# range (stored state), and the range of a decision time (a date-time has no bounds in JSON
# Schema; the field's description says it). A schema-valid request may be refused on these only.
STATEFUL_RULES = {
    ("POST", "/v1/decisions"): ("trigger", "channels[", "now"),
    ("POST", "/v1/decisions/{decision_id}/reward"): ("value",),
    ("POST", "/v1/rankings"): ("trigger", "channel", "exclude_offers[", "now"),
    ("POST", "/v1/rankings/{ranking_id}/events"): ("slot",),
}


def schema_valid_requests_are_accepted(ctx: Any, response: Any, case: schemathesis.Case) -> Any:
    """`positive_data_acceptance`, except for a 422 that names only a field of STATEFUL_RULES."""
    fields = STATEFUL_RULES.get((case.method.upper(), case.operation.path))
    if fields and response.status_code == 422:
        problems = response.json()["problems"]
        if all(problem["field"].startswith(fields) for problem in problems):
            return None
    return positive_data_acceptance(ctx, response, case)


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
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", app, config=SchemathesisConfig.from_dict(CONFIG)
    )

    @schema.hook
    def flatmap_path_parameters(_context: Any, path_parameters: dict[str, Any] | None) -> Any:
        """Half the time, point the generated path at objects that exist."""
        known = {name: existing[name] for name in path_parameters or {} if name in existing}
        if not known:
            return st.just(path_parameters)
        return st.sampled_from([path_parameters, {**path_parameters, **known}])

    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(
            headers=auth,
            excluded_checks=[positive_data_acceptance],
            additional_checks=[schema_valid_requests_are_accepted],
        )

    operations = [result.ok() for result in schema.get_all_operations()]
    # Erasing the seeded customer early would leave the later operations nothing to hit.
    operations.sort(key=lambda operation: operation.method.upper() == "DELETE")
    assert len(operations) >= 20
    feedback = FeedbackSources()
    for operation in operations:
        fuzz = build_operation_test(
            config=schema.config,
            operation=operation,
            test_func=call,
            given_kwargs={},
            feedback=feedback,
        )
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


@pytest.mark.parametrize(
    ("method", "url", "allowed"),
    [
        ("OPTIONS", f"/v1/customers/{CUSTOMER}", {"GET", "PUT", "DELETE"}),
        ("TRACE", "/healthz", {"GET"}),
        ("PATCH", "/v1/decisions", {"POST"}),
        ("GET", "/v1/outbox/ack", {"POST"}),
    ],
)
def test_an_undeclared_method_is_405_naming_every_method_of_the_path(
    client: TestClient, method: str, url: str, allowed: set[str]
) -> None:
    """Found by fuzzing: the router's `Allow` named only the first route of the path, and the
    error handler dropped the header altogether."""
    response = client.request(method, url)
    assert response.status_code == 405, response.text
    assert response.json()["error"] == "method_not_allowed"
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed


DECISION = "01a23bc9-8a1f-7b89-953d-fb65c8bcf482"
CONVERSION = {"conversion_id": "c1", "customer_id": CUSTOMER, "type": "purchase"}
USAGE = {"recency_days": 1, "sessions_30d": 3, "minutes_30d": 40}


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("get", "/v1/audit?since=0.5", None, "since"),
        ("get", "/v1/audit?since=1700000000", None, "since"),
        ("post", "/v1/conversions", {**CONVERSION, "occurred_at": 0}, "occurred_at"),
        (
            "post",
            "/v1/conversions",
            {**CONVERSION, "occurred_at": "2026-11-23T10:15:00Z", "value": False},
            "value",
        ),
        (
            "post",
            f"/v1/decisions/{DECISION}/events",
            {"kind": "sent", "occurred_at": "1700000000"},
            "occurred_at",
        ),
        ("put", f"/v1/customers/{CUSTOMER}", {"customer_since": 0}, "customer_since"),
        ("put", f"/v1/customers/{CUSTOMER}", {"usage_index": True}, "usage_index"),
        ("post", f"/v1/customers/{CUSTOMER}/usage", {**USAGE, "observed_at": 0}, "observed_at"),
        ("post", f"/v1/customers/{CUSTOMER}/usage", {**USAGE, "sessions_30d": "3"}, "sessions_30d"),
        ("put", f"/v1/customers/{CUSTOMER}/consents/email", {"granted": "yes"}, "granted"),
        ("post", "/v1/outbox/ack", {"ids": [True]}, "ids[0]"),
    ],
)
def test_input_the_schema_refuses_is_refused_naming_the_field(
    client: TestClient, method: str, url: str, body: Any, field: str
) -> None:
    """Found by fuzzing: numbers were read as Unix times, booleans as numbers, strings as
    numbers and booleans, where the schema declares a date-time, a number or a boolean."""
    response = client.request(method, url, json=body)
    assert response.status_code == 422, response.text
    assert [problem["field"] for problem in response.json()["problems"]] == [field]


def test_the_schema_lists_what_customer_and_policy_validation_accept() -> None:
    """Found by fuzzing: schema-valid profiles and policy version ids were refused with 422."""
    from api.routes.customers import CustomerUpsert
    from optimizer.core.catalog import languages, time_zones

    schema = create_app(Settings(mlflow_tracking_uri="disabled")).openapi()
    profile = schema["components"]["schemas"]["CustomerUpsert"]["properties"]
    assert set(profile["time_zone"]["enum"]) == time_zones()
    assert profile["language"]["enum"] == languages()
    assert profile["health_class"]["enum"] == ["A", "B", "C", "D"]
    assert (profile["usage_index"]["minimum"], profile["usage_index"]["maximum"]) == (0, 1)
    for language in profile["language"]["enum"]:
        assert CustomerUpsert.model_validate({"language": language}).language == language
    for zone in profile["time_zone"]["enum"]:
        assert CustomerUpsert.model_validate({"time_zone": zone}).time_zone == zone
    values = profile["attributes"]["anyOf"][0]["additionalProperties"]["anyOf"]
    assert {v["type"] for v in values} == {"string", "integer", "number", "boolean", "null"}

    approve = schema["paths"]["/v1/policies/{version_id}/approve"]["post"]
    (version,) = [p for p in approve["parameters"] if p["name"] == "version_id"]
    assert re.fullmatch(version["schema"]["pattern"], "churn_prevention:3")
    assert not re.fullmatch(version["schema"]["pattern"], "0")
