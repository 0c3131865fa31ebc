"""Contact caps hold across processes because the database serialises the writers.

One process reserves a contact inside an open decision transaction; a second process, starting
its own decision transaction for the same customer meanwhile, must wait for the first to commit
and then see the contact (PostgreSQL: the customer's row lock; SQLite: the write lock).
"""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from campaign_db.customers import add_customers
from campaign_db.decisions import SqlDecisionStore
from campaign_db.engine import create_engine_from_url, session_scope
from optimizer.ports.decisions import ReservedContact
from tests.conftest import engine_url

NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)
HOLD_SECONDS = 1.0


def _second_writer(url: str, started: Any, out: Any) -> None:
    engine = create_engine_from_url(url)
    store = SqlDecisionStore(engine)
    started.set()
    with store.transaction(write=True) as cursor:
        states = cursor.read_customers(["x"], NOW - timedelta(days=30), lock=True)
        out.put((time.time(), len(states["x"].history)))
    engine.dispose()


def test_a_second_process_waits_for_the_first_contact_and_then_sees_it(engine: Engine) -> None:
    with session_scope(engine, write=True) as session:
        add_customers(
            session,
            customers=[
                {"id": "x", "health_class": "D", "usage_index": 0.1, "time_zone": "UTC"},
            ],
            consents=[],
            now=NOW - timedelta(days=60),
        )
    context = mp.get_context("spawn")
    started, out = context.Event(), context.Queue()
    store = SqlDecisionStore(engine)
    with store.transaction(write=True) as cursor:
        states = cursor.read_customers(["x"], NOW - timedelta(days=30), lock=True)
        assert states["x"].history == ()
        cursor.insert_contacts(
            [
                ReservedContact(
                    id=uuid.uuid4(),
                    customer_id="x",
                    decision_id=None,
                    frame_key="churn_prevention",
                    channel="email",
                    send_at=NOW,
                    created_at=NOW,
                )
            ]
        )
        second = context.Process(target=_second_writer, args=(engine_url(engine), started, out))
        second.start()
        assert started.wait(60)
        time.sleep(HOLD_SECONDS)
        committed_at = time.time()
    read_at, contacts_seen = out.get(timeout=60)
    second.join(30)
    assert second.exitcode == 0
    assert read_at >= committed_at
    assert contacts_seen == 1
