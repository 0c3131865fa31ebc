"""The learning aggregate in memory: final rewards, checkpoints and the serving record."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Literal

from optimizer.memory.audit import MemoryAuditLog
from optimizer.ports.audit import AuditEntry, AuditLog
from optimizer.ports.learning import (
    ANY_VERSION,
    Checkpoint,
    LearnableReward,
    ServingRecord,
)


class MemoryLearningStore:
    """Behaves as `campaign_db.learning.SqlLearningStore` does; `add_final_reward` stands in for
    the reward finalisation that fills the SQL tables."""

    def __init__(self, audit: AuditLog | None = None) -> None:
        self.audit: AuditLog = audit if audit is not None else MemoryAuditLog()
        self._rewards: list[LearnableReward] = []
        self._checkpoints: list[Checkpoint] = []
        self._serving: dict[str, ServingRecord] = {}
        self._lock = threading.Lock()

    def add_final_reward(self, reward: LearnableReward) -> LearnableReward:
        """Append a final reward; its sequence is the next one, whatever `reward` says."""
        with self._lock:
            sequence = self._rewards[-1].sequence + 1 if self._rewards else 1
            self._rewards.append(replace(reward, sequence=sequence))
            return self._rewards[-1]

    def final_rewards_after(
        self,
        *,
        cursor: int,
        limit: int,
        policy_name: str | None = None,
        through: int | None = None,
    ) -> list[LearnableReward]:
        with self._lock:
            found = [
                r
                for r in self._rewards
                if r.sequence > cursor
                and (policy_name is None or r.policy_name == policy_name)
                and (through is None or r.sequence <= through)
            ]
        return found[:limit]

    def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> list[Checkpoint]:
        with self._lock:
            saved = [
                replace(c, id=len(self._checkpoints) + i + 1) for i, c in enumerate(checkpoints)
            ]
            self._checkpoints.extend(saved)
        return saved

    def newest_checkpoints(self) -> list[Checkpoint]:
        with self._lock:
            newest = {c.policy_name: c for c in self._checkpoints}
        return list(newest.values())

    def newest_checkpoint(
        self, policy_name: str, *, cursor: int | None = None
    ) -> Checkpoint | None:
        with self._lock:
            return next(
                (
                    c
                    for c in reversed(self._checkpoints)
                    if c.policy_name == policy_name and (cursor is None or c.cursor == cursor)
                ),
                None,
            )

    def mark_published(self, checkpoint_id: int, *, version: str) -> None:
        with self._lock:
            index = checkpoint_id - 1
            if 0 <= index < len(self._checkpoints):
                self._checkpoints[index] = replace(
                    self._checkpoints[index], published_version=version
                )

    def serving(self, policy_name: str) -> ServingRecord | None:
        with self._lock:
            return self._serving.get(policy_name)

    def serving_records(self) -> list[ServingRecord]:
        with self._lock:
            return [self._serving[name] for name in sorted(self._serving)]

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
        with self._lock:
            current = self._serving.get(policy_name)
            if (
                only_replacing != ANY_VERSION
                and (None if current is None else current.version) != only_replacing
            ):
                return False
            self._serving[policy_name] = ServingRecord(
                policy_name=policy_name,
                version=version,
                cursor=cursor,
                source=source,
                alias_synced=False,
                tampered_alias=None if current is None else current.tampered_alias,
                updated_at=now,
                updated_by=actor,
            )
            return True

    def mark_alias(
        self,
        *,
        policy_name: str,
        version: str,
        tampered_alias: str | None,
        audit: AuditEntry | None = None,
    ) -> None:
        with self._lock:
            current = self._serving.get(policy_name)
            if current is not None and current.version == version:
                self._serving[policy_name] = replace(
                    current, alias_synced=tampered_alias is None, tampered_alias=tampered_alias
                )
            if audit is not None:
                self.audit.add(audit)
