"""Rankings for pull channels: one log row per ranking with every slot, the slots' feedback
(impressions, clicks, conversions) and their rewards, which join the online learner's sequence.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from optimizer.core.decision import CustomerRecord
from optimizer.ports.audit import JsonValue

SlotEventKind = Literal["impression", "click", "conversion"]


class RequestTakenError(Exception):
    """The ranking's request id was logged by another request meanwhile."""


@dataclass(frozen=True)
class PushedOffer:
    """A push contact as sent (or about to be): what a frame's `mirror` may show elsewhere."""

    decision_id: uuid.UUID
    frame_key: str
    offer: str
    text: str
    channel: str
    send_at: datetime


@dataclass(frozen=True)
class SlotLog:
    """One slot of a ranking as logged: the candidates left for it, the distribution it was
    drawn from, the pick and its probability given the slots before; `forced` for a mirrored
    push offer (probability 1)."""

    slot: int
    action_id: int
    offer: str
    text: str
    candidate_action_ids: tuple[int, ...]
    probabilities: tuple[float, ...]
    probability: float
    seed: int
    forced: bool = False

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "slot": self.slot,
            "action_id": self.action_id,
            "offer": self.offer,
            "text": self.text,
            "candidate_action_ids": list(self.candidate_action_ids),
            "probabilities": list(self.probabilities),
            "probability": self.probability,
            "seed": self.seed,
            "forced": self.forced,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> SlotLog:
        def ints(v: object) -> tuple[int, ...]:
            return tuple(int(x) for x in v) if isinstance(v, list) else ()

        def floats(v: object) -> tuple[float, ...]:
            return tuple(float(x) for x in v) if isinstance(v, list) else ()

        return cls(
            slot=int(str(data["slot"])),
            action_id=int(str(data["action_id"])),
            offer=str(data["offer"]),
            text=str(data["text"]),
            candidate_action_ids=ints(data["candidate_action_ids"]),
            probabilities=floats(data["probabilities"]),
            probability=float(str(data["probability"])),
            seed=int(str(data["seed"])),
            forced=bool(data.get("forced", False)),
        )


@dataclass(frozen=True)
class RankingEntry:
    """One ranking log record; `response` is the answer's JSON."""

    id: uuid.UUID
    request_id: str
    created_at: datetime
    customer_id: str
    trigger: str
    channel: str
    catalog_revision: int | None
    reason: str
    context: Mapping[str, JsonValue]
    slots: tuple[SlotLog, ...]
    response: str
    request_digest: Mapping[str, str]
    eligibility_trace: Mapping[str, str] | None = None
    frame_key: str | None = None
    frame_version: int | None = None
    policy_name: str | None = None
    policy_version: str | None = None


@dataclass(frozen=True)
class RankingWrite:
    """What a ranking writes: its log row and, per chosen (not forced) slot, a pending reward
    that becomes final at `closes_at`."""

    entry: RankingEntry
    closes_at: datetime


@dataclass(frozen=True)
class StoredRanking:
    """A logged ranking read back."""

    id: uuid.UUID
    request_id: str
    customer_id: str
    channel: str
    created_at: datetime
    answer: Mapping[str, JsonValue]
    digest: Mapping[str, str]
    slots: tuple[SlotLog, ...]
    context: Mapping[str, JsonValue] = field(default_factory=dict)
    eligibility_trace: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SlotEvent:
    """What a pull channel reported about one slot of a ranking."""

    event_id: str
    ranking_id: uuid.UUID
    slot: int
    kind: SlotEventKind
    customer_id: str
    channel: str
    offer: str
    occurred_at: datetime


@dataclass(frozen=True)
class DueSlot:
    """A slot whose reward window has closed, with the kinds of events reported for it."""

    ranking_id: uuid.UUID
    slot: int
    kinds: frozenset[str]


@dataclass(frozen=True)
class ClosedSlot:
    ranking_id: uuid.UUID
    slot: int
    value: float


@dataclass(frozen=True)
class RankingReads:
    """What a batch of rankings reads before it is planned, in one transaction."""

    stored: Mapping[str, StoredRanking]
    """By request id, the rankings already logged."""
    customers: Mapping[str, CustomerRecord]
    pushed: Mapping[str, Sequence[PushedOffer]]
    """By customer id, the push contacts that may be mirrored (see `pushed_offers`)."""


class RankingStore(Protocol):
    def read_batch(
        self,
        *,
        request_ids: Sequence[str],
        customer_ids: Sequence[str],
        pushed_since: datetime | None,
    ) -> RankingReads:
        """Stored rankings, customers and (unless `pushed_since` is None) their push contacts
        since then, for a batch at once."""
        ...

    def read_customer(self, customer_id: str) -> CustomerRecord | None:
        """Profile and granted consents (the contact history does not matter to a ranking)."""
        ...

    def pushed_offers(self, customer_id: str, *, since: datetime) -> list[PushedOffer]:
        """The customer's push contacts sending at or after `since` that were not cancelled
        or failed, with the offer and text each decision chose."""
        ...

    def impressions(self, customer_id: str, *, channel: str, since: datetime) -> dict[str, int]:
        """Impressions per offer shown to the customer on `channel` since `since`."""
        ...

    def write(self, write: RankingWrite) -> None:
        """Log the ranking and its pending slot rewards in one transaction; a request id
        already logged raises `RequestTakenError`, a customer gone meanwhile (erased)
        `UnknownCustomerError`, and either writes nothing."""
        ...

    def write_many(self, writes: Sequence[RankingWrite]) -> None:
        """`write` for several rankings in one transaction: all or none (a taken request id
        or a customer gone fails the whole batch; the caller then writes one by one)."""
        ...

    def stored_request(self, request_id: str) -> StoredRanking | None: ...

    def ranking(self, ranking_id: uuid.UUID) -> StoredRanking | None: ...

    def record_event(self, event: SlotEvent) -> SlotEvent | None:
        """Store the event; if its event id (or its ranking, slot and kind) was stored before,
        write nothing and return the stored one."""
        ...

    def due_slots(self, *, now: datetime, limit: int) -> list[DueSlot]: ...

    def close_slots(self, *, closed: Sequence[ClosedSlot], now: datetime) -> None:
        """Make the slots' rewards final, in the online learner's sequence."""
        ...
