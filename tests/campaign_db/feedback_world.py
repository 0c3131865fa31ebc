"""Decisions to give feedback on, seeded alike in memory and in SQL, and read back alike."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Engine, func
from sqlmodel import select

from campaign_db.customers import erase_customer
from campaign_db.engine import session_scope
from campaign_db.feedback import SqlFeedbackStore
from campaign_db.models import (
    Action,
    Channel,
    Consent,
    ContactHistory,
    Customer,
    DecisionFrame,
    DecisionLog,
    DeliveryEvent,
    Offer,
    Reward,
)
from campaign_db.rewards import SqlRewardStore
from optimizer.memory.feedback import MemoryFeedbackStore, MemoryReward
from optimizer.memory.rewards import MemoryRewardStore
from optimizer.ports.feedback import FeedbackStore
from optimizer.ports.rewards import RewardStore, RewardTerms


class World(Protocol):
    store: FeedbackStore
    rewards: RewardStore

    def add_decision(
        self,
        *,
        decision_id: uuid.UUID,
        customer_id: str,
        touched_at: datetime,
        window_closes_at: datetime | None,
        reason: str = "policy",
        frame: tuple[str, int] | None = None,
        channel: str | None = None,
        offer_cost: float = 0.0,
    ) -> None: ...

    def add_frame(self, *, key: str, version: int, terms: RewardTerms) -> None: ...

    def erase_customer(self, *, customer_id: str, salt: str) -> None: ...

    def reward(self, decision_id: uuid.UUID) -> MemoryReward: ...

    def contact_status(self, decision_id: uuid.UUID) -> str | None: ...

    def consent(self, customer_id: str, channel: str) -> bool | None: ...

    def event_count(self, decision_id: uuid.UUID) -> int: ...


class MemoryWorld(MemoryFeedbackStore):
    def __init__(self) -> None:
        super().__init__()
        self.store = self
        self.rewards = MemoryRewardStore(self)


@dataclass
class SqlWorld:
    engine: Engine

    def __post_init__(self) -> None:
        self.store = SqlFeedbackStore(self.engine)
        self.rewards = SqlRewardStore(self.engine)

    def add_decision(
        self,
        *,
        decision_id: uuid.UUID,
        customer_id: str,
        touched_at: datetime,
        window_closes_at: datetime | None,
        reason: str = "policy",
        frame: tuple[str, int] | None = None,
        channel: str | None = None,
        offer_cost: float = 0.0,
    ) -> None:
        with session_scope(self.engine, write=True) as session:
            if session.get(Customer, customer_id) is None:
                session.add(Customer(id=customer_id))
            if channel is not None and session.get(Channel, channel) is None:
                session.add(Channel(key=channel, name=channel, kind="push"))
            action_id = None
            if offer_cost:
                offer = f"offer-{decision_id.hex[:12]}"
                session.add(Offer(key=offer, name=offer, kind="incentive", cost=offer_cost))
                action = Action(signature=offer, offer_key=offer)
                session.add(action)
                session.flush()
                action_id = action.id
            session.add(
                DecisionLog(
                    id=decision_id,
                    request_id=str(decision_id),
                    created_at=touched_at,
                    customer_id=customer_id,
                    trigger_key="cart_abandoned",
                    frame_key=None if frame is None else frame[0],
                    frame_version=None if frame is None else frame[1],
                    reason=reason,
                    seed=1,
                    send_at=touched_at if channel is not None else None,
                    chosen_action_id=action_id,
                )
            )
            session.flush()
            if window_closes_at is not None:
                session.add(Reward(decision_id=decision_id, window_closes_at=window_closes_at))
            if channel is not None:
                session.add(
                    ContactHistory(
                        customer_id=customer_id,
                        decision_id=decision_id,
                        frame_key="" if frame is None else frame[0],
                        channel_key=channel,
                        send_at=touched_at,
                    )
                )

    def add_frame(self, *, key: str, version: int, terms: RewardTerms) -> None:
        with session_scope(self.engine, write=True) as session:
            session.add(
                DecisionFrame(
                    key=key,
                    name=key,
                    version=version,
                    status="active",
                    content_hash=f"{key}-{version}",
                    reward_definition=terms.definition,
                    reward_range=list(terms.reward_range),
                    reward_harm=terms.harm.model_dump(),
                )
            )

    def erase_customer(self, *, customer_id: str, salt: str) -> None:
        with session_scope(self.engine, write=True) as session:
            erase_customer(
                session, customer_id=customer_id, salt=salt, actor="test", now=datetime.now(UTC)
            )

    def reward(self, decision_id: uuid.UUID) -> MemoryReward:
        with session_scope(self.engine) as session:
            row = session.get(Reward, decision_id)
            if row is None:
                raise LookupError(f"decision {decision_id} has no reward")
            return MemoryReward(**row.model_dump(exclude={"decision_id"}))

    def contact_status(self, decision_id: uuid.UUID) -> str | None:
        with session_scope(self.engine) as session:
            return session.exec(
                select(ContactHistory.status).where(ContactHistory.decision_id == decision_id)
            ).first()

    def consent(self, customer_id: str, channel: str) -> bool | None:
        with session_scope(self.engine) as session:
            consent = session.get(Consent, (customer_id, channel))
            return None if consent is None else consent.granted

    def event_count(self, decision_id: uuid.UUID) -> int:
        with session_scope(self.engine) as session:
            return session.exec(
                select(func.count())
                .select_from(DeliveryEvent)
                .where(DeliveryEvent.decision_id == decision_id)
            ).one()


def world_on(engine: Engine | None) -> World:
    return MemoryWorld() if engine is None else SqlWorld(engine)
