"""Decisions served through the real decision service, for tests that need a live log."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine

from campaign_db.catalog import SqlCatalogReader
from campaign_db.customers import SqlCustomerStore
from campaign_db.decisions import SqlDecisionStore
from optimizer import customers
from optimizer.answers import DecisionAnswer
from optimizer.core.decision import DecisionAsk
from optimizer.customers import ConsentUpdate
from optimizer.decisions import DecisionService
from optimizer.ports.customers import Profile
from optimizer.serving import CatalogCache, PolicyPool

CHANNELS = ["email", "sms", "app_push"]


def add_consenting_customers(
    engine: Engine,
    ids: list[str],
    *,
    consent_since: datetime,
    channels: list[str] = CHANNELS,
    health_class: str = "D",
    language: str = "de",
) -> None:
    """New customers of one health class, with consent on `channels` since `consent_since`."""
    for customer_id in ids:
        customers.upsert_customer(
            SqlCustomerStore(engine),
            customer_id=customer_id,
            data=Profile(health_class=health_class, language=language, time_zone="Europe/Berlin"),
        )
        for channel in channels:
            customers.set_consent(
                SqlCustomerStore(engine),
                customer_id=customer_id,
                channel=channel,
                update=ConsentUpdate(granted=True, changed_at=consent_since),
            )


def serve_churn_decisions(
    engine: Engine, *, customers_n: int, start: datetime, prefix: str = "d"
) -> list[DecisionAnswer]:
    """One churn-prevention decision (trigger health_c_to_d) for each of `customers_n` new
    class D customers with consent on email, SMS and app push, a minute apart from `start`."""
    ids = [f"{prefix}{i}" for i in range(customers_n)]
    add_consenting_customers(engine, ids, consent_since=start - timedelta(days=1))
    service = DecisionService(
        SqlDecisionStore(engine),
        catalog=CatalogCache(SqlCatalogReader(engine), check_every_seconds=0),
        policies=PolicyPool(),
    )
    try:
        return [
            service.decide(
                DecisionAsk(
                    request_id=f"{prefix}-q{i}",
                    customer_id=customer_id,
                    trigger="health_c_to_d",
                    channels=CHANNELS,
                    now=start + timedelta(minutes=i),
                )
            )
            for i, customer_id in enumerate(ids)
        ]
    finally:
        service.close()
