"""What simulated customers do with the decisions they get, drawn from the ground truth.

Deliveries, unsubscribes and conversions are reported through the feedback store, as the channel
systems and the shop would report them; conversions wait on an event queue until the day they
happen. Every decision is also scored by the truth for each arm, for the comparison at the end.
"""

from __future__ import annotations

import heapq
import itertools
import math
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from optimizer.core.catalog import CatalogSnapshot, split_signature
from optimizer.cost_limit import best_within_cost
from optimizer.feedback import ConversionReport, EventReport, record_conversions, record_events
from optimizer.ports.decision_logs import LoggedDecision
from optimizer.ports.feedback import FeedbackStore
from optimizer.simulator.population import Population
from optimizer.simulator.truth import GroundTruth

POLICY_REASONS = {"policy", "policy_no_contact"}


def action_costs(snapshot: CatalogSnapshot) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Offer cost by action id (no contact, and actions without an offer, cost nothing)."""
    costs = np.zeros(max(snapshot.actions.values()) + 1)
    for signature, action_id in snapshot.actions.items():
        offer = split_signature(signature)[0]
        if offer is not None and offer in snapshot.offers:
            costs[action_id] = snapshot.offers[offer].cost
    return costs


def cost_limits(snapshot: CatalogSnapshot) -> dict[str, float]:
    """Each frame's limit on the expected offer cost of a decision, as serving applies it."""
    return {f.key: f.spec.guardrails.max_offer_cost_per_decision for f in snapshot.frames}


def oracle_within_limit(
    rates: np.ndarray[Any, Any],
    action_ids: np.ndarray[Any, Any],
    *,
    costs: np.ndarray[Any, np.dtype[np.float64]],
    limit: float,
) -> float:
    """The best a policy can expect from one decision while keeping its frame's cost limit."""
    return best_within_cost(np.asarray(rates, dtype=np.float64), costs[action_ids], limit)


@dataclass
class DecisionStats:
    """Per policy decision: the truth's take-rates of what each arm would have chosen.

    `oracle` is the best candidate; `oracle_within_limits` the best distribution whose expected
    offer cost stays within the frame's limit, which is what the served policy is held to."""

    day: list[int] = field(default_factory=list)
    frame: list[str] = field(default_factory=list)
    health_class: list[str] = field(default_factory=list)
    chosen: list[int] = field(default_factory=list)
    policy: list[float] = field(default_factory=list)
    uniform: list[float] = field(default_factory=list)
    oracle: list[float] = field(default_factory=list)
    oracle_within_limits: list[float] = field(default_factory=list)
    organic: list[float] = field(default_factory=list)
    candidates: list[np.ndarray[Any, Any]] = field(default_factory=list)
    rates: list[np.ndarray[Any, Any]] = field(default_factory=list)
    converted: list[bool] = field(default_factory=list)
    unsubscribe_risk: list[float] = field(default_factory=list)
    """The truth's P(unsubscribe) of the chosen combination; 0 without a contact."""
    contacted: list[bool] = field(default_factory=list)
    unsubscribed: list[bool] = field(default_factory=list)


@dataclass(order=True)
class _Pending:
    at: datetime
    order: int
    kind: str = field(compare=False)
    payload: Any = field(compare=False)


class CustomerReactions:
    """The customers' side of the loop, kept apart from the loop that drives the service.

    It draws from the simulation's own generator, so the draws stay in the loop's order."""

    def __init__(
        self,
        feedback: FeedbackStore,
        *,
        population: Population,
        truth: GroundTruth,
        rng: np.random.Generator,
        start: date,
    ) -> None:
        self.feedback = feedback
        self.population = population
        self.truth = truth
        self.rng = rng
        self.start = start
        self.index = {cid: i for i, cid in enumerate(population.ids)}
        self._queue: list[_Pending] = []
        self._order = itertools.count()
        self.stats = DecisionStats()
        self.costs = action_costs(truth.snapshot)
        self.limits = cost_limits(truth.snapshot)
        self.holdout_converted: list[bool] = []
        self.contacted_converted: list[bool] = []
        self.counts = {"decisions": 0, "contacts": 0, "unsubscribes": 0, "conversions": 0}

    def record_sent(self, events: list[tuple[uuid.UUID, EventReport]], *, now: datetime) -> None:
        """The simulated channel system confirms what it sent from the outbox."""
        record_events(self.feedback, events=events, now=now)

    def react(
        self, logged: Sequence[LoggedDecision], *, from_outbox: Collection[uuid.UUID], now: datetime
    ) -> None:
        """Simulate the customers' answers to the day's decisions and report the events."""
        events: list[tuple[uuid.UUID, EventReport]] = []
        for decision in logged:
            self._observe(decision, events, via_outbox=decision.id in from_outbox)
        if events:
            record_events(self.feedback, events=events, now=now)

    def post_until(self, moment: datetime) -> None:
        """Report the conversions that have happened by `moment`."""
        due = []
        while self._queue and self._queue[0].at <= moment:
            due.append(heapq.heappop(self._queue).payload)
        if due:
            self.counts["conversions"] += len(due)
            record_conversions(self.feedback, conversions=due, now=moment)

    def _observe(
        self,
        decision: LoggedDecision,
        events: list[tuple[uuid.UUID, EventReport]],
        *,
        via_outbox: bool,
    ) -> None:
        """Score the decision by the truth and simulate what the customer does."""
        self.counts["decisions"] += 1
        if decision.reason not in POLICY_REASONS and decision.reason != "holdout":
            return
        i = self.index[decision.customer_id]
        health_class = str(decision.context.get("health_class", "C"))
        noise = float(self.population.noise[i])
        if decision.candidate_action_ids is None:
            return
        ids = decision.candidate_action_ids
        rates = self.truth.take_rates(
            health_class=health_class, trigger=decision.trigger_key, action_ids=ids, noise=noise
        )
        organic = self.truth.organic_rate(
            health_class=health_class, trigger=decision.trigger_key, noise=noise
        )
        if decision.reason == "holdout":
            self._schedule_conversion(decision, organic, decision.created_at, holdout=True)
            return
        chosen = int(decision.chosen_action_id or self.truth.no_contact_id)
        position = int(np.flatnonzero(ids == chosen)[0])
        stats = self.stats
        stats.day.append((decision.created_at.date() - self.start).days)
        stats.frame.append(decision.frame_key or "")
        stats.health_class.append(health_class)
        stats.chosen.append(chosen)
        stats.policy.append(float(rates[position]))
        stats.uniform.append(float(rates.mean()))
        stats.oracle.append(float(rates.max()))
        limit = self.limits.get(decision.frame_key or "", math.inf)
        stats.oracle_within_limits.append(
            oracle_within_limit(rates, ids, costs=self.costs, limit=limit)
        )
        stats.organic.append(organic)
        stats.candidates.append(ids.astype(np.int32))
        stats.rates.append(rates.astype(np.float32))
        stats.converted.append(False)
        index_in_stats = len(stats.converted) - 1
        send_at = decision.send_at if decision.reason == "policy" else None
        unsubscribe = (
            0.0
            if send_at is None
            else self.truth.unsubscribe_rate(health_class=health_class, action_id=chosen)
        )
        stats.unsubscribe_risk.append(unsubscribe)
        stats.contacted.append(send_at is not None)
        stats.unsubscribed.append(False)
        if send_at is not None:
            self.counts["contacts"] += 1
            if not via_outbox:
                events.append((decision.id, EventReport(kind="sent", occurred_at=send_at)))
            if self.rng.random() < unsubscribe:
                self.counts["unsubscribes"] += 1
                stats.unsubscribed[index_in_stats] = True
                events.append(
                    (
                        decision.id,
                        EventReport(kind="unsubscribed", occurred_at=send_at + timedelta(hours=1)),
                    )
                )
            self._schedule_conversion(
                decision, float(rates[position]), send_at, stats_index=index_in_stats
            )
        else:
            self._schedule_conversion(
                decision, organic, decision.created_at, stats_index=index_in_stats
            )

    def _schedule_conversion(
        self,
        decision: LoggedDecision,
        rate: float,
        since: datetime,
        *,
        holdout: bool = False,
        stats_index: int | None = None,
    ) -> None:
        converts = bool(self.rng.random() < rate)
        if holdout:
            self.holdout_converted.append(converts)
        elif decision.reason == "policy":
            self.contacted_converted.append(converts)
        if not converts:
            return
        if stats_index is not None:
            self.stats.converted[stats_index] = True
        at = since + timedelta(days=GroundTruth.delay_days(self.rng))
        conversion = ConversionReport(
            conversion_id=f"conv-{decision.id}",
            customer_id=decision.customer_id,
            kind="retained" if decision.frame_key != "upsell" else "upgrade",
            value=60.0,
            occurred_at=at,
        )
        heapq.heappush(self._queue, _Pending(at, next(self._order), "conversion", conversion))
