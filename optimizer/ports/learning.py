"""The learning aggregate: final rewards in sequence order, the learner's checkpoints, and the
serving record (which version each policy serves, and up to which reward it has learned)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import numpy as np

from optimizer.core.policy_spec import PolicySpec
from optimizer.ports.audit import AuditEntry, JsonValue

ANY_VERSION: Literal["any"] = "any"
"""`record_serving(only_replacing=ANY_VERSION)`: replace whatever serves."""


@dataclass(frozen=True)
class LearnableReward:
    """A final reward of a policy decision, with what the learner needs to learn it."""

    sequence: int
    policy_name: str
    context: Mapping[str, JsonValue]
    action_ids: np.ndarray[Any, Any]
    chosen_action_id: int
    probability: float
    reward: float


@dataclass(frozen=True)
class Checkpoint:
    """A model with the reward sequence it has learned up to (`cursor`), saved by the learner.

    `base_version`: the version the model extends; `published_version`: the version it serves
    as, once published (None while it is not).
    """

    policy_name: str
    cursor: int
    examples_learned: int
    base_version: str | None
    published_version: str | None
    spec: PolicySpec
    model: bytes
    created_at: datetime
    id: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ServingRecord:
    """The version a policy serves as the service approved it, and its training cut-off.

    `alias_synced` is false between recording a version and moving the registry's alias;
    `tampered_alias` names where someone else moved the alias (serving ignores it).
    """

    policy_name: str
    version: str
    cursor: int
    source: str
    alias_synced: bool
    tampered_alias: str | None
    updated_at: datetime
    updated_by: str


class LearnableRewards(Protocol):
    def final_rewards_after(
        self,
        *,
        cursor: int,
        limit: int,
        policy_name: str | None = None,
        through: int | None = None,
    ) -> list[LearnableReward]:
        """Final rewards of policy decisions after `cursor` (up to `through`, of one policy if
        named), in sequence order."""
        ...


class Checkpoints(Protocol):
    def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> list[Checkpoint]:
        """Save all of them in one transaction; returns them with their ids."""
        ...

    def newest_checkpoints(self) -> list[Checkpoint]:
        """The newest checkpoint of every policy."""
        ...

    def newest_checkpoint(
        self, policy_name: str, *, cursor: int | None = None
    ) -> Checkpoint | None:
        """The policy's newest checkpoint (at exactly `cursor`, if given)."""
        ...

    def mark_published(self, checkpoint_id: int, *, version: str) -> None: ...


class ServingRecords(Protocol):
    def serving(self, policy_name: str) -> ServingRecord | None: ...

    def serving_records(self) -> list[ServingRecord]:
        """Every policy's record, by policy name."""
        ...

    def record_serving(
        self,
        *,
        policy_name: str,
        version: str,
        cursor: int,
        source: str,
        actor: str,
        now: datetime,
        only_replacing: str | Literal["any"] | None = ANY_VERSION,
    ) -> bool:
        """Make `version` the one `policy_name` serves; returns whether it did.

        By default it replaces whatever serves (a promotion, a rollback). With `only_replacing`
        a version (or None: no record yet) it is a compare-and-set: the record changes only
        while it still names that version, so the learner's publication never overwrites a
        promotion that happened meanwhile. A new record starts with its alias unsynced.
        """
        ...

    def mark_alias(
        self,
        *,
        policy_name: str,
        version: str,
        tampered_alias: str | None,
        audit: AuditEntry | None = None,
    ) -> None:
        """After looking at the registry's alias: synced with `version` (None), or pointing
        elsewhere. Changes the record only while it names `version`; `audit` is written in the
        same transaction."""
        ...


class LearningStore(LearnableRewards, Checkpoints, ServingRecords, Protocol):
    """The whole aggregate, as one database (or one memory store) holds it."""
