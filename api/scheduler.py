"""Scheduled jobs, wired to domain functions; only the process holding the leader lock runs them.

Every job runs at most one instance at a time and coalesces missed runs. Another process that
waits for the lock takes over within a few seconds when the leader dies.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from apscheduler.schedulers.background import BackgroundScheduler

from api.observability import GUARDRAIL
from api.settings import Settings
from campaign_db.engine import Engine, LeaderLock
from campaign_db.privacy import purge
from optimizer.core.values import utcnow
from optimizer.guardrails import GuardrailMonitor
from optimizer.learner import OnlineLearner
from optimizer.outbound import emit_pending_triggers
from optimizer.ports.audit import AuditLog
from optimizer.ports.governance import GuardrailStore
from optimizer.ports.learning import ServingRecords
from optimizer.ports.outbox import OutboxStore
from optimizer.ports.rewards import RewardStore
from optimizer.rankings import RankingService
from optimizer.rewards import finalize_due
from optimizer.serving import CatalogCache

if TYPE_CHECKING:
    from optimizer.decisions import DecisionService
    from optimizer.lifecycle import PolicyLifecycle
    from optimizer.registry import PolicyRegistry

log = logging.getLogger("campopt.scheduler")


class JobServices(Protocol):
    """What the jobs use; the container provides it (a Protocol, so that this module does not
    import the container that builds the runner)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def catalog(self) -> CatalogCache: ...
    @property
    def decisions(self) -> DecisionService: ...
    @property
    def rankings(self) -> RankingService: ...
    @property
    def source(self) -> PolicyRegistry | None: ...
    @property
    def audit(self) -> AuditLog: ...
    @property
    def learning(self) -> ServingRecords: ...
    @property
    def rewards(self) -> RewardStore: ...
    @property
    def outbox(self) -> OutboxStore: ...
    @property
    def governance(self) -> GuardrailStore: ...
    def lifecycle(self) -> PolicyLifecycle | None: ...


class SchedulerRunner:
    def __init__(self, services: JobServices, learner: OnlineLearner) -> None:
        self.services = services
        self.learner = learner
        self.lock = LeaderLock(services.engine)
        self.poll_seconds = services.settings.leader_poll_seconds
        self.scheduler: BackgroundScheduler | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader", daemon=True)

    @property
    def leading(self) -> bool:
        return self.scheduler is not None

    def start(self) -> SchedulerRunner:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.scheduler is None and self.lock.try_acquire():
                    log.info("leader lock acquired: starting the scheduler")
                    self._start_jobs()
                elif self.scheduler is not None and not self.lock.alive():
                    log.warning("leader lock lost: stopping the scheduler")
                    self._stop_jobs()
            except Exception:
                log.exception("leader election failed; retrying")
            self._stop.wait(self.poll_seconds)

    def _start_jobs(self) -> None:
        """Start the jobs, the learner from the newest checkpoints: while this process was not
        leading, another leader may have learned and checkpointed further."""
        settings = self.services.settings
        self.learner.load()
        now = utcnow()
        scheduler = BackgroundScheduler(
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 60}
        )
        scheduler.add_job(
            self.finalize, "interval", seconds=settings.finalize_seconds, id="finalize"
        )
        scheduler.add_job(self.learn, "interval", seconds=settings.learn_seconds, id="learn")
        scheduler.add_job(
            self.checkpoint, "interval", seconds=settings.checkpoint_seconds, id="checkpoint"
        )
        scheduler.add_job(self.emit, "interval", seconds=settings.emit_seconds, id="emit")
        # guardrails and retention also run at once: a leader that changes more often than
        # their interval would otherwise never run them
        scheduler.add_job(
            self.guard,
            "interval",
            seconds=settings.guardrail_seconds,
            id="guardrails",
            next_run_time=now,
        )
        scheduler.add_job(
            self.retain,
            "interval",
            seconds=settings.retention_seconds,
            id="retention",
            next_run_time=now,
        )
        if self.services.source is not None:
            scheduler.add_job(self.train, "interval", seconds=settings.train_seconds, id="train")
            scheduler.add_job(
                self.reconcile,
                "interval",
                seconds=settings.policy_reload_seconds,
                id="aliases",
                next_run_time=now,
            )
        scheduler.start()
        self.scheduler = scheduler

    def _stop_jobs(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None

    # --- the jobs: one domain call each --------------------------------------------------------

    def finalize(self) -> None:
        now = utcnow()
        finalize_due(self.services.rewards, now=now)
        self.services.rankings.finalize_due(now=now)  # after push rewards: one sequence

    def learn(self) -> None:
        self.learner.run_until_caught_up()

    def checkpoint(self) -> None:
        self.learner.checkpoint()

    def emit(self) -> None:
        emit_pending_triggers(self.services.outbox, self.services.decisions)

    def guard(self) -> None:
        lifecycle = self.services.lifecycle()
        snapshot, _ = self.services.catalog.current()
        guardrails = GuardrailMonitor(self.services.governance, self.services.audit)
        results = guardrails.monitor(
            list(snapshot.frames),
            rollback=lifecycle.rollback if lifecycle is not None else None,
            window=timedelta(days=self.services.settings.guardrail_window_days),
        )
        for health in results:
            for metric in (
                "unsubscribe_rate",
                "complaint_rate",
                "conversion_rate",
                "offer_cost_per_decision",
            ):
                value = getattr(health, metric)
                if value is not None:
                    GUARDRAIL.labels(frame=health.frame_key, metric=metric).set(value)
        self.services.catalog.refresh(force=True)

    def retain(self) -> None:
        settings = self.services.settings
        now = utcnow()
        purged = purge(
            self.services.engine,
            logs_before=now - timedelta(days=settings.retention_days),
            audit_before=now - timedelta(days=settings.audit_retention_days),
        )
        if purged.decisions or purged.audit:
            log.info("retention purge", extra=purged.__dict__)

    def train(self) -> None:
        lifecycle = self.services.lifecycle()
        if lifecycle is not None:
            lifecycle.train_and_promote_all()

    def reconcile(self) -> None:
        from optimizer.publishing import reconcile_aliases

        if self.services.source is not None:
            reconcile_aliases(self.services.learning, self.services.source)

    def stop(self, *, timeout: float = 60.0) -> None:
        """Stop electing, then the jobs, then give up the lock: joining the leader thread
        first means it cannot start the jobs again after they were stopped."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
        self._stop_jobs()
        self.lock.release()
