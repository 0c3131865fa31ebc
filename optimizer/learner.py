"""The online learner: final rewards, exactly once, in order, from a durable cursor.

Final rewards carry a sequence number. The learner reads those after its cursor, lets VW learn
each with cost = -reward and the logged probability, and checkpoints every policy's model together
with the cursor in one transaction. After a crash it loads the last checkpoint and continues after
its cursor: whatever it learned since was lost with the process, so no event is ever learned twice
into a saved model. Checkpoints are then published (MLflow versions that move `champion`, or
straight into the serving pool of this process), which is how serving picks up new weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sqlalchemy import Engine

from campaign_db import learning
from campaign_db.engine import session_scope
from campaign_db.models import LearnerCheckpoint
from campaign_db.types import utcnow
from optimizer.features import shared_line
from optimizer.policy import UNTRAINED_VERSION, BanditPolicy
from optimizer.serving import (
    CatalogCache,
    ModelSource,
    PolicyPool,
    frame_policy_spec,
    online_version,
)
from optimizer.spec import PolicySpec

log = logging.getLogger("campopt.learner")


class Publisher(Protocol):
    """Makes a checkpointed policy the one that serves; returns the version it published as."""

    def publish(self, policy: BanditPolicy, *, cursor: int, parent_version: str | None) -> str: ...

    def lineage(self, name: str) -> str | None:
        """The version serving should follow, if someone else (a promotion) moved it."""
        ...


class PoolPublisher:
    """Publish into this process's serving pool (one-process deployments, the demo)."""

    def __init__(self, pool: PolicyPool) -> None:
        self.pool = pool

    def publish(self, policy: BanditPolicy, *, cursor: int, parent_version: str | None) -> str:
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

    def lineage(self, name: str) -> str | None:
        return None


@dataclass
class _Lineage:
    """A policy as the learner carries it: the model and the version serving should show.

    `base_version` is the version this model was last published as, or was loaded from; when
    the registry's champion is another version, someone promoted or rolled back.
    """

    policy: BanditPolicy
    base_version: str | None
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

    # --- state ------------------------------------------------------------------------------

    def load(self) -> None:
        """Resume from the newest checkpoint of every policy (or start empty)."""
        with session_scope(self.engine) as session:
            checkpoints = learning.latest_checkpoints(session)
        self.lineages = {}
        self.cursor = max((c.cursor for c in checkpoints), default=0)
        for c in checkpoints:
            policy = BanditPolicy(
                PolicySpec.model_validate(c.spec),
                name=c.policy_name,
                version=c.published_version or c.base_version or UNTRAINED_VERSION,
                model_data=c.model,
                examples_learned=c.examples_learned,
            )
            self.lineages[c.policy_name] = _Lineage(policy, c.published_version or c.base_version)
        self.loaded = True

    def _lineage(self, name: str) -> _Lineage | None:
        lineage = self.lineages.get(name)
        if lineage is not None:
            return lineage
        snapshot, _ = self.catalog.current()
        frame = next((f for f in snapshot.frames if f.key == name), None)
        if frame is None:
            return None
        lineage = self._from_source(name) or _Lineage(
            BanditPolicy(frame_policy_spec(frame), name=name), base_version=None
        )
        self.lineages[name] = lineage
        return lineage

    def _from_source(self, name: str, version: str | None = None) -> _Lineage | None:
        if self.source is None:
            return None
        version = version or self.source.serving_version(name)
        if version is None:
            return None
        stored = self.source.load(name, version)
        policy = BanditPolicy(
            stored.spec,
            name=name,
            version=version,
            model_data=stored.model_data,
            examples_learned=stored.examples_learned,
        )
        return _Lineage(policy, base_version=version)

    # --- learning ---------------------------------------------------------------------------

    def step(self, *, limit: int = 5_000) -> StepReport:
        """Learn the next final rewards after the cursor (at most `limit`)."""
        if not self.loaded:
            self.load()
        with session_scope(self.engine) as session:
            events = learning.final_rewards_after(session, cursor=self.cursor, limit=limit)
        _, lines = self.catalog.current()
        learned = skipped = 0
        for event in events:
            lineage = self._lineage(event.policy_name)
            ids = event.action_ids
            chosen = np.flatnonzero(ids == event.chosen_action_id) if ids is not None else []
            if lineage is None or ids is None or len(chosen) != 1:
                skipped += 1
            else:
                lineage.policy.learn(
                    shared_line(event.context),
                    [lines[int(a)] for a in ids],
                    chosen=int(chosen[0]),
                    reward=event.reward,
                    probability=event.probability,
                )
                lineage.learned_since_checkpoint += 1
                learned += 1
            self.cursor = event.sequence
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
        """Follow what someone else promoted, save every changed policy with the cursor in one
        transaction, then publish what was learned.

        Following first means a promotion or rollback is never overwritten by a model that was
        learning on the replaced lineage.
        """
        if not self.loaded:
            self.load()
        switched = self.follow_promotions()
        learned = [name for name, lin in self.lineages.items() if lin.learned_since_checkpoint]
        changed = sorted(set(learned) | set(switched))
        if not changed:
            return {}
        now = utcnow()
        rows = {}
        with session_scope(self.engine, write=True) as session:
            for name in changed:
                lineage = self.lineages[name]
                row = LearnerCheckpoint(
                    policy_name=name,
                    cursor=self.cursor,
                    examples_learned=lineage.policy.examples_learned,
                    base_version=lineage.base_version,
                    published_version=None if name in learned else lineage.base_version,
                    spec=lineage.policy.spec.model_dump(mode="json"),
                    model=lineage.policy.serialize(),
                    created_at=now,
                )
                session.add(row)
                rows[name] = row
        published: dict[str, str] = {}
        for name in learned:
            lineage = self.lineages[name]
            lineage.learned_since_checkpoint = 0
            if self.publisher is None:
                continue
            try:
                version = self.publisher.publish(
                    lineage.policy, cursor=self.cursor, parent_version=lineage.base_version
                )
            except Exception:
                log.exception("publishing %s failed; it stays checkpointed", name)
                continue
            lineage.base_version = version
            lineage.policy.version = version
            published[name] = version
            with session_scope(self.engine, write=True) as session:
                row = rows[name]
                row.published_version = version
                session.add(row)
        return published

    def follow_promotions(self) -> list[str]:
        """Switch to a champion that someone else promoted; the cursor stays where it is."""
        if self.publisher is None:
            return []
        switched = []
        for name, lineage in list(self.lineages.items()):
            try:
                serving = self.publisher.lineage(name)
                if serving is None or serving == lineage.base_version:
                    continue
                promoted = self._from_source(name, serving)
            except Exception:
                log.exception("cannot look up the champion of %s", name)
                continue
            if promoted is not None:
                log.info("policy %s: following promoted version %s", name, serving)
                self.lineages[name] = promoted
                switched.append(name)
        return switched
