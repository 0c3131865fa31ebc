"""The policies the online learner carries, each with its cursor, and how it takes one over.

A lineage is one policy's model as it grows by learning. Its cursor is the reward sequence up
to which the model holds every reward of its policy, once. When the service makes another
version serve (a promotion, a rollback, a publication before a crash), the learner takes that
version over: it loads it and replays the policy's rewards from its training cut-off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from optimizer.features import ActionLines, shared_line
from optimizer.policy import BanditPolicy
from optimizer.ports.learning import LearnableReward, LearnableRewards
from optimizer.serving import CatalogCache, ModelSource, ServedVersion

log = logging.getLogger("campopt.learner")

ServingLookup = Callable[[str], ServedVersion | None]
"""The version the service approved for serving a policy, with its training cut-off."""


@dataclass
class Lineage:
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


class Lineages:
    """Every policy's lineage; callers hold the learner's lock and pass its read position."""

    def __init__(
        self,
        rewards: LearnableRewards,
        catalog: CatalogCache,
        *,
        source: ModelSource | None = None,
        serving: ServingLookup | None = None,
    ) -> None:
        self.rewards = rewards
        self.catalog = catalog
        self.source = source
        self.serving = serving
        self.by_name: dict[str, Lineage] = {}

    def get(self, name: str, lines: ActionLines, *, read_position: int) -> Lineage | None:
        """The policy's lineage; a policy seen for the first time starts from the version that
        serves (or untrained) and catches up from that version's cut-off."""
        lineage = self.by_name.get(name)
        if lineage is not None:
            return lineage
        snapshot, _ = self.catalog.current()
        frame = next((f for f in snapshot.frames if f.key == name), None)
        if frame is None:
            return None
        served = self.serving(name) if self.serving is not None else None
        if served is not None and self.source is not None:
            return self.take_over(name, served, lines, read_position=read_position)
        lineage = Lineage(BanditPolicy(frame.spec.policy_spec(), name=name), None, cursor=0)
        self.by_name[name] = lineage
        self.catch_up(lineage, lines, read_position=read_position)
        return lineage

    def take_over(
        self, name: str, served: ServedVersion, lines: ActionLines, *, read_position: int
    ) -> Lineage:
        """Continue from `served` (a promotion, a rollback, an earlier publication): load it and
        replay the policy's rewards after its cut-off up to the read position."""
        if self.source is None:
            raise RuntimeError("taking a version over needs a model source")
        stored = self.source.load(name, served.version)
        policy = BanditPolicy.from_stored(stored, version=served.version)
        lineage = Lineage(policy, served.version, cursor=served.cursor)
        replayed = self.catch_up(lineage, lines, read_position=read_position)
        self.by_name[name] = lineage
        log.info(
            "policy %s: following version %s (cut-off %d, %d rewards replayed)",
            name,
            served.version,
            served.cursor,
            replayed,
        )
        return lineage

    def follow(self, lines: ActionLines, *, read_position: int) -> list[str]:
        """Take over every version the serving record names that this learner did not publish
        (a promotion, a rollback); the names of the policies that switched."""
        if self.serving is None or self.source is None:
            return []
        switched = []
        for name, lineage in list(self.by_name.items()):
            try:
                served = self.serving(name)
                if served is None or served.version == lineage.base_version:
                    continue
                self.take_over(name, served, lines, read_position=read_position)
            except Exception:
                log.exception("cannot follow the serving version of %s", name)
                continue
            switched.append(name)
        return switched

    def catch_up(
        self, lineage: Lineage, lines: ActionLines, *, read_position: int, batch: int = 5_000
    ) -> int:
        """Learn the policy's rewards after the lineage's cursor up to the read position."""
        replayed = 0
        while lineage.cursor < read_position:
            events = self.rewards.final_rewards_after(
                cursor=lineage.cursor,
                limit=batch,
                policy_name=lineage.policy.name,
                through=read_position,
            )
            for event in events:
                replayed += learn(lineage, event, lines)
            if len(events) < batch:
                lineage.cursor = read_position
        return replayed


def learn(lineage: Lineage, event: LearnableReward, lines: ActionLines) -> int:
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
        [lines[a] for a in ids.tolist()],
        chosen=int(chosen[0]),
        reward=event.reward,
        probability=event.probability,
    )
    lineage.learned_since_checkpoint += 1
    return 1
