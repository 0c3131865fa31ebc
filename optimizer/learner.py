"""The online learner: every final reward learned exactly once, in order, from durable cursors.

Final rewards carry a sequence number. Each policy's model carries its own cursor: the sequence
up to which it has learned every reward of its policy, once. The learner reads the rewards after
its read position, lets VW learn those each model has not seen (cost = -reward, the logged
probability), and checkpoints models and cursors together in one transaction. A lock makes
learning a batch and taking a checkpoint exclusive, so a checkpoint always holds a model with
exactly the count and cursor it claims.

A model the learner takes over — a promotion, a rollback, a version published before a crash —
comes with its training cut-off; the learner replays that policy's rewards from the cut-off to
its read position before going on. So neither a crash at any point nor a promotion loses a
reward or learns one twice. After a crash the learner resumes from the newest checkpoints:
whatever it learned since was lost with the process and is learned again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Protocol

from optimizer.core.values import utcnow
from optimizer.lineages import Lineage, Lineages, learn
from optimizer.policy import UNTRAINED_VERSION, BanditPolicy, StoredModel
from optimizer.ports.audit import AuditEntry, AuditLog
from optimizer.ports.learning import Checkpoint, LearningStore
from optimizer.serving import (
    CatalogCache,
    ModelSource,
    PolicyPool,
    ServedVersion,
    online_version,
)

log = logging.getLogger("campopt.learner")


class Publisher(Protocol):
    """Makes a checkpointed policy the one that serves."""

    def publish(
        self, policy: BanditPolicy, *, cursor: int, parent_version: str | None
    ) -> str | None:
        """The version it published as, or None when serving moved to another lineage (a
        promotion) that the learner must follow instead."""
        ...

    def serving(self, name: str) -> ServedVersion | None:
        """The version the service approved for serving, with its training cut-off."""
        ...


class PoolPublisher:
    """Publish into this process's serving pool (one-process deployments, the demo)."""

    def __init__(self, pool: PolicyPool) -> None:
        self.pool = pool

    def publish(
        self, policy: BanditPolicy, *, cursor: int, parent_version: str | None
    ) -> str | None:
        version = online_version(cursor)
        self.pool.install(
            BanditPolicy(
                policy.spec,
                name=policy.name,
                version=version,
                model_data=policy.serialize(),
                examples_learned=policy.examples_learned,
            )
        )
        return version

    def serving(self, name: str) -> ServedVersion | None:
        return None


@dataclass(frozen=True)
class DriftChange:
    """A policy's model found drift (`drifting`) or caught up after it, learning `sequence`."""

    policy_name: str
    drifting: bool
    sequence: int


@dataclass(frozen=True)
class StepReport:
    learned: int
    skipped: int
    cursor: int
    drift: tuple[DriftChange, ...] = ()


class OnlineLearner:
    def __init__(
        self,
        store: LearningStore,
        catalog: CatalogCache,
        *,
        source: ModelSource | None = None,
        publisher: Publisher | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.source = source
        self.publisher = publisher
        self.audit = audit
        self.cursor = 0
        self._lineages = Lineages(
            store,
            catalog,
            source=source,
            serving=publisher.serving if publisher is not None else None,
        )
        self.loaded = False
        self._lock = threading.RLock()

    @property
    def lineages(self) -> dict[str, Lineage]:
        return self._lineages.by_name

    # --- state ------------------------------------------------------------------------------

    def load(self) -> None:
        """Resume from the newest checkpoint of every policy (or start empty)."""
        with self._lock:
            checkpoints = self.store.newest_checkpoints()
            self.cursor = min((c.cursor for c in checkpoints), default=0)
            lineages: dict[str, Lineage] = {}
            for c in checkpoints:
                version = c.published_version or c.base_version
                stored = StoredModel(
                    name=c.policy_name,
                    version=version or UNTRAINED_VERSION,
                    spec=c.spec,
                    model_data=c.model,
                    examples_learned=c.examples_learned,
                )
                lineages[c.policy_name] = Lineage(
                    BanditPolicy.from_stored(stored),
                    version,
                    cursor=c.cursor,
                    saved_cursor=c.cursor,
                )
            self._lineages.by_name = lineages
            self.loaded = True

    # --- learning ---------------------------------------------------------------------------

    def step(self, *, limit: int = 5_000) -> StepReport:
        """Learn the next final rewards after the read position (at most `limit`)."""
        with self._lock:
            if not self.loaded:
                self.load()
            events = self.store.final_rewards_after(cursor=self.cursor, limit=limit)
            _, lines = self.catalog.current()
            learned = skipped = 0
            drift: list[DriftChange] = []
            for event in events:
                lineage = self._lineages.get(event.policy_name, lines, read_position=self.cursor)
                drifting = lineage is not None and lineage.policy.drifting
                if lineage is not None and learn(lineage, event, lines):
                    learned += 1
                    if lineage.policy.drifting != drifting:
                        drift.append(DriftChange(event.policy_name, not drifting, event.sequence))
                else:
                    skipped += 1
                self.cursor = event.sequence
            for lineage in self.lineages.values():
                lineage.cursor = max(lineage.cursor, self.cursor)
            self._record(drift)
            return StepReport(
                learned=learned, skipped=skipped, cursor=self.cursor, drift=tuple(drift)
            )

    def _record(self, changes: list[DriftChange]) -> None:
        """Drift found or caught up with goes to the audit log, where managers look."""
        if self.audit is None:
            return
        for change in changes:
            policy = self.lineages[change.policy_name].policy
            report = policy.tuning_report() or {}
            self.audit.add(
                AuditEntry(
                    actor="learner",
                    action="policy.drift_found" if change.drifting else "policy.drift_recovered",
                    subject=f"{change.policy_name}:{policy.version}",
                    at=utcnow(),
                    details={"reward_sequence": change.sequence, **report.get("drift", {})},
                )
            )

    def run_until_caught_up(self, *, limit: int = 5_000) -> int:
        total = 0
        while True:
            report = self.step(limit=limit)
            total += report.learned
            if report.learned + report.skipped < limit:
                return total

    # --- checkpoints ------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, str]:
        """Follow what someone else promoted, save every changed policy with its cursor in one
        transaction, then publish what was learned.

        Following first means a promotion or rollback is never overwritten by a model that was
        learning on the replaced lineage; the publisher refuses to, too, should one happen
        between the two.
        """
        with self._lock:
            if not self.loaded:
                self.load()
            self.follow_promotions()
            changed = sorted(
                name
                for name, lin in self.lineages.items()
                if lin.learned_since_checkpoint or lin.saved_cursor != lin.cursor
            )
            if not changed:
                return {}
            learned = [n for n in changed if self.lineages[n].learned_since_checkpoint]
            now = utcnow()
            saved = self.store.save_checkpoints(
                [
                    Checkpoint(
                        policy_name=name,
                        cursor=lineage.cursor,
                        examples_learned=lineage.policy.examples_learned,
                        base_version=lineage.base_version,
                        published_version=None if name in learned else lineage.base_version,
                        spec=lineage.policy.spec,
                        model=lineage.policy.serialize(),
                        created_at=now,
                    )
                    for name, lineage in ((n, self.lineages[n]) for n in changed)
                ]
            )
            for name in changed:
                self.lineages[name].saved_cursor = self.lineages[name].cursor
                self.lineages[name].learned_since_checkpoint = 0
            return self._publish(learned, {c.policy_name: c for c in saved})

    def _publish(self, names: list[str], saved: dict[str, Checkpoint]) -> dict[str, str]:
        published: dict[str, str] = {}
        if self.publisher is None:
            return published
        for name in names:
            lineage = self.lineages[name]
            try:
                version = self.publisher.publish(
                    lineage.policy, cursor=lineage.cursor, parent_version=lineage.base_version
                )
            except Exception:
                log.exception("publishing %s failed; it stays checkpointed", name)
                continue
            if version is None:
                continue
            lineage.base_version = version
            lineage.policy.version = version
            published[name] = version
            checkpoint_id = saved[name].id
            if checkpoint_id is not None:
                self.store.mark_published(checkpoint_id, version=version)
        return published

    def follow_promotions(self) -> list[str]:
        """Take over every version the serving record names that this learner did not publish
        (a promotion, a rollback), replaying the rewards after its cut-off."""
        if self.publisher is None or self.source is None:
            return []
        with self._lock:
            _, lines = self.catalog.current()
            return self._lineages.follow(lines, read_position=self.cursor)
