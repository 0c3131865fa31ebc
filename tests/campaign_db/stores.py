"""The customer, outbox and audit stores of one backend, for store contract tests."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine

from campaign_db.audit import SqlAuditLog
from campaign_db.customers import SqlCustomerStore
from campaign_db.engine import session_scope
from campaign_db.models import Channel, DecisionLog
from campaign_db.outbox import SqlOutboxStore
from optimizer.memory.audit import MemoryAuditLog
from optimizer.memory.customers import MemoryCustomerStore
from optimizer.memory.outbox import MemoryOutboxStore
from optimizer.ports.audit import AuditLog, JsonValue
from optimizer.ports.customers import CustomerStore
from optimizer.ports.outbox import OutboxStore

CHANNELS = {"email": "push", "app_push": "push", "app_inbox": "pull"}


@dataclass
class Stores:
    customers: CustomerStore
    outbox: OutboxStore
    audit: AuditLog
    engine: Engine | None

    def log_decision(
        self, decision_id: uuid.UUID, customer_id: str, answer: Mapping[str, JsonValue]
    ) -> None:
        """What the decision writer does before a decision reaches the outbox (SQL only: the
        outbox in memory keeps the answer it is given)."""
        if self.engine is None:
            return
        with session_scope(self.engine, write=True) as session:
            session.add(
                DecisionLog(
                    id=decision_id,
                    request_id=f"r-{decision_id}",
                    customer_id=customer_id,
                    trigger_key="health_c_to_d",
                    reason="policy",
                    seed=1,
                    response=dict(answer),
                )
            )


def stores_of(engine: Engine | None) -> Stores:
    if engine is None:
        audit = MemoryAuditLog()
        people = MemoryCustomerStore(channels=CHANNELS, audit=audit)
        return Stores(people, MemoryOutboxStore(people), audit, None)
    with session_scope(engine, write=True) as session:
        for key, kind in CHANNELS.items():
            session.add(Channel(key=key, name=key, kind=kind))
    return Stores(SqlCustomerStore(engine), SqlOutboxStore(engine), SqlAuditLog(engine), engine)
