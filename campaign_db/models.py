"""The tables of the campaign database.

Each entity follows one family: `XBase` holds the fields a caller may set, `X(table=True)` adds
what the database owns (ids, timestamps). Nested, rarely queried structure (contact limits,
guardrails, allowed blocks per health class) is JSON; everything filtered on is a column.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator
from datetime import date, datetime
from typing import Any, TypeVar

import numpy as np
from pydantic import ConfigDict
from sqlalchemy import (
    JSON,
    BigInteger,
    Index,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from campaign_db.types import Float64Array, Int32Array, UTCDateTime
from optimizer.core.values import new_id, utcnow

JSONType = JSON().with_variant(JSONB(), "postgresql")


def _json_list() -> Any:
    return Field(default_factory=list, sa_type=JSONType, nullable=False)


def _json_dict() -> Any:
    return Field(default_factory=dict, sa_type=JSONType, nullable=False)


def _json_optional() -> Any:
    return Field(default=None, sa_type=JSONType, nullable=True)


def _utc_now(index: bool = False) -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=index)


def _utc_required(index: bool = False) -> Any:
    return Field(sa_type=UTCDateTime, nullable=False, index=index)


def _utc_optional() -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=True)


# --- building blocks -------------------------------------------------------------------------


class TriggerBase(SQLModel):
    key: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    description: str = ""
    health_from: str | None = Field(default=None, sa_type=String(1))
    health_to: str | None = Field(default=None, sa_type=String(1))


class Trigger(TriggerBase, table=True):
    pass


class ChannelBase(SQLModel):
    key: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    kind: str = Field(sa_type=String(8))
    max_length: int | None = None
    supports_subject: bool = False
    supports_image: bool = False


class Channel(ChannelBase, table=True):
    pass


class SendTimeBase(SQLModel):
    key: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    kind: str = Field(sa_type=String(16))
    weekdays: list[int] | None = _json_optional()
    start: str | None = Field(default=None, max_length=5)
    end: str | None = Field(default=None, max_length=5)
    occasion_start: str | None = Field(default=None, max_length=5)
    occasion_end: str | None = Field(default=None, max_length=5)


class SendTime(SendTimeBase, table=True):
    __tablename__ = "send_time"


class OfferBase(SQLModel):
    key: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    description: str = ""
    kind: str = Field(sa_type=String(16))
    cost: float = 0.0
    value: float = 0.0
    currency: str = Field(default="EUR", max_length=3)
    valid_from: date | None = None
    valid_until: date | None = None
    attributes: dict[str, Any] | None = _json_optional()


class Offer(OfferBase, table=True):
    pass


class TextBase(SQLModel):
    key: str = Field(primary_key=True, max_length=64)
    offer_key: str = Field(foreign_key="offer.key", max_length=64, index=True)
    language: str = Field(max_length=8)
    channels: list[str] = _json_list()
    tone: str = Field(default="neutral", max_length=32)
    subject: str | None = None
    body: str
    image_url: str | None = None


class Text(TextBase, table=True):
    pass


class Action(SQLModel, table=True):
    """An interned combination (offer, text, channel, send time); `no_contact` has no blocks.

    Decision logs store candidate sets as arrays of these ids, so a log row stays small even
    with a thousand candidates, and an id means the same combination forever.
    """

    id: int | None = Field(default=None, primary_key=True)
    signature: str = Field(max_length=280, unique=True)
    offer_key: str | None = Field(default=None, max_length=64)
    text_key: str | None = Field(default=None, max_length=64)
    channel_key: str | None = Field(default=None, max_length=64)
    send_time_key: str | None = Field(default=None, max_length=64)


class CatalogRevision(SQLModel, table=True):
    """One row per catalog load that changed something: what decision logs point back to."""

    __tablename__ = "catalog_revision"
    id: int | None = Field(default=None, primary_key=True)
    loaded_at: datetime = _utc_now()
    content_hash: str = Field(max_length=64)
    source: str = ""
    loaded_by: str = Field(default="", max_length=200)
    summary: dict[str, Any] | None = _json_optional()


# --- decision frames -------------------------------------------------------------------------


class DecisionFrameBase(SQLModel):
    key: str = Field(max_length=64, index=True)
    name: str = Field(max_length=200)
    description: str = ""
    triggers: list[str] = _json_list()
    priority: int = 0
    health_classes: list[str] = _json_list()
    offers_by_health_class: dict[str, list[str]] = _json_dict()
    channels: list[str] = _json_list()
    send_times: list[str] = _json_list()
    allow_no_contact: bool = True
    max_offer_cost: float = 0.0
    valid_from: date | None = None
    valid_until: date | None = None
    time_zone: str = Field(default="Europe/Berlin", max_length=64)
    contact_policy: dict[str, Any] = _json_dict()
    exploration: dict[str, Any] = _json_dict()
    guardrails: dict[str, Any] = _json_dict()
    holdout_share: float = 0.0
    attribution_window_days: int = 14
    reward_definition: str = Field(default="binary", sa_type=String(24))
    reward_range: list[float] = _json_list()
    reward_harm: dict[str, float] | None = _json_optional()
    """`attribution.harm`: the costs a closing reward subtracts; None before it existed."""
    safe_default: dict[str, Any] | None = _json_optional()
    policy: dict[str, Any] | None = _json_optional()


class DecisionFrame(DecisionFrameBase, table=True):
    """A versioned, approved envelope of one campaign; an approved version is never edited."""

    __tablename__ = "decision_frame"
    __table_args__ = (UniqueConstraint("key", "version", name="uq_decision_frame_key_version"),)
    id: int | None = Field(default=None, primary_key=True)
    version: int = 1
    status: str = Field(default="draft", sa_type=String(16), index=True)
    content_hash: str = Field(max_length=64)
    created_at: datetime = _utc_now()
    created_by: str = Field(default="", max_length=200)
    approved_by: str | None = Field(default=None, max_length=200)
    approved_at: datetime | None = _utc_optional()
    retired_at: datetime | None = _utc_optional()
    spec: dict[str, Any] = _json_dict()


# --- customers -------------------------------------------------------------------------------


class CustomerBase(SQLModel):
    health_class: str = Field(default="B", sa_type=String(1))
    usage_index: float = 0.5
    customer_since: date | None = None
    time_zone: str = Field(default="Europe/Berlin", max_length=64)
    language: str = Field(default="de", max_length=8)
    attributes: dict[str, Any] | None = _json_optional()


class Customer(CustomerBase, table=True):
    """A pseudonymous customer: the id is the CRM's key, never a name or an address."""

    id: str = Field(primary_key=True, max_length=64)
    created_at: datetime = _utc_now()
    updated_at: datetime = _utc_now()
    usage_observed_at: datetime | None = _utc_optional()
    recency_days: float | None = None
    sessions_30d: float | None = None
    minutes_30d: float | None = None


class HealthClassChange(SQLModel, table=True):
    """Each change of a customer's health class; a worsening one emits its trigger."""

    __tablename__ = "health_class_change"
    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(
        foreign_key="customer.id", ondelete="CASCADE", max_length=64, index=True
    )
    previous: str | None = Field(default=None, sa_type=String(1))
    health_class: str = Field(sa_type=String(1))
    usage_index: float
    changed_at: datetime = _utc_now()
    trigger_key: str | None = Field(default=None, max_length=64)
    decision_id: uuid.UUID | None = None


class Outbox(SQLModel, table=True):
    """Decisions made without a caller (health triggers) wait here for their channel system."""

    id: int | None = Field(default=None, primary_key=True)
    decision_id: uuid.UUID = Field(foreign_key="decision_log.id", unique=True)
    customer_id: str = Field(max_length=64)
    channel_key: str = Field(max_length=64, index=True)
    send_at: datetime = _utc_required()
    created_at: datetime = _utc_now()
    status: str = Field(default="pending", sa_type=String(16), index=True)
    leased_until: datetime | None = _utc_optional()
    acked_at: datetime | None = _utc_optional()


class Consent(SQLModel, table=True):
    """Consent per customer and channel; the latest state wins."""

    customer_id: str = Field(
        foreign_key="customer.id",
        ondelete="CASCADE",
        primary_key=True,
        max_length=64,
    )
    channel_key: str = Field(foreign_key="channel.key", primary_key=True, max_length=64)
    granted: bool
    changed_at: datetime = _utc_now()
    source: str = Field(default="", max_length=64)


class ContactHistory(SQLModel, table=True):
    """Every planned and sent contact; the contact policy counts on it."""

    __tablename__ = "contact_history"
    __table_args__ = (Index("ix_contact_history_customer_send_at", "customer_id", "send_at"),)
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    customer_id: str = Field(foreign_key="customer.id", ondelete="CASCADE", max_length=64)
    decision_id: uuid.UUID | None = Field(default=None, index=True)
    frame_key: str = Field(max_length=64)
    channel_key: str = Field(max_length=64)
    send_at: datetime = _utc_required()
    created_at: datetime = _utc_now()
    status: str = Field(default="reserved", sa_type=String(16))


# --- decisions and outcomes ------------------------------------------------------------------


class DecisionLog(SQLModel, table=True):
    """One append-only record per decision, self-sufficient for offline evaluation.

    The candidate set is an int32 array of action ids and the distribution a float64 array of the
    same length; `context` is the feature snapshot the policy saw, `seed` drives the sampling.
    """

    __tablename__ = "decision_log"
    model_config = ConfigDict(arbitrary_types_allowed=True)  # type: ignore[assignment]
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    request_id: str = Field(max_length=128, unique=True)
    created_at: datetime = _utc_now(index=True)
    customer_id: str = Field(max_length=64, index=True)
    trigger_key: str = Field(max_length=64)
    frame_key: str | None = Field(default=None, max_length=64, index=True)
    frame_version: int | None = None
    catalog_revision: int | None = None
    policy_name: str | None = Field(default=None, max_length=128)
    policy_version: str | None = Field(default=None, max_length=64)
    reason: str = Field(sa_type=String(24))
    context: dict[str, Any] = _json_dict()
    candidate_action_ids: np.ndarray[Any, Any] | None = Field(
        default=None, sa_type=Int32Array, nullable=True
    )
    probabilities: np.ndarray[Any, Any] | None = Field(
        default=None, sa_type=Float64Array, nullable=True
    )
    chosen_action_id: int | None = None
    probability: float | None = None
    seed: int = Field(sa_type=BigInteger)
    send_at: datetime | None = _utc_optional()
    eligibility_trace: dict[str, Any] | None = _json_optional()
    response: dict[str, Any] = _json_dict()
    request_digest: dict[str, str] | None = _json_optional()
    """Per request field, a digest of what the caller sent: a reused `request_id` with another
    body is a conflict. Digests, not values: the request's context is otherwise not stored."""
    budget_prices: dict[str, float] | None = _json_optional()
    """The pacing price of each budget the decision's distribution was priced with (budget key
    → price), so that its probabilities can be recomputed; None where the frame has none."""


class BudgetSpend(SQLModel, table=True):
    """What a frame's budget has spent in one period (`period_start`, a local date in the
    frame's time zone). Decisions add to `spent` in their own transaction, only while it stays
    within the budget's limit."""

    __tablename__ = "budget_spend"
    frame_key: str = Field(primary_key=True, max_length=64)
    budget_key: str = Field(primary_key=True, max_length=64)
    period_start: date = Field(primary_key=True)
    spent: float = 0.0
    updated_at: datetime = _utc_now()


class BudgetChargeRow(SQLModel, table=True):
    """What one decision spent of one budget counter: given back if its contact fails."""

    __tablename__ = "budget_charge"
    decision_id: uuid.UUID = Field(primary_key=True)
    budget_key: str = Field(primary_key=True, max_length=64)
    frame_key: str = Field(max_length=64)
    period_start: date
    amount: float


class DeliveryEvent(SQLModel, table=True):
    """What a channel system reported about a decision: sent, opened, bounced, unsubscribed …"""

    __tablename__ = "delivery_event"
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    decision_id: uuid.UUID = Field(foreign_key="decision_log.id", index=True)
    kind: str = Field(sa_type=String(16))
    occurred_at: datetime = _utc_required()
    received_at: datetime = _utc_now()
    event_key: str | None = Field(default=None, max_length=128, unique=True)


class Conversion(SQLModel, table=True):
    """A conversion event from billing, shop or app analytics, attributed to a decision or not."""

    conversion_id: str = Field(primary_key=True, max_length=128)
    customer_id: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=64)
    value: float = 0.0
    occurred_at: datetime = _utc_required()
    received_at: datetime = _utc_now()
    decision_id: uuid.UUID | None = Field(default=None, index=True)
    status: str = Field(default="unattributed", sa_type=String(16))


class Reward(SQLModel, table=True):
    """The outcome of one decision: pending until its attribution window closes, then final.

    `status` is pending, final, or void (a contact that was never sent: not learned from).
    `sequence` orders final rewards for the online learner's durable cursor.
    """

    decision_id: uuid.UUID = Field(foreign_key="decision_log.id", primary_key=True)
    status: str = Field(default="pending", sa_type=String(16), index=True)
    window_closes_at: datetime = _utc_required(index=True)
    value: float | None = None
    conversions: int = 0
    conversion_value: float = Field(default=0.0, sa_column_kwargs={"server_default": text("0")})
    late_conversions: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})
    direct_value: float | None = None
    sent: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    failed: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    unsubscribed: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    complained: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    finalized_at: datetime | None = _utc_optional()
    sequence: int | None = Field(default=None, unique=True)


class LearnerCheckpoint(SQLModel, table=True):
    """The online learner's durable state: a model and the reward sequence it has learned up to.

    Written in one transaction, so a restart resumes exactly where the saved model ends.
    """

    __tablename__ = "learner_checkpoint"
    id: int | None = Field(default=None, primary_key=True)
    policy_name: str = Field(max_length=128, index=True)
    cursor: int
    examples_learned: int
    base_version: str | None = Field(default=None, max_length=64)
    published_version: str | None = Field(default=None, max_length=64)
    spec: dict[str, Any] = _json_dict()
    model: bytes = Field(sa_type=LargeBinary)
    created_at: datetime = _utc_now()


class ServingPolicy(SQLModel, table=True):
    """The version each policy serves, as this service approved it: the only record serving and
    the learner follow. MLflow's `champion` alias mirrors it for people and tools; a move of the
    alias that the service did not make is noticed (`tampered_alias`) and ignored.

    `cursor` is the version's training cut-off: the reward sequence up to which the model has
    learned, so a learner that follows it replays exactly the rewards after it. `alias_synced`
    is false between recording a version and moving the alias, so an interrupted move is
    finished rather than taken for tampering.
    """

    __tablename__ = "serving_policy"
    policy_name: str = Field(primary_key=True, max_length=128)
    version: str = Field(max_length=64)
    cursor: int
    source: str = Field(max_length=16)
    alias_synced: bool = Field(default=False)
    tampered_alias: str | None = Field(default=None, max_length=64)
    updated_at: datetime = _utc_now()
    updated_by: str = Field(max_length=200)


class ApiKey(SQLModel, table=True):
    """An API key: only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_key"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    prefix: str = Field(max_length=16, index=True)
    key_hash: str = Field(max_length=64, unique=True)
    scopes: list[str] = _json_list()
    created_at: datetime = _utc_now()
    created_by: str = Field(default="", max_length=200)
    revoked_at: datetime | None = _utc_optional()


class FrameState(SQLModel, table=True):
    """The operating mode of a frame (all its versions): normal, or safe after a guardrail
    breach (the kill switch), until someone with the approve permission resumes it."""

    __tablename__ = "frame_state"
    frame_key: str = Field(primary_key=True, max_length=64)
    mode: str = Field(default="normal", sa_type=String(16))
    reason: str = ""
    changed_at: datetime = _utc_now()
    changed_by: str = Field(default="", max_length=200)
    metrics: dict[str, Any] | None = _json_optional()


class AuditLog(SQLModel, table=True):
    """Who did what, when and why: approvals, promotions, rollbacks, catalog loads, erasures."""

    __tablename__ = "audit_log"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _utc_now(index=True)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=64, index=True)
    subject: str = Field(default="", max_length=200)
    details: dict[str, Any] | None = _json_optional()


def table_of(model: type[SQLModel]) -> Table:
    """The Core table behind a model, for the bulk statements that skip the ORM."""
    table = getattr(model, "__table__")  # noqa: B009 (SQLModel does not type __table__)
    assert isinstance(table, Table)
    return table


# --- rankings for pull channels --------------------------------------------------------------


class RankingLog(SQLModel, table=True):
    """One append-only record per ranking: every slot with the candidates left for it, the
    distribution it was drawn from and its pick; self-sufficient for offline evaluation."""

    __tablename__ = "ranking_log"
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    request_id: str = Field(max_length=128, unique=True)
    created_at: datetime = _utc_now(index=True)
    customer_id: str = Field(max_length=64, index=True)
    trigger_key: str = Field(max_length=64)
    channel_key: str = Field(max_length=64)
    frame_key: str | None = Field(default=None, max_length=64, index=True)
    frame_version: int | None = None
    catalog_revision: int | None = None
    policy_name: str | None = Field(default=None, max_length=128)
    policy_version: str | None = Field(default=None, max_length=64)
    reason: str = Field(sa_type=String(24))
    context: dict[str, Any] = _json_dict()
    slots: list[Any] = _json_list()
    eligibility_trace: dict[str, Any] | None = _json_optional()
    response: dict[str, Any] = _json_dict()
    request_digest: dict[str, str] = _json_dict()


class RankingEvent(SQLModel, table=True):
    """An impression, click or conversion of one slot of a ranking."""

    __tablename__ = "ranking_event"
    __table_args__ = (
        UniqueConstraint("ranking_id", "slot", "kind"),
        Index("ix_ranking_event_impressions", "customer_id", "channel_key", "occurred_at"),
    )
    event_id: str = Field(primary_key=True, max_length=128)
    ranking_id: uuid.UUID = Field(foreign_key="ranking_log.id", index=True)
    slot: int
    kind: str = Field(sa_type=String(16))
    customer_id: str = Field(max_length=64)
    channel_key: str = Field(max_length=64)
    offer_key: str = Field(max_length=64)
    occurred_at: datetime = _utc_required()
    received_at: datetime = _utc_now()


class SlotReward(SQLModel, table=True):
    """The reward of one chosen slot: pending until its window closes, then final with a
    number in the same sequence as `Reward.sequence`, so the online learner reads both."""

    __tablename__ = "slot_reward"
    ranking_id: uuid.UUID = Field(foreign_key="ranking_log.id", primary_key=True)
    slot: int = Field(primary_key=True)
    status: str = Field(default="pending", sa_type=String(16), index=True)
    window_closes_at: datetime = _utc_required(index=True)
    value: float | None = None
    finalized_at: datetime | None = _utc_optional()
    sequence: int | None = Field(default=None, unique=True)


CHUNK = 1000
"""Keys per `IN (…)` list: well inside SQLite's limit on bound parameters."""

_T = TypeVar("_T")


def chunks(items: Collection[_T], size: int = CHUNK) -> Iterator[list[_T]]:
    """Distinct `items` in order, in lists short enough for one `IN (…)`."""
    ordered = list(dict.fromkeys(items))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


__all__ = [
    "Action",
    "ApiKey",
    "AuditLog",
    "CatalogRevision",
    "Channel",
    "Consent",
    "ContactHistory",
    "Conversion",
    "Customer",
    "DecisionFrame",
    "DecisionLog",
    "DeliveryEvent",
    "FrameState",
    "HealthClassChange",
    "LearnerCheckpoint",
    "Offer",
    "Outbox",
    "RankingEvent",
    "RankingLog",
    "Reward",
    "SendTime",
    "SlotReward",
    "Text",
    "Trigger",
    "table_of",
    "utcnow",
]
