"""Customer profiles and consents behind the optimizer's `CustomerStore` port, and erasure."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, or_, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from campaign_db.audit import add_audit
from campaign_db.engine import session_scope, truncate_wal
from campaign_db.models import (
    AuditLog,
    Channel,
    ContactHistory,
    Conversion,
    Customer,
    DecisionLog,
    HealthClassChange,
    Outbox,
    RankingEvent,
    RankingLog,
    table_of,
)
from campaign_db.models import Consent as ConsentRow
from optimizer.core.privacy import pseudonym
from optimizer.ports.audit import AuditEntry
from optimizer.ports.customers import (
    Consent,
    Profile,
    StoredCustomer,
    UnknownChannelError,
    UnknownCustomerError,
)

log = logging.getLogger("campopt.customers")

_customer = table_of(Customer)
_consent = table_of(ConsentRow)
_logs = table_of(DecisionLog)
_conversions = table_of(Conversion)
_audit = table_of(AuditLog)


def get_customer(session: Session, *, customer_id: str) -> Customer | None:
    return session.get(Customer, customer_id)


def lock_customer(session: Session, *, customer_id: str) -> Customer | None:
    """Read the customer and hold its row lock until the transaction ends.

    On PostgreSQL this is `SELECT … FOR UPDATE`: decisions for one customer serialise, so two
    concurrent requests cannot both see room under a contact cap. SQLite serialises all writers
    already (`BEGIN IMMEDIATE`).
    """
    statement = select(Customer).where(Customer.id == customer_id)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return session.exec(statement).first()


def _profile_fields(profile: Profile) -> dict[str, Any]:
    return {
        "health_class": profile.health_class,
        "usage_index": profile.usage_index,
        "customer_since": profile.customer_since,
        "time_zone": profile.time_zone,
        "language": profile.language,
        "attributes": None if profile.attributes is None else dict(profile.attributes),
    }


def upsert_customer(
    session: Session, *, customer_id: str, profile: Profile, now: datetime
) -> tuple[Customer, bool]:
    """Create or replace a customer profile; returns the row and whether it was created."""
    customer = lock_customer(session, customer_id=customer_id)
    created = customer is None
    if customer is None:
        customer = Customer(
            id=customer_id, created_at=now, updated_at=now, **_profile_fields(profile)
        )
    else:
        for key, value in _profile_fields(profile).items():
            setattr(customer, key, value)
        customer.updated_at = now
    session.add(customer)
    session.flush()
    return customer, created


def consents_of(session: Session, *, customer_id: str) -> list[ConsentRow]:
    return list(session.exec(select(ConsentRow).where(ConsentRow.customer_id == customer_id)).all())


def set_consent(
    session: Session,
    *,
    customer_id: str,
    channel_key: str,
    granted: bool,
    source: str,
    at: datetime,
) -> None:
    """Insert or replace one consent in a single statement: concurrent writers of the same
    consent never collide on its key, the last one wins."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(_consent).values(
        customer_id=customer_id,
        channel_key=channel_key,
        granted=granted,
        source=source,
        changed_at=at,
    )
    statement = statement.on_conflict_do_update(
        index_elements=[_consent.c.customer_id, _consent.c.channel_key],
        set_={
            "granted": statement.excluded.granted,
            "source": statement.excluded.source,
            "changed_at": statement.excluded.changed_at,
        },
    )
    session.connection().execute(statement)


def add_customers(
    session: Session,
    *,
    customers: list[dict[str, Any]],
    consents: list[tuple[str, str]],
    now: datetime,
) -> None:
    """Insert many customers and granted consents at once (imports, simulations, benchmarks),
    then refresh the planner's statistics on PostgreSQL."""
    if customers:
        rows = [{"created_at": now, "updated_at": now, "attributes": None, **c} for c in customers]
        session.connection().execute(_customer.insert(), rows)
    if consents:
        session.connection().execute(
            _consent.insert(),
            [
                {
                    "customer_id": c,
                    "channel_key": ch,
                    "granted": True,
                    "changed_at": now,
                    "source": "import",
                }
                for c, ch in consents
            ],
        )
    if session.get_bind().dialect.name == "postgresql":
        # Until autovacuum reaches freshly filled tables the planner thinks them tiny and scans
        # them whole: a decision batch's consent lookup over 160,000 rows took 33 ms, not µs.
        # Every table, not just these two: with the customers analysed but the still-empty log
        # tables not, the learner's queries slowed until it fell minutes behind. SQLite's
        # planner favours indexes without statistics.
        session.connection().execute(text("ANALYZE"))


def erase_from_rankings(connection: Connection, *, customer_id: str, alias: str) -> None:
    """Replace the customer id in ranking logs (and their answers) and slot events."""
    rankings = table_of(RankingLog)
    logged = connection.execute(
        rankings.select()
        .with_only_columns(rankings.c.id, rankings.c.response)
        .where(rankings.c.customer_id == customer_id)
    ).all()
    for ranking_id, response in logged:
        answer = dict(response or {})
        answer["customer_id"] = alias
        connection.execute(
            update(rankings)
            .where(rankings.c.id == ranking_id)
            .values(customer_id=alias, response=answer)
        )
    events = table_of(RankingEvent)
    connection.execute(
        update(events).where(events.c.customer_id == customer_id).values(customer_id=alias)
    )


def erase_customer(
    session: Session, *, customer_id: str, salt: str, actor: str, now: datetime
) -> bool:
    """Delete the profile, consents, contact history, usage and outbox entries, and replace the
    customer id in decision logs, conversions and audit subjects by a pseudonym. False if
    unknown. The customer's row lock keeps a concurrent decision from logging the raw id."""
    customer = lock_customer(session, customer_id=customer_id)
    if customer is None:
        return False
    alias = pseudonym(customer_id, salt)
    connection = session.connection()
    for table in (ConsentRow, ContactHistory, HealthClassChange, Outbox):
        t = table_of(table)
        connection.execute(t.delete().where(t.c.customer_id == customer_id))
    logged = connection.execute(
        _logs.select()
        .with_only_columns(_logs.c.id, _logs.c.response)
        .where(_logs.c.customer_id == customer_id)
    ).all()
    for decision_id, response in logged:
        answer = dict(response or {})
        answer["customer_id"] = alias
        connection.execute(
            update(_logs)
            .where(_logs.c.id == decision_id)
            .values(customer_id=alias, response=answer)
        )
    connection.execute(
        update(_conversions)
        .where(_conversions.c.customer_id == customer_id)
        .values(customer_id=alias)
    )
    erase_from_rankings(connection, customer_id=customer_id, alias=alias)
    subjects = connection.execute(
        _audit.select()
        .with_only_columns(_audit.c.id, _audit.c.subject)
        .where(
            or_(
                _audit.c.subject == customer_id,
                _audit.c.subject.startswith(f"{customer_id}/", autoescape=True),
            )
        )
    ).all()
    for entry_id, subject in subjects:
        connection.execute(
            update(_audit)
            .where(_audit.c.id == entry_id)
            .values(subject=alias + subject[len(customer_id) :])
        )
    connection.execute(_customer.delete().where(_customer.c.id == customer_id))
    add_audit(
        session,
        AuditEntry(
            at=now,
            actor=actor,
            action="customer.erase",
            subject=alias,
            details={"pseudonym": alias},
        ),
    )
    return True


def _stored(customer: Customer, consents: list[ConsentRow]) -> StoredCustomer:
    return StoredCustomer(
        customer_id=customer.id,
        profile=Profile(
            health_class=customer.health_class,
            usage_index=customer.usage_index,
            customer_since=customer.customer_since,
            time_zone=customer.time_zone,
            language=customer.language,
            attributes=customer.attributes,
        ),
        created_at=customer.created_at,
        updated_at=customer.updated_at,
        consents={c.channel_key: c.granted for c in consents},
    )


class SqlCustomerStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def import_customers(
        self,
        customers: Sequence[tuple[str, Profile]],
        *,
        granted: Sequence[tuple[str, str]],
        now: datetime,
    ) -> None:
        rows = [
            {
                "id": customer_id,
                "health_class": p.health_class,
                "usage_index": p.usage_index,
                "customer_since": p.customer_since,
                "time_zone": p.time_zone,
                "language": p.language,
            }
            for customer_id, p in customers
        ]
        with session_scope(self.engine, write=True) as session:
            add_customers(session, customers=rows, consents=list(granted), now=now)

    def upsert(
        self, *, customer_id: str, profile: Profile, now: datetime
    ) -> tuple[StoredCustomer, bool]:
        with session_scope(self.engine, write=True) as session:
            customer, created = upsert_customer(
                session, customer_id=customer_id, profile=profile, now=now
            )
            return _stored(customer, consents_of(session, customer_id=customer_id)), created

    def get(self, *, customer_id: str) -> StoredCustomer | None:
        with session_scope(self.engine) as session:
            customer = get_customer(session, customer_id=customer_id)
            if customer is None:
                return None
            return _stored(customer, consents_of(session, customer_id=customer_id))

    def set_consent(self, consent: Consent, *, audit: AuditEntry) -> Consent:
        with session_scope(self.engine, write=True) as session:
            if lock_customer(session, customer_id=consent.customer_id) is None:
                raise UnknownCustomerError(consent.customer_id)
            if session.get(Channel, consent.channel) is None:
                raise UnknownChannelError(consent.channel)
            set_consent(
                session,
                customer_id=consent.customer_id,
                channel_key=consent.channel,
                granted=consent.granted,
                source=consent.source,
                at=consent.changed_at,
            )
            add_audit(session, audit)
        return consent

    def erase(self, *, customer_id: str, salt: str, actor: str, now: datetime) -> str | None:
        """On SQLite the WAL is emptied afterwards, so the raw id does not linger there."""
        with session_scope(self.engine, write=True) as session:
            erased = erase_customer(
                session, customer_id=customer_id, salt=salt, actor=actor, now=now
            )
        if not erased:
            return None
        if not truncate_wal(self.engine):
            log.warning("erasure committed, but the SQLite WAL could not be emptied: readers busy")
        return pseudonym(customer_id, salt)
