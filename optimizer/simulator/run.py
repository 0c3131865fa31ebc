"""Run the whole loop against a simulated population, through the real service code.

Every simulated day: usage drifts and worsening health classes emit their triggers into the
outbox (which a simulated channel system drains); other triggers (binges, inactivity, failed
payments, cancellation requests) ask the decision service directly; contacts are sent, customers
convert or unsubscribe by the ground truth, conversions are posted when they happen; at the end
of the day rewards whose window closed become final and the online learner learns them and
publishes new weights to serving. Alongside, every decision's candidates are scored by the truth,
so the learning policy can be compared with uniform random, the best fixed combination and the
oracle on exactly the same decisions.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np

from optimizer.core.decision import DecisionAsk
from optimizer.core.values import ChannelKind
from optimizer.decisions import DecisionService
from optimizer.health import UsageIn, UsageIndexConfig
from optimizer.learner import OnlineLearner
from optimizer.outbound import OutboxAck, UsageRow, ack_outbox, fetch_outbox, record_usage
from optimizer.ports.customers import CustomerStore, Profile
from optimizer.ports.decision_logs import DecisionLogReader
from optimizer.ports.feedback import FeedbackStore
from optimizer.ports.outbox import OutboxStore
from optimizer.ports.rewards import RewardStore
from optimizer.rewards import finalize_due
from optimizer.simulator.population import Population
from optimizer.simulator.reactions import CustomerReactions, DecisionStats
from optimizer.simulator.truth import MIRRORED_CLASSES, GroundTruth

EVENT_TRIGGERS = {
    # trigger: (health classes it happens to, daily probability)
    "category_binge": ("AB", 0.025),
    "inactive_14d": ("CD", 0.02),
    "cancellation_requested": ("D", 0.02),
    "payment_failed": ("ABCD", 0.002),
}


@dataclass(frozen=True)
class SimulationConfig:
    customers: int = 12_000
    days: int = 28
    seed: int = 7
    start: date = date(2026, 11, 2)
    learn: bool = True
    """False keeps the policy uniform all along: an exploration period, good logs to evaluate."""
    annoyance: bool = False
    """Customers unsubscribe by channel, class and tone (`GroundTruth.annoyance`)."""
    change_day: int | None = None
    """From this day on customers answer offers as the opposite health class did (A as D, B as
    C and back): an abrupt change for drift detection to find."""


@dataclass
class SimulationResult:
    config: SimulationConfig
    stats: DecisionStats
    holdout_converted: list[bool]
    contacted_converted: list[bool]
    decisions: int
    contacts: int
    unsubscribes: int
    conversions: int
    learned: int
    published_versions: dict[str, str]
    truth: GroundTruth


@dataclass(frozen=True)
class SimulationStores:
    """The stores the simulated loop writes through: the same ones the service uses."""

    customers: CustomerStore
    outbox: OutboxStore
    feedback: FeedbackStore
    rewards: RewardStore
    logs: DecisionLogReader


class Simulation:
    def __init__(
        self,
        stores: SimulationStores,
        decisions: DecisionService,
        learner: OnlineLearner,
        *,
        config: SimulationConfig,
        usage_config: UsageIndexConfig,
    ) -> None:
        self.stores = stores
        self.decisions = decisions
        self.outbox = stores.outbox
        self.learner = learner
        self.logs = stores.logs
        self.config = config
        self.usage_config = usage_config
        self.rng = np.random.default_rng(config.seed)
        self.population = Population.generate(config.customers, rng=self.rng, start=config.start)
        snapshot, _ = decisions.catalog.current()
        self.truth = GroundTruth.for_snapshot(snapshot, annoyance=config.annoyance)
        self.push_channels = sorted(
            k for k, c in snapshot.channels.items() if c.kind is ChannelKind.push
        )
        self.all_channels = sorted(snapshot.channels)
        self.reactions = CustomerReactions(
            stores.feedback,
            population=self.population,
            truth=self.truth,
            rng=self.rng,
            start=config.start,
        )
        self.learned = 0
        self.published: dict[str, str] = {}
        self.reported = self.population.classes(usage_config)

    # --- set-up -----------------------------------------------------------------------------

    def populate(self) -> None:
        """Create the customers with their consents and initial health class in the database."""
        pop = self.population
        classes = pop.classes(self.usage_config)
        now = datetime.combine(self.config.start, time(0), tzinfo=UTC)
        batch = 5_000
        for start in range(0, len(pop), batch):
            ids = range(start, min(start + batch, len(pop)))
            self.stores.customers.import_customers(
                [
                    (
                        pop.ids[i],
                        Profile(
                            health_class=str(classes[i]),
                            usage_index=float(round(pop.usage[i], 6)),
                            customer_since=pop.customer_since[i],
                            time_zone=str(pop.time_zone[i]),
                            language=str(pop.language[i]),
                        ),
                    )
                    for i in ids
                ],
                granted=[
                    (pop.ids[i], channel)
                    for i in ids
                    for channel, granted in pop.consents.items()
                    if granted[i]
                ],
                now=now,
            )

    # --- the loop ---------------------------------------------------------------------------

    def run(self, progress: Callable[[int], None] | None = None) -> SimulationResult:
        for day in range(self.config.days):
            self._day(day)
            if progress is not None:
                progress(day + 1)
        if self.config.learn:
            self.published.update(self.learner.checkpoint())
        reactions = self.reactions
        return SimulationResult(
            config=self.config,
            stats=reactions.stats,
            holdout_converted=reactions.holdout_converted,
            contacted_converted=reactions.contacted_converted,
            decisions=reactions.counts["decisions"],
            contacts=reactions.counts["contacts"],
            unsubscribes=reactions.counts["unsubscribes"],
            conversions=reactions.counts["conversions"],
            learned=self.learned,
            published_versions=self.published,
            truth=self.truth,
        )

    def _day(self, day: int) -> None:
        if day == self.config.change_day:
            snapshot, _ = self.decisions.catalog.current()
            self.truth = GroundTruth.for_snapshot(
                snapshot, annoyance=self.config.annoyance, offers_as=MIRRORED_CLASSES
            )
            self.reactions.truth = self.truth
        start = datetime.combine(self.config.start + timedelta(days=day), time(0), tzinfo=UTC)
        end = start + timedelta(days=1)
        morning = start + timedelta(hours=6)

        # usage drifts; worsening classes emit their triggers into the outbox
        pop = self.population
        pop.drift(self.rng)
        after = pop.classes(self.usage_config)
        # usage arrives as a weekly batch, a seventh of the customers each day
        reporting = np.arange(len(pop)) % 7 == day % 7
        changed = np.flatnonzero(reporting & (self.reported != after))
        self.reported[reporting] = after[reporting]
        rows = []
        for i in changed:
            recency, sessions, minutes = Population.observation(pop.usage[i], self.usage_config)
            rows.append(
                UsageRow(
                    customer_id=pop.ids[i],
                    usage=UsageIn(
                        recency_days=recency,
                        sessions_30d=sessions,
                        minutes_30d=minutes,
                        observed_at=morning,
                    ),
                )
            )
        outbox_ids: list[uuid.UUID] = []
        if rows:
            for result in record_usage(
                self.outbox, self.decisions, rows=rows, config=self.usage_config, now=morning
            ):
                if result.decision_id is not None:
                    outbox_ids.append(result.decision_id)
        for channel in self.push_channels:
            while items := fetch_outbox(self.outbox, channel=channel, limit=500, now=morning):
                ack_outbox(
                    self.outbox,
                    ack=OutboxAck(ids=[i.outbox_id for i in items]),
                    record_sent=self.reactions.record_sent,
                    now=morning,
                )

        # other triggers ask for decisions during the day
        requests = []
        for trigger, (classes, rate) in EVENT_TRIGGERS.items():
            eligible = np.isin(after, list(classes))
            hits = np.flatnonzero(eligible & (self.rng.random(len(pop)) < rate))
            for i in hits:
                moment = start + timedelta(hours=float(self.rng.uniform(7, 21)))
                requests.append(
                    DecisionAsk(
                        request_id=f"sim-{day}-{trigger}-{pop.ids[i]}",
                        customer_id=pop.ids[i],
                        trigger=trigger,
                        channels=self.all_channels,
                        now=moment,
                    )
                )
        futures = [self.decisions.submit(r) for r in requests]
        answers = [f.result(timeout=120) for f in futures]
        direct_ids = [a.decision_id for a in answers]

        logged = self.logs.decisions_by_id(outbox_ids + direct_ids)
        self.reactions.react(logged, from_outbox=set(outbox_ids), now=end)
        self.reactions.post_until(end)
        finalize_due(self.stores.rewards, now=end)
        if not self.config.learn:
            return
        while True:
            report = self.learner.step(limit=20_000)
            self.learned += report.learned
            if report.learned + report.skipped < 20_000:
                break
        self.published.update(self.learner.checkpoint())
