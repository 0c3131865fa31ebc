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

import numpy as np
from sqlalchemy import Engine

from campaign_db import learning
from campaign_db.engine import session_scope
from campaign_db.learning import LearnableReward
from campaign_db.models import LearnerCheckpoint
from optimizer.core.policy_spec import PolicySpec
from optimizer.core.values import utcnow
from optimizer.features import ActionLines, shared_line
from optimizer.policy import UNTRAINED_VERSION, BanditPolicy
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


@dataclass
class _Lineage:
    """A policy as the learner carries it.

    `cursor`: every reward of the policy with a sequence up to it is in the model, once, and
    none after it. `base_version`: the version this model was last published as or taken over
    from; when the serving record names another, someone promoted or rolled back.
    `saved_cursor` and `learned_since_checkpoint` say whether a checkpoint must save it.
    """

    policy: BanditPolicy
    base_version: str | None
    cursor: int
    saved_cursor: int | None = None
    learned_since_checkpoint: int = 0


@dataclass(frozen=True)
class StepReport:
    learned: int
    skipped: int
    cursor: int


class OnlineLearner:
    def __init__(
        self,
        engine: Engine,
        catalog: CatalogCache,
        *,
        source: ModelSource | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self.engine = engine
        self.catalog = catalog
        self.source = source
        self.publisher = publisher
        self.cursor = 0
        self.lineages: dict[str, _Lineage] = {}
        self.loaded = False
        self._lock = threading.RLock()

    # --- state ------------------------------------------------------------------------------

    def load(self) -> None:
        """Resume from the newest checkpoint of every policy (or start empty)."""
        with self._lock:
            with session_scope(self.engine) as session:
                checkpoints = learning.latest_checkpoints(session)
            self.lineages = {}
            self.cursor = min((c.cursor for c in checkpoints), default=0)
            for c in checkpoints:
                version = c.published_version or c.base_version
                policy = BanditPolicy(
                    PolicySpec.model_validate(c.spec),
                    name=c.policy_name,
                    version=version or UNTRAINED_VERSION,
                    model_data=c.model,
                    examples_learned=c.examples_learned,
                )
                self.lineages[c.policy_name] = _Lineage(
                    policy, version, cursor=c.cursor, saved_cursor=c.cursor
                )
            self.loaded = True

    def _lineage(self, name: str, lines: ActionLines) -> _Lineage | None:
        """The policy's lineage; a policy seen for the first time starts from the version that
        serves (or untrained) and catches up from that version's cut-off."""
        lineage = self.lineages.get(name)
        if lineage is not None:
            return lineage
        snapshot, _ = self.catalog.current()
        frame = next((f for f in snapshot.frames if f.key == name), None)
        if frame is None:
            return None
        served = self.publisher.serving(name) if self.publisher is not None else None
        if served is not None and self.source is not None:
            return self._take_over(name, served, lines)
        lineage = _Lineage(BanditPolicy(frame.spec.policy_spec(), name=name), None, cursor=0)
        self.lineages[name] = lineage
        self._catch_up(lineage, lines)
        return lineage

    def _take_over(self, name: str, served: ServedVersion, lines: ActionLines) -> _Lineage:
        """Continue from `served` (a promotion, a rollback, an earlier publication): load it and
        replay the policy's rewards after its cut-off up to the read position."""
        assert self.source is not None
        stored = self.source.load(name, served.version)
        policy = BanditPolicy.from_stored(stored, version=served.version)
        lineage = _Lineage(policy, served.version, cursor=served.cursor)
        replayed = self._catch_up(lineage, lines)
        self.lineages[name] = lineage
        log.info(
            "policy %s: following version %s (cut-off %d, %d rewards replayed)",
            name,
            served.version,
            served.cursor,
            replayed,
        )
        return lineage

    def _catch_up(self, lineage: _Lineage, lines: ActionLines, *, batch: int = 5_000) -> int:
        """Learn the policy's rewards after the lineage's cursor up to the read position."""
        replayed = 0
        while lineage.cursor < self.cursor:
            with session_scope(self.engine) as session:
                events = learning.final_rewards_after(
                    session,
                    cursor=lineage.cursor,
                    limit=batch,
                    policy_name=lineage.policy.name,
                    through=self.cursor,
                )
            for event in events:
                replayed += self._learn(lineage, event, lines)
            if len(events) < batch:
                lineage.cursor = self.cursor
        return replayed

    @staticmethod
    def _learn(lineage: _Lineage, event: LearnableReward, lines: ActionLines) -> int:
        """Learn `event` into the lineage unless its model holds it already; 1 if learned."""
        if event.sequence <= lineage.cursor:
            return 0
        lineage.cursor = event.sequence
        ids = event.action_ids
        chosen = np.flatnonzero(ids == event.chosen_action_id) if ids is not None else []
        if ids is None or len(chosen) != 1:
            return 0
        lineage.policy.learn(
            shared_line(event.context),
            [lines[int(a)] for a in ids],
            chosen=int(chosen[0]),
            reward=event.reward,
            probability=event.probability,
        )
        lineage.learned_since_checkpoint += 1
        return 1

    # --- learning ---------------------------------------------------------------------------

    def step(self, *, limit: int = 5_000) -> StepReport:
        """Learn the next final rewards after the read position (at most `limit`)."""
        with self._lock:
            if not self.loaded:
                self.load()
            with session_scope(self.engine) as session:
                events = learning.final_rewards_after(session, cursor=self.cursor, limit=limit)
            _, lines = self.catalog.current()
            learned = skipped = 0
            for event in events:
                lineage = self._lineage(event.policy_name, lines)
                if lineage is not None and self._learn(lineage, event, lines):
                    learned += 1
                else:
                    skipped += 1
                self.cursor = event.sequence
            for lineage in self.lineages.values():
                lineage.cursor = max(lineage.cursor, self.cursor)
            return StepReport(learned=learned, skipped=skipped, cursor=self.cursor)

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
            rows: dict[str, LearnerCheckpoint] = {}
            with session_scope(self.engine, write=True) as session:
                for name in changed:
                    lineage = self.lineages[name]
                    rows[name] = LearnerCheckpoint(
                        policy_name=name,
                        cursor=lineage.cursor,
                        examples_learned=lineage.policy.examples_learned,
                        base_version=lineage.base_version,
                        published_version=None if name in learned else lineage.base_version,
                        spec=lineage.policy.spec.model_dump(mode="json"),
                        model=lineage.policy.serialize(),
                        created_at=now,
                    )
                    session.add(rows[name])
            for name in changed:
                self.lineages[name].saved_cursor = self.lineages[name].cursor
                self.lineages[name].learned_since_checkpoint = 0
            return self._publish(learned, rows)

    def _publish(self, names: list[str], rows: dict[str, LearnerCheckpoint]) -> dict[str, str]:
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
            checkpoint_id = rows[name].id
            assert checkpoint_id is not None
            with session_scope(self.engine, write=True) as session:
                learning.mark_published(session, checkpoint_id=checkpoint_id, version=version)
        return published

    def follow_promotions(self) -> list[str]:
        """Take over every version the serving record names that this learner did not publish
        (a promotion, a rollback), replaying the rewards after its cut-off."""
        if self.publisher is None or self.source is None:
            return []
        with self._lock:
            _, lines = self.catalog.current()
            switched = []
            for name, lineage in list(self.lineages.items()):
                try:
                    served = self.publisher.serving(name)
                    if served is None or served.version == lineage.base_version:
                        continue
                    self._take_over(name, served, lines)
                except Exception:
                    log.exception("cannot follow the serving version of %s", name)
                    continue
                switched.append(name)
            return switched
