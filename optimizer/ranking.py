"""Rankings for pull channels: N distinct offers for the N slots of a page, chosen slot by slot.

A web portal or an app asks for the offers to show in its slots, many times a day. Showing is
not a contact: no push cap, minimum gap or quiet hours apply, only consent, the frame's offers
and the channel's impression limits. Slot 1 is chosen from every candidate, slot 2 from those
left once every combination of slot 1's offer is removed, and so on; each slot logs the
distribution it was drawn from, so its probability is conditional on the slots before it (the
semantics of VW's conditional contextual bandit). A mirrored push offer takes the first slots
with probability 1: a forced slot, which evaluation treats as the logging policy's certainty.

Pure: plain values in, the answer and what to write out.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from optimizer.answers import FrameRef, OfferAnswer, PolicyRef, TextAnswer
from optimizer.core.catalog import CatalogSnapshot, FrameVersion, action_signature
from optimizer.core.decision import CustomerRecord, CustomerState
from optimizer.core.values import ChannelKind, SendTimeKind
from optimizer.eligibility import Combination, choose_frame, in_holdout, local_now
from optimizer.features import action_line, context_snapshot, shared_line
from optimizer.policy import BanditPolicy, sample_index
from optimizer.ports.rankings import PushedOffer, RankingEntry, RankingWrite, SlotLog

MAX_SLOTS = 20
SLOT_REWARD_HOURS = 24
"""A slot's reward (clicked or converted: 1, else 0) is final this long after the ranking."""
SAFE_MODE_VERSION = "safe_mode"

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
PolicyLookup = Callable[[FrameVersion], BanditPolicy]
CombinationLookup = Callable[[FrameVersion, str, str], Sequence[Combination]]


@dataclass(frozen=True)
class RankingAsk:
    """What a pull channel asks: which offers to show this customer in `slots` slots now."""

    request_id: str
    customer_id: str
    trigger: str
    channel: str
    slots: int
    exclude_offers: tuple[str, ...] = ()
    context: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)
    now: datetime | None = None


@dataclass(frozen=True)
class Mirrored:
    """A push contact's offer mirrored into pull channels from `since` until `until`."""

    decision_id: uuid.UUID
    frame_key: str
    offer: str
    text: str
    channels: tuple[str, ...]
    since: datetime
    until: datetime


def active_mirrors(
    pushed: Sequence[PushedOffer], snapshot: CatalogSnapshot, *, now: datetime
) -> list[Mirrored]:
    """The mirrors active at `now`, newest contact first: a contact mirrors from its send time
    for the days its frame's `mirror` says (as the frame serves now; no mirror, no mirroring)."""
    frames = {f.key: f for f in snapshot.frames}
    out = []
    for p in pushed:
        frame = frames.get(p.frame_key)
        mirror = frame.spec.mirror if frame is not None else None
        if mirror is None:
            continue
        until = p.send_at + timedelta(days=mirror.days)
        if p.send_at <= now < until:
            out.append(
                Mirrored(
                    p.decision_id,
                    p.frame_key,
                    p.offer,
                    p.text,
                    tuple(mirror.channels),
                    p.send_at,
                    until,
                )
            )
    return sorted(out, key=lambda m: m.since, reverse=True)


def mirrored_combination(
    snapshot: CatalogSnapshot, mirrored: Mirrored, *, channel: str, language: str
) -> Combination | None:
    """The combination that shows a mirrored offer on `channel`: its text where the text fits
    the channel, else the offer's first text in the customer's language that does."""
    frame = next((f for f in snapshot.frames if f.key == mirrored.frame_key), None)
    if frame is None or channel not in mirrored.channels:
        return None
    texts = [snapshot.texts[mirrored.text]] if mirrored.text in snapshot.texts else []
    texts += snapshot.texts_for(mirrored.offer, language)
    text = next((t for t in texts if channel in t.channels), None)
    if text is None:
        return None
    send_time = _pull_send_time(snapshot, frame)
    signature = action_signature(mirrored.offer, text.key, channel, send_time)
    action_id = snapshot.actions.get(signature)
    if action_id is None:
        return None
    line = action_line(
        snapshot, offer=mirrored.offer, text=text.key, channel=channel, send_time=send_time
    )
    return Combination(
        action_id, mirrored.offer, text.key, channel, send_time, (channel, send_time), line
    )


def _pull_send_time(snapshot: CatalogSnapshot, frame: FrameVersion) -> str:
    """On a page a send time means nothing: the frame's first immediate send time stands for
    all (its first send time if none is immediate)."""
    times = frame.spec.send_times
    immediate = [k for k in times if snapshot.send_times[k].kind is SendTimeKind.immediate]
    return (immediate or list(times))[0]


class SlotAnswer(BaseModel):
    slot: int = Field(description="1 is the first slot of the page")
    action_id: int
    offer: OfferAnswer
    text: TextAnswer
    channel: str
    probability: float = Field(description="probability of this pick given the slots before it")
    forced: bool = Field(default=False, description="a mirrored push offer, shown for certain")
    candidates: int


class RankingAnswer(BaseModel):
    """The offers to show, in slot order; fewer than asked when fewer offers are eligible."""

    ranking_id: uuid.UUID
    request_id: str
    customer_id: str
    trigger: str
    channel: str
    decided_at: datetime
    reason: str = Field(description="policy, holdout or nothing_eligible")
    slots: list[SlotAnswer] = Field(default_factory=list)
    policy: PolicyRef | None = None
    frame: FrameRef | None = None
    excluded: dict[str, str] = Field(
        default_factory=dict,
        description="when fewer slots than asked are filled: the rule that excluded each block",
    )


@dataclass(frozen=True)
class RankingPlan:
    answer: RankingAnswer
    write: RankingWrite


def slot_seed(ranking_id: uuid.UUID, slot: int) -> int:
    """A 63-bit sampling seed per ranking and slot, so every pick can be replayed."""
    digest = hashlib.blake2b(ranking_id.bytes + slot.to_bytes(2, "little"), digest_size=8)
    return int.from_bytes(digest.digest(), "little") >> 1


def ranking_digest(ask: RankingAsk) -> dict[str, str]:
    """Per field that says what is asked, a short hash: a retry must ask the same."""
    fields: dict[str, Any] = {
        "trigger": ask.trigger,
        "channel": ask.channel,
        "slots": ask.slots,
        "exclude_offers": sorted(set(ask.exclude_offers)),
        "context": dict(ask.context),
    }
    return {
        name: hashlib.sha256(
            json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()[:16]
        for name, value in fields.items()
    }


def pull_candidates(
    snapshot: CatalogSnapshot,
    *,
    frame: FrameVersion,
    customer: CustomerState,
    channel: str,
    combinations: Sequence[Combination],
    exclude_offers: Sequence[str],
    impressions: Mapping[str, int],
    today: Any,
) -> tuple[list[Combination], dict[str, str]]:
    """The combinations this customer may be shown on `channel`, one per (offer, text): a send
    time means nothing on a page, so the frame's first immediate send time stands for all (its
    first send time if none is immediate). `impressions` counts this customer's impressions
    per offer on the channel within its impression limit's days."""
    spec = frame.spec
    trace: dict[str, str] = {}
    if channel not in spec.channels:
        trace[f"channel:{channel}"] = "not a channel of the frame"
        return [], trace
    if channel not in customer.consented_channels:
        trace[f"channel:{channel}"] = "no consent"
        return [], trace
    send_time = _pull_send_time(snapshot, frame)
    limit = spec.contact_policy.impression_limits.get(channel)
    excluded = set(exclude_offers)
    out: list[Combination] = []
    refused: set[str] = set()
    for c in combinations:
        if c.channel != channel or c.send_time != send_time or c.offer in refused:
            continue
        offer = snapshot.offers[c.offer]
        reason = None
        if c.offer in excluded:
            reason = "excluded by the request"
        elif (offer.valid_from and today < offer.valid_from) or (
            offer.valid_until and today > offer.valid_until
        ):
            reason = f"not valid on {today.isoformat()}"
        elif limit is not None and impressions.get(c.offer, 0) >= limit.same_offer:
            reason = (
                f"impression limit reached: {impressions[c.offer]} of {limit.same_offer} "
                f"within {limit.days} days"
            )
        if reason is not None:
            trace[f"offer:{c.offer}"] = reason
            refused.add(c.offer)
            continue
        out.append(c)
    return out, trace


Distribution = Callable[[int, Sequence[str]], FloatArray]
"""The policy's pmf for slot `s` (1-based) over the given action lines."""


def rank_slots(
    candidates: Sequence[Combination],
    *,
    slots: int,
    distribution: Distribution,
    ranking_id: uuid.UUID,
    forced: Sequence[Combination] = (),
) -> list[SlotLog]:
    """Pick up to `slots` combinations with distinct offers, slot by slot.

    `forced` combinations (mirrored offers, in order) fill the first slots with probability 1;
    every later slot draws from what is left, its probability conditional on the slots before.
    """
    left = list(candidates)
    picks: list[SlotLog] = []
    for chosen in forced:
        if len(picks) == slots or any(p.offer == chosen.offer for p in picks):
            continue
        picks.append(
            SlotLog(
                slot=len(picks) + 1,
                action_id=chosen.action_id,
                offer=chosen.offer,
                text=chosen.text,
                candidate_action_ids=(chosen.action_id,),
                probabilities=(1.0,),
                probability=1.0,
                seed=0,
                forced=True,
            )
        )
        left = [c for c in left if c.offer != chosen.offer]
    while left and len(picks) < slots:
        slot = len(picks) + 1
        pmf = distribution(slot, [c.line for c in left])
        seed = slot_seed(ranking_id, slot)
        index = sample_index(pmf, seed)
        chosen = left[index]
        picks.append(
            SlotLog(
                slot=slot,
                action_id=chosen.action_id,
                offer=chosen.offer,
                text=chosen.text,
                candidate_action_ids=tuple(c.action_id for c in left),
                probabilities=tuple(float(p) for p in pmf),
                probability=float(pmf[index]),
                seed=seed,
                forced=False,
            )
        )
        left = [c for c in left if c.offer != chosen.offer]
    return picks


def slot_answer(snapshot: CatalogSnapshot, pick: SlotLog, channel: str) -> SlotAnswer:
    offer = snapshot.offers[pick.offer]
    text = snapshot.texts[pick.text]
    return SlotAnswer(
        slot=pick.slot,
        action_id=pick.action_id,
        offer=OfferAnswer(
            key=offer.key,
            name=offer.name,
            kind=offer.kind.value,
            cost=offer.cost,
            value=offer.value,
            currency=offer.currency,
        ),
        text=TextAnswer(
            key=text.key,
            language=text.language,
            tone=text.tone,
            subject=text.subject,
            body=text.body,
            image_url=text.image_url,
        ),
        channel=channel,
        probability=pick.probability,
        forced=pick.forced,
        candidates=len(pick.candidate_action_ids),
    )


def plan_ranking(
    ask: RankingAsk,
    *,
    now: datetime,
    state: CustomerRecord,
    snapshot: CatalogSnapshot,
    policy_for: PolicyLookup,
    combinations: CombinationLookup,
    ranking_id: uuid.UUID,
    impressions: Mapping[str, int] | None = None,
    mirrored: Sequence[Mirrored] = (),
) -> RankingPlan:
    """Frame, pull candidates, holdout, safe mode and the slots, in that order."""
    profile = state.profile
    customer = profile.state(state.consents, local_now(now, profile.time_zone).date())
    frame, trace = choose_frame(snapshot, trigger=ask.trigger, customer=customer, now=now)
    entry = RankingEntry(
        id=ranking_id,
        request_id=ask.request_id,
        created_at=now,
        customer_id=profile.id,
        trigger=ask.trigger,
        channel=ask.channel,
        catalog_revision=snapshot.revision,
        reason="nothing_eligible",
        context={},
        slots=(),
        response="",
        request_digest=ranking_digest(ask),
    )

    def done(answer: RankingAnswer, entry: RankingEntry) -> RankingPlan:
        entry = _replace(entry, reason=answer.reason, response=answer.model_dump_json())
        window = timedelta(hours=SLOT_REWARD_HOURS)
        return RankingPlan(answer=answer, write=RankingWrite(entry=entry, closes_at=now + window))

    answer = RankingAnswer(
        ranking_id=ranking_id,
        request_id=ask.request_id,
        customer_id=profile.id,
        trigger=ask.trigger,
        channel=ask.channel,
        decided_at=now,
        reason="nothing_eligible",
    )
    if snapshot.channels[ask.channel].kind is not ChannelKind.pull:
        trace[f"channel:{ask.channel}"] = "a push channel: rankings are for pull channels"
        frame = None
    if frame is None:
        entry = _replace(entry, eligibility_trace=trace)
        return done(answer.model_copy(update={"excluded": trace}), entry)

    today = local_now(now, frame.spec.time_zone).date()
    candidates, more = pull_candidates(
        snapshot,
        frame=frame,
        customer=customer,
        channel=ask.channel,
        combinations=combinations(frame, customer.language, customer.health_class),
        exclude_offers=ask.exclude_offers,
        impressions=impressions or {},
        today=today,
    )
    trace = {**trace, **more}
    policy = policy_for(frame)
    context = context_snapshot(
        customer=customer,
        trigger=ask.trigger,
        now_local=local_now(now, customer.time_zone),
        attributes=policy.spec.customer_attributes,
        extra=dict(ask.context),
    )
    frame_ref = FrameRef(key=frame.key, version=frame.version)
    entry = _replace(
        entry,
        context=context,
        eligibility_trace=trace,
        frame_key=frame.key,
        frame_version=frame.version,
    )
    answer = answer.model_copy(update={"frame": frame_ref})
    excluded_offers = set(ask.exclude_offers)
    consented = ask.channel in customer.consented_channels
    forced = [
        combination
        for m in mirrored
        if consented and m.since <= now < m.until and m.offer not in excluded_offers
        for combination in [
            mirrored_combination(snapshot, m, channel=ask.channel, language=customer.language)
        ]
        if combination is not None
    ]
    reason = "policy"
    version = policy.version
    if in_holdout(profile.id, salt=frame.key, share=frame.spec.holdout_share):
        reason, candidates = "holdout", []  # the frame shows nothing; mirrors still show
    elif snapshot.modes.get(frame.key) == "safe":
        default = frame.spec.safe_default
        safe = default.offer if default is not None else None
        candidates = [c for c in candidates if c.offer == safe]
        version = SAFE_MODE_VERSION
        if not candidates:
            trace = {**trace, "frame": "safe mode after a guardrail breach: nothing to show"}
    if not candidates and not forced:
        reason = "holdout" if reason == "holdout" else "nothing_eligible"
        return done(answer.model_copy(update={"reason": reason, "excluded": trace}), entry)

    floor = policy.spec.floor_share(frame.spec.exploration)

    def distribution(slot: int, lines: Sequence[str]) -> FloatArray:
        if version == SAFE_MODE_VERSION:
            return np.full(len(lines), 1.0 / len(lines))
        return policy.distribution(shared_line({**context, "slot": slot}), lines, floor_share=floor)

    picks = rank_slots(
        candidates,
        slots=ask.slots,
        distribution=distribution,
        ranking_id=ranking_id,
        forced=forced,
    )
    policy_ref = PolicyRef(name=policy.name, version=version)
    entry = _replace(entry, slots=tuple(picks), policy_name=policy.name, policy_version=version)
    answer = answer.model_copy(
        update={
            "reason": reason,
            "policy": policy_ref,
            "slots": [slot_answer(snapshot, p, ask.channel) for p in picks],
            # fewer slots than asked: say what left the others empty
            "excluded": trace if len(picks) < ask.slots and reason == "policy" else {},
        }
    )
    return done(answer, entry)


def _replace(entry: RankingEntry, **changes: Any) -> RankingEntry:
    return replace(entry, **changes)
