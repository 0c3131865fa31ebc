"""GDPR erasure, consent revocation and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func
from sqlmodel import select

from campaign_db import learning
from campaign_db.engine import session_scope
from campaign_db.models import AuditLog, Consent, ContactHistory, Conversion, Customer, DecisionLog
from campaign_db.privacy import purge_before
from tests.api.test_decisions_api import add_customer, decide_until_contact, not_in_holdout
from tests.api.test_loop_api import conversion, send_at


def test_erasure_removes_the_person_and_keeps_the_statistics(
    client: TestClient, loaded_engine: Engine
) -> None:
    customer = not_in_holdout("gdpr-")
    add_customer(client, customer)
    answer = decide_until_contact(client, "gdpr-req", customer).json()
    converted = conversion(client, "gdpr-c", customer, send_at(answer) + timedelta(hours=2))
    assert converted.status_code in (200, 202), converted.text
    response = client.delete(f"/v1/customers/{customer}")
    assert response.status_code == 200, response.text
    pseudonym = response.json()["pseudonym"]
    with session_scope(loaded_engine) as session:
        assert session.get(Customer, customer) is None
        assert session.exec(select(Consent).where(Consent.customer_id == customer)).all() == []
        assert (
            session.exec(select(ContactHistory).where(ContactHistory.customer_id == customer)).all()
            == []
        )
        logs = session.exec(select(DecisionLog).where(DecisionLog.customer_id == pseudonym)).all()
        assert len(logs) >= 1
        assert all(customer not in str(log.response) for log in logs)
        assert (
            session.exec(select(DecisionLog).where(DecisionLog.customer_id == customer)).all() == []
        )
        assert session.get(Conversion, "gdpr-c").customer_id == pseudonym  # type: ignore[union-attr]
        assert (
            session.exec(select(AuditLog).where(AuditLog.action == "customer.erase")).first()
            is not None
        )
        subjects = [entry.subject for entry in session.exec(select(AuditLog)).all()]
        assert all(customer not in subject for subject in subjects)
        assert f"{pseudonym}/email" in subjects  # the consent grants, now under the pseudonym
    record = client.get(f"/v1/decisions/{answer['decision_id']}").json()
    assert record["answer"]["customer_id"] == pseudonym
    assert client.delete(f"/v1/customers/{customer}").status_code == 404
    assert client.get(f"/v1/customers/{customer}").status_code == 404

    # billing reports a conversion after the erasure: it counts for the pseudonymised
    # decision, and the erased id is not stored again
    late = conversion(client, "gdpr-after", customer, send_at(answer) + timedelta(hours=3))
    assert late.status_code in (200, 202), late.text
    assert late.json()["decision_id"] == answer["decision_id"]
    with session_scope(loaded_engine) as session:
        assert session.get(Conversion, "gdpr-after").customer_id == pseudonym  # type: ignore[union-attr]
        assert (
            session.exec(select(Conversion).where(Conversion.customer_id == customer)).all() == []
        )

    # a customer the CRM creates again is a new person to the service
    add_customer(client, customer)
    again = conversion(client, "gdpr-recreated", customer, datetime.now(UTC))
    assert again.status_code in (200, 202), again.text
    assert again.json()["status"] == "unattributed"
    with session_scope(loaded_engine) as session:
        assert session.get(Conversion, "gdpr-recreated").customer_id == customer  # type: ignore[union-attr]


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_erased_id_is_in_neither_the_sqlite_file_nor_its_wal(
    client: TestClient, loaded_engine: Engine
) -> None:
    customer = not_in_holdout("wal-erased-person-")
    for neighbour in ("wal-before", customer, "wal-after"):  # rows around it stay in its pages
        add_customer(client, neighbour)
    answer = decide_until_contact(client, "wal-req", customer).json()
    converted = conversion(client, "wal-c", customer, send_at(answer) + timedelta(hours=2))
    assert converted.status_code == 202, converted.text
    database = Path(str(loaded_engine.url.database))
    wal = Path(f"{database}-wal")
    assert customer.encode() in database.read_bytes() + wal.read_bytes()

    assert client.delete(f"/v1/customers/{customer}").status_code == 200
    assert customer.encode() not in database.read_bytes()
    assert not wal.exists() or customer.encode() not in wal.read_bytes()


def test_erasure_needs_the_admin_scope(client: TestClient, loaded_engine: Engine) -> None:
    from api.auth import create_key

    add_customer(client, "keep-me")
    key = create_key(loaded_engine, name="crm", scopes=["feedback", "read_logs"], actor="t")[1]
    client.headers["Authorization"] = f"Bearer {key}"
    assert client.delete("/v1/customers/keep-me").status_code == 403


def test_retention_purges_old_logs_only(client: TestClient, loaded_engine: Engine) -> None:
    old = not_in_holdout("old-")
    add_customer(client, old)
    decide_until_contact(client, "old-req", old, now="2026-02-02T10:00:00+01:00")
    recent = not_in_holdout("new-")
    add_customer(client, recent)
    decide_until_contact(client, "new-req", recent)
    with session_scope(loaded_engine, write=True) as session:
        purged = purge_before(
            session,
            logs_before=datetime(2026, 6, 1, tzinfo=UTC),
            audit_before=datetime(2000, 1, 1, tzinfo=UTC),
        )
    assert purged.decisions >= 1
    with session_scope(loaded_engine) as session:
        remaining = session.exec(select(func.count()).select_from(DecisionLog)).one()
        old_left = session.exec(select(DecisionLog).where(DecisionLog.customer_id == old)).all()
    assert remaining >= 1
    assert old_left == []


def test_retention_keeps_the_newest_learner_checkpoints(loaded_engine: Engine) -> None:
    from campaign_db.models import LearnerCheckpoint

    with session_scope(loaded_engine, write=True) as session:
        for cursor in range(30):
            session.add(
                LearnerCheckpoint(
                    policy_name="churn_prevention",
                    cursor=cursor,
                    examples_learned=cursor,
                    spec={},
                    model=b"",
                )
            )
    with session_scope(loaded_engine, write=True) as session:
        purged = purge_before(
            session,
            logs_before=datetime(2000, 1, 1, tzinfo=UTC),
            audit_before=datetime(2000, 1, 1, tzinfo=UTC),
            keep_checkpoints=5,
        )
    assert purged.checkpoints == 25
    with session_scope(loaded_engine) as session:
        newest = learning.latest_checkpoints(session)
        left = session.exec(select(func.count()).select_from(LearnerCheckpoint)).one()
    assert left == 5
    assert [c.cursor for c in newest] == [29]
