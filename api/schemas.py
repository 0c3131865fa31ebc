"""HTTP bodies: what the API accepts and answers, validated at the edge and mapped to the
optimizer's typed inputs and results."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from optimizer.answers import DecisionAnswer, OfferAnswer
from optimizer.core.catalog import KEY_PATTERN, CatalogSnapshot
from optimizer.core.decision import DecisionAsk
from optimizer.core.values import JsonFloat, NulFreeStr, Timestamp, refuse_nul
from optimizer.feedback import ConversionReport, EventKind, EventReport
from optimizer.ports.decisions import LoggedDecision
from optimizer.ports.feedback import ConversionStatus
from optimizer.ports.rankings import SlotEventKind, StoredRanking
from optimizer.ranking import MAX_SLOTS, Mirrored, RankingAnswer, RankingAsk

# --- decisions -------------------------------------------------------------------------------

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
CustomerId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")]
RequestId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
BlockKey = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
AttributeValue = str | int | float | bool | None
EARLIEST_NOW = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_NOW = datetime(2100, 1, 1, tzinfo=UTC)


def check_now(value: datetime | None) -> datetime | None:
    """A caller's decision time must be a plausible instant: far-off years overflow the
    history look-back and the send times, and no campaign runs in them."""
    if value is None:
        return None
    problem = f"must lie between {EARLIEST_NOW:%Y-%m-%d} and {LATEST_NOW:%Y-%m-%d} (UTC)"
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(problem) from None
    if not EARLIEST_NOW <= utc < LATEST_NOW:
        raise ValueError(problem)
    return value


class DecisionRequest(BaseModel):
    """What a channel system asks: what should this customer get now, for this trigger?"""

    model_config = ConfigDict(extra="forbid")

    request_id: RequestId = Field(description="idempotency key: a retry returns the same answer")
    customer_id: CustomerId
    trigger: BlockKey
    channels: list[BlockKey] = Field(
        min_length=1, max_length=16, description="channels the caller can deliver on now"
    )
    context: Annotated[
        dict[Annotated[str, StringConstraints(max_length=64)], AttributeValue],
        AfterValidator(refuse_nul),
    ] = Field(default_factory=dict, max_length=32, description="extra context attributes")
    personalisation: dict[Annotated[str, StringConstraints(max_length=64)], str] = Field(
        default_factory=dict,
        max_length=32,
        description="values for {placeholders} in texts; used to render, never stored",
    )
    now: Annotated[Timestamp | None, AfterValidator(check_now)] = Field(
        default=None,
        description="decision time (default: the server clock), between 2000-01-01 and "
        "2100-01-01 UTC; further than the allowed skew from the server clock only with the "
        "simulate scope",
    )

    def ask(self) -> DecisionAsk:
        """The question for the decision service; `personalisation` only renders the answer."""
        return DecisionAsk(
            request_id=self.request_id,
            customer_id=self.customer_id,
            trigger=self.trigger,
            channels=tuple(self.channels),
            context=self.context,
            now=self.now,
        )


class CandidateRecord(BaseModel):
    action_id: int
    signature: str
    probability: float | None


class DecisionRecord(BaseModel):
    """The logged decision: why this customer got this (GET /v1/decisions/{id})."""

    answer: DecisionAnswer
    context: dict[str, Any]
    candidates: list[CandidateRecord]
    chosen_action_id: int | None
    seed: int
    catalog_revision: int | None
    eligibility_trace: dict[str, str]

    @classmethod
    def of(cls, logged: LoggedDecision) -> DecisionRecord:
        return cls(
            answer=DecisionAnswer.model_validate(logged.answer),
            context=dict(logged.context),
            candidates=[
                CandidateRecord(
                    action_id=c.action_id, signature=c.signature, probability=c.probability
                )
                for c in logged.candidates
            ],
            chosen_action_id=logged.chosen_action_id,
            seed=logged.seed,
            catalog_revision=logged.catalog_revision,
            eligibility_trace=dict(logged.eligibility_trace),
        )


# --- feedback --------------------------------------------------------------------------------

IdempotencyKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")]


class DeliveryEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: EventKind
    occurred_at: Timestamp | None = None
    event_id: IdempotencyKey | None = Field(
        default=None, description="idempotency key of the event"
    )

    def report(self) -> EventReport:
        return EventReport(kind=self.kind, occurred_at=self.occurred_at, event_id=self.event_id)


class DeliveryEventResult(BaseModel):
    decision_id: uuid.UUID
    kind: EventKind
    duplicate: bool


class ConversionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversion_id: IdempotencyKey = Field(description="idempotency key")
    customer_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")]
    type: Annotated[NulFreeStr, StringConstraints(min_length=1, max_length=64)]
    value: JsonFloat = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    occurred_at: Timestamp

    def report(self) -> ConversionReport:
        return ConversionReport(
            conversion_id=self.conversion_id,
            customer_id=self.customer_id,
            kind=self.type,
            value=self.value,
            occurred_at=self.occurred_at,
        )


class ConversionResult(BaseModel):
    conversion_id: str
    status: ConversionStatus
    decision_id: uuid.UUID | None
    duplicate: bool


class RewardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: JsonFloat = Field(allow_inf_nan=False)


class RewardResult(BaseModel):
    decision_id: uuid.UUID
    value: float
    status: str


# --- rankings for pull channels --------------------------------------------------------------


class RankingRequest(BaseModel):
    """What a web portal or app asks: which offers to show this customer in `slots` slots?"""

    model_config = ConfigDict(extra="forbid")

    request_id: RequestId = Field(description="idempotency key: a retry returns the same answer")
    customer_id: CustomerId
    trigger: BlockKey = Field(description="the frame's trigger, e.g. the page's occasion")
    channel: BlockKey = Field(description="the pull channel that shows the slots")
    slots: int = Field(ge=1, le=MAX_SLOTS, description="how many slots the page has (1-20)")
    exclude_offers: list[BlockKey] = Field(
        default_factory=list, max_length=64, description="offers not to show"
    )
    context: Annotated[
        dict[Annotated[str, StringConstraints(max_length=64)], AttributeValue],
        AfterValidator(refuse_nul),
    ] = Field(default_factory=dict, max_length=32, description="extra context attributes")
    now: Annotated[Timestamp | None, AfterValidator(check_now)] = Field(
        default=None, description="ranking time (default: the server clock), as for decisions"
    )

    def ask(self) -> RankingAsk:
        return RankingAsk(
            request_id=self.request_id,
            customer_id=self.customer_id,
            trigger=self.trigger,
            channel=self.channel,
            slots=self.slots,
            exclude_offers=tuple(self.exclude_offers),
            context=self.context,
            now=self.now,
        )


class SlotEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: IdempotencyKey = Field(description="idempotency key of the event")
    slot: int = Field(ge=1, le=MAX_SLOTS, description="the slot (1 is the first)")
    kind: SlotEventKind
    occurred_at: Timestamp | None = None


class SlotEventResult(BaseModel):
    ranking_id: uuid.UUID
    slot: int
    kind: SlotEventKind
    offer: str
    duplicate: bool


class MirroredOffer(BaseModel):
    decision_id: uuid.UUID = Field(description="the push decision whose offer is mirrored")
    frame: str
    offer: OfferAnswer
    text: str
    channels: list[str] = Field(description="the pull channels it is shown in")
    since: datetime
    until: datetime


class MirroredOffers(BaseModel):
    customer_id: str
    offers: list[MirroredOffer]

    @classmethod
    def of(
        cls, customer_id: str, mirrors: list[Mirrored], snapshot: CatalogSnapshot
    ) -> MirroredOffers:
        offers = []
        for m in mirrors:
            offer = snapshot.offers.get(m.offer)
            if offer is None:  # gone from the catalog since
                continue
            offers.append(
                MirroredOffer(
                    decision_id=m.decision_id,
                    frame=m.frame_key,
                    offer=OfferAnswer(
                        key=offer.key,
                        name=offer.name,
                        kind=offer.kind.value,
                        cost=offer.cost,
                        value=offer.value,
                        currency=offer.currency,
                    ),
                    text=m.text,
                    channels=list(m.channels),
                    since=m.since,
                    until=m.until,
                )
            )
        return cls(customer_id=customer_id, offers=offers)


class LoggedSlot(BaseModel):
    slot: int
    action_id: int
    offer: str
    text: str
    candidate_action_ids: list[int]
    probabilities: list[float] = Field(description="the distribution the slot was drawn from")
    probability: float = Field(description="of the pick, given the slots before")
    seed: int
    forced: bool


class RankingRecord(BaseModel):
    """The logged ranking: why this customer was shown these offers (GET /v1/rankings/{id})."""

    answer: RankingAnswer
    context: dict[str, Any]
    slots: list[LoggedSlot]
    eligibility_trace: dict[str, str]

    @classmethod
    def of(cls, stored: StoredRanking) -> RankingRecord:
        return cls(
            answer=RankingAnswer.model_validate(stored.answer),
            context=dict(stored.context),
            slots=[LoggedSlot.model_validate(s.to_json()) for s in stored.slots],
            eligibility_trace=dict(stored.eligibility_trace),
        )
