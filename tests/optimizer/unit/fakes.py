"""Fakes for the optimizer's unit tests: a decision service that answers from a tiny catalog."""

from __future__ import annotations

import uuid
from concurrent.futures import Future
from datetime import datetime

from optimizer.answers import (
    ActionAnswer,
    DecisionAnswer,
    OfferAnswer,
    SendTimeAnswer,
    TextAnswer,
)
from optimizer.core.catalog import CatalogSnapshot, ChannelSpec, TriggerSpec
from optimizer.core.decision import DecisionAsk
from optimizer.core.values import ChannelKind, DecisionReason, HealthClass


def health_trigger(key: str, before: str, after: str) -> TriggerSpec:
    return TriggerSpec(
        key=key, name=key, health_from=HealthClass(before), health_to=HealthClass(after)
    )


def snapshot(*triggers: TriggerSpec) -> CatalogSnapshot:
    channels = {
        "email": ChannelSpec(key="email", name="Email", kind=ChannelKind.push),
        "app_push": ChannelSpec(key="app_push", name="Push", kind=ChannelKind.push),
        "app_inbox": ChannelSpec(key="app_inbox", name="Inbox", kind=ChannelKind.pull),
    }
    return CatalogSnapshot(
        revision=1,
        triggers={t.key: t for t in triggers},
        channels=channels,
        send_times={},
        offers={},
        texts={},
        frames=(),
        actions={},
    )


class FakeCatalog:
    def __init__(self, current: CatalogSnapshot) -> None:
        self.snapshot = current

    def current(self) -> tuple[CatalogSnapshot, object]:
        return self.snapshot, None


class FakeDecisions:
    """Answers every request with a contact by email (or no contact for customers in
    `no_contact`); a repeated request id gets the same answer, as the real service does."""

    timeout_seconds = 1.0

    def __init__(self, current: CatalogSnapshot, *, no_contact: frozenset[str] = frozenset()):
        self.catalog = FakeCatalog(current)
        self.no_contact = no_contact
        self.requests: list[DecisionAsk] = []
        self.answers: dict[str, DecisionAnswer] = {}

    def submit(self, request: DecisionAsk) -> Future[DecisionAnswer]:
        self.requests.append(request)
        if request.request_id not in self.answers:
            self.answers[request.request_id] = self._answer(request)
        future: Future[DecisionAnswer] = Future()
        future.set_result(self.answers[request.request_id])
        return future

    def _answer(self, request: DecisionAsk) -> DecisionAnswer:
        assert request.now is not None
        contact = request.customer_id not in self.no_contact
        return DecisionAnswer(
            decision_id=uuid.uuid4(),
            request_id=request.request_id,
            customer_id=request.customer_id,
            trigger=request.trigger,
            decided_at=request.now,
            contact=contact,
            reason=DecisionReason.policy if contact else DecisionReason.holdout,
            action=_email(request.now) if contact else None,
        )


def _email(at: datetime) -> ActionAnswer:
    return ActionAnswer(
        action_id=1,
        offer=OfferAnswer(
            key="free_month",
            name="A free month",
            kind="free_month",
            cost=9.0,
            value=1,
            currency="EUR",
        ),
        text=TextAnswer(
            key="t", language="de", tone="warm", subject=None, body="Hallo", image_url=None
        ),
        channel="email",
        send_time=SendTimeAnswer(key="now", name="now", send_at=at),
    )
