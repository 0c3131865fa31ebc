"""Planning a decision: from the catalog snapshot, the customer's state, the policy and the
request to the decision, its answer and what to write. No I/O, no threads: the writer calls it
before it takes the write lock, and again under the lock for the customers whose state changed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from optimizer.answers import DecisionAnswer, FrameRef, PolicyRef, action_answer
from optimizer.budgets import (
    NO_CHECK,
    BudgetCheck,
    budget_prices,
    charges,
    check_budgets,
    price_penalties,
)
from optimizer.core.catalog import NO_CONTACT, CatalogSnapshot, FrameVersion, SafeDefaultSpec
from optimizer.core.decision import (
    Contact,
    CustomerRecord,
    Decision,
    DecisionAsk,
    NoContact,
)
from optimizer.core.values import DecisionReason
from optimizer.eligibility import (
    CandidateSet,
    Combination,
    NoContactCandidate,
    build_candidates,
    choose_frame,
    in_holdout,
    local_now,
)
from optimizer.features import context_snapshot, shared_line
from optimizer.policy import BanditPolicy, Choice, sample_index, seed_from_id
from optimizer.ports.decisions import (
    BudgetPeriod,
    DecisionWrite,
    LogEntry,
    PendingReward,
    ReservedContact,
)

SAFE_MODE_VERSION = "safe_mode"

PolicyLookup = Callable[[FrameVersion], BanditPolicy]
CombinationLookup = Callable[[FrameVersion, str, str], Sequence[Combination]]
"""`frame_combinations` for (frame, language, health class), cached by the caller."""


@dataclass(frozen=True)
class PlanIds:
    """The ids a decision gets, given before it is planned: a plan made again under the write
    lock keeps them, so its sampling seed and its place in the logs do not depend on batching."""

    decision: uuid.UUID
    contact: uuid.UUID
    """Used only if the decision reserves a contact."""


@dataclass(frozen=True)
class DecisionPlan:
    """A decision ready to be written, and the customer state it was planned on."""

    decision: Decision
    answer: DecisionAnswer
    write: DecisionWrite
    state: CustomerRecord
    budgets: BudgetCheck = NO_CHECK
    """What the plan assumed of the frame's budgets (`BudgetCheck.holds`)."""


def request_digest(ask: DecisionAsk) -> dict[str, str]:
    """Per field that says what is asked, a short SHA-256 of its canonical JSON: a retry must
    ask the same, and a digest names what differs without storing the request's context.

    `now` is when it is asked, and a retry is asked later: a client that stamps each attempt,
    or a sweeper that runs again, must get the stored answer (whose `decided_at` says when it
    was decided), not a conflict.
    """
    fields: dict[str, Any] = {
        "trigger": ask.trigger,
        "channels": sorted(set(ask.channels)),
        "context": dict(ask.context),
    }
    return {
        name: hashlib.sha256(
            json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()[:16]
        for name, value in fields.items()
    }


def safe_candidates(candidates: CandidateSet, default: SafeDefaultSpec | None) -> CandidateSet:
    """In safe mode only the frame's safe default combination may be sent (any fitting text),
    and no contact where the frame allows it; without a safe default, only no contact."""
    keep: tuple[Combination, ...] = ()
    if default is not None and default.offer is not None:
        keep = tuple(
            c
            for c in candidates.combinations
            if c.offer == default.offer
            and (default.channel is None or c.channel == default.channel)
            and (default.send_time is None or c.send_time == default.send_time)
        )
    return replace(candidates, combinations=keep)


def uniform_choice(size: int, decision_id: uuid.UUID) -> Choice:
    distribution = np.full(size, 1.0 / size)
    seed = seed_from_id(decision_id)
    index = sample_index(distribution, seed)
    return Choice(
        index=index, probability=float(distribution[index]), distribution=distribution, seed=seed
    )


class _Draft:
    """The parts every outcome of one plan shares."""

    def __init__(
        self,
        ask: DecisionAsk,
        now: datetime,
        state: CustomerRecord,
        snapshot: CatalogSnapshot,
        ids: PlanIds,
    ) -> None:
        self.ask, self.now, self.state, self.snapshot = ask, now, state, snapshot
        self.decision_id = ids.decision
        self.contact_id = ids.contact
        self.budgets = NO_CHECK
        self.frame: FrameVersion | None = None
        self.entry = LogEntry(
            id=self.decision_id,
            request_id=ask.request_id,
            created_at=now,
            customer_id=state.profile.id,
            trigger=ask.trigger,
            catalog_revision=snapshot.revision,
            reason=DecisionReason.nothing_eligible,
            context={},
            eligibility_trace={},
            response="",
            request_digest=request_digest(ask),
        )

    def done(
        self, decision: Decision, answer: DecisionAnswer, *, window_days: int | None = None
    ) -> DecisionPlan:
        entry = replace(
            self.entry,
            reason=answer.reason,
            send_at=decision.send_at if isinstance(decision, Contact) else None,
            response=answer.model_dump_json(),
        )
        contact = None
        if isinstance(decision, Contact) and entry.frame_key is not None:
            contact = ReservedContact(
                id=self.contact_id,
                customer_id=entry.customer_id,
                decision_id=entry.id,
                frame_key=entry.frame_key,
                channel=decision.channel,
                send_at=decision.send_at,
                created_at=self.now,
            )
        reward = None
        if window_days is not None:
            start = contact.send_at if contact is not None else self.now
            reward = PendingReward(
                decision_id=entry.id,
                window_closes_at=start + timedelta(days=window_days),
                sent=contact is None,  # nothing to send: counts as delivered
            )
        spends: tuple[Any, ...] = ()
        if isinstance(decision, Contact) and self.frame is not None and self.frame.spec.budgets:
            spends = charges(
                self.frame,
                self.now,
                offer=self.snapshot.offers[decision.offer],
                channel=decision.channel,
            )
        write = DecisionWrite(entry=entry, contact=contact, reward=reward, charges=spends)
        return DecisionPlan(
            decision=decision, answer=answer, write=write, state=self.state, budgets=self.budgets
        )

    def answer(self, decision: Decision, **fields: Any) -> DecisionAnswer:
        reason = decision.reason if isinstance(decision, NoContact) else DecisionReason.policy
        return DecisionAnswer(
            decision_id=self.decision_id,
            request_id=self.ask.request_id,
            customer_id=self.state.profile.id,
            trigger=self.ask.trigger,
            decided_at=self.now,
            contact=isinstance(decision, Contact),
            reason=reason,
            probability=decision.probability,
            **fields,
        )


def plan_decision(
    ask: DecisionAsk,
    *,
    now: datetime,
    state: CustomerRecord,
    snapshot: CatalogSnapshot,
    policy_for: PolicyLookup,
    combinations: CombinationLookup,
    ids: PlanIds,
    budgets: Mapping[BudgetPeriod, float] | None = None,
) -> DecisionPlan:
    """Frame, candidates, budgets, holdout, safe mode and the policy's choice, in that order.

    `budgets` is the spend of the frame's budget counters (`optimizer.budgets`; a counter not
    in it has spent nothing): a combination whose spend does not fit is not a candidate, and
    the policy's predictions are lowered by the budgets' pacing prices."""
    profile = state.profile
    draft = _Draft(ask, now, state, snapshot, ids)
    customer = profile.state(state.consents, local_now(now, profile.time_zone).date())
    frame, trace = choose_frame(snapshot, trigger=ask.trigger, customer=customer, now=now)
    if frame is None:
        decision: Decision = NoContact(DecisionReason.nothing_eligible, excluded=trace)
        draft.entry = replace(draft.entry, eligibility_trace=trace)
        return draft.done(decision, draft.answer(decision, excluded=trace))

    candidate_set = build_candidates(
        snapshot,
        frame=frame,
        customer=customer,
        history=state.history,
        channels=ask.channels,
        now=now,
        combinations=combinations(frame, customer.language, customer.health_class),
    )
    spent: Mapping[BudgetPeriod, float] = budgets or {}
    prices: dict[BudgetPeriod, float] = {}
    if frame.spec.budgets:
        draft.frame = frame
        pairs = [(c.offer, c.channel) for c in candidate_set.combinations]
        draft.budgets, stopped = check_budgets(frame, now, pairs, snapshot.offers, spent)
        if draft.budgets.blocked:
            kept = tuple(
                c
                for c in candidate_set.combinations
                if (c.offer, c.channel) not in draft.budgets.blocked
            )
            candidate_set = replace(candidate_set, combinations=kept)
        trace = {**trace, **stopped}
        prices = budget_prices(frame, now, spent)
    trace = {**trace, **candidate_set.trace}
    policy = policy_for(frame)
    context = context_snapshot(
        customer=customer,
        trigger=ask.trigger,
        now_local=local_now(now, customer.time_zone),
        attributes=policy.spec.customer_attributes,
        extra=dict(ask.context),
    )
    frame_ref = FrameRef(key=frame.key, version=frame.version)
    action_ids = candidate_set.action_ids
    draft.entry = replace(
        draft.entry,
        context=context,
        eligibility_trace=trace,
        candidate_action_ids=action_ids,
        frame_key=frame.key,
        frame_version=frame.version,
        budget_prices={p.budget_key: price for p, price in prices.items()} if prices else None,
    )

    if not candidate_set.has_contact:
        decision = NoContact(DecisionReason.nothing_eligible, excluded=trace)
        answer = draft.answer(decision, frame=frame_ref, candidates=len(action_ids), excluded=trace)
        return draft.done(decision, answer)

    if in_holdout(profile.id, salt=frame.key, share=frame.spec.holdout_share):
        decision = NoContact(DecisionReason.holdout)
        draft.entry = replace(
            draft.entry, chosen_action_id=snapshot.actions.get(NO_CONTACT), probability=1.0
        )
        # a reward (attributed like any decision's) makes the holdout's conversion rate, the
        # baseline of the frame's uplift, measurable; learning and evaluation skip holdout rows
        return draft.done(
            decision,
            draft.answer(decision, frame=frame_ref, candidates=len(action_ids)),
            window_days=frame.spec.attribution.window_days,
        )

    if snapshot.modes.get(frame.key) == "safe":
        candidate_set = safe_candidates(candidate_set, frame.spec.safe_default)
        action_ids = candidate_set.action_ids
        if not action_ids:
            excluded = {"frame": "safe mode after a guardrail breach: no contact"}
            decision = NoContact(DecisionReason.nothing_eligible, excluded=excluded)
            draft.entry = replace(
                draft.entry,
                candidate_action_ids=action_ids,
                eligibility_trace={**trace, "frame": "safe mode"},
            )
            return draft.done(decision, draft.answer(decision, frame=frame_ref, excluded=excluded))
        draft.entry = replace(draft.entry, candidate_action_ids=action_ids)
        choice = uniform_choice(len(action_ids), draft.decision_id)
        policy_ref = PolicyRef(name=policy.name, version=SAFE_MODE_VERSION)
    else:
        limit = frame.spec.guardrails.max_offer_cost_per_decision
        # no candidate costs more than max_offer_cost: at or below the limit nothing to cap
        capped = frame.spec.max_offer_cost > limit
        penalties = None
        if any(prices.values()):
            low, high = frame.spec.attribution.reward_range(frame.spec.max_offer_cost)
            penalties = price_penalties(
                frame,
                now,
                candidate_set.budget_pairs,
                snapshot.offers,
                prices,
                reward_span=high - low,
            )
        choice = policy.choose(
            shared_line(context),
            candidate_set.lines,
            decision_id=draft.decision_id,
            floor_share=policy.floor_share(frame.spec.exploration),
            costs=candidate_set.offer_costs(snapshot.offers) if capped else None,
            max_expected_cost=limit,
            penalties=penalties,
        )
        policy_ref = PolicyRef(name=policy.name, version=policy.version)
    return _chosen(draft, candidate_set, choice, policy_ref, frame_ref, frame)


def _chosen(
    draft: _Draft,
    candidate_set: CandidateSet,
    choice: Choice,
    policy_ref: PolicyRef,
    frame_ref: FrameRef,
    frame: FrameVersion,
) -> DecisionPlan:
    chosen = candidate_set.candidate(choice.index)
    draft.entry = replace(
        draft.entry,
        policy_name=policy_ref.name,
        policy_version=policy_ref.version,
        probabilities=choice.distribution,
        chosen_action_id=chosen.action_id,
        probability=choice.probability,
        seed=choice.seed,
    )
    window = frame.spec.attribution.window_days
    shown: dict[str, Any] = {
        "candidates": len(candidate_set),
        "policy": policy_ref,
        "frame": frame_ref,
    }
    if isinstance(chosen, NoContactCandidate):
        decision: Decision = NoContact(
            DecisionReason.policy_no_contact,
            action_id=chosen.action_id,
            probability=choice.probability,
        )
        return draft.done(decision, draft.answer(decision, **shown), window_days=window)
    contact = Contact(
        action_id=chosen.action_id,
        offer=chosen.offer,
        text=chosen.text,
        channel=chosen.channel,
        send_time=chosen.send_time,
        send_at=chosen.send_at,
        probability=choice.probability,
    )
    action = action_answer(draft.snapshot, contact, time_zone=draft.state.profile.time_zone)
    return draft.done(contact, draft.answer(contact, action=action, **shown), window_days=window)
