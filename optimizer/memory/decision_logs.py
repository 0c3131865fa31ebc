"""The decision log in memory: what tests log and reward here reads back as the database does."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from optimizer.ports.decision_logs import (
    POLICY_REASONS,
    EvaluationRow,
    EvaluationRows,
    LogFilters,
    LoggedContact,
    LoggedDecision,
)


@dataclass(frozen=True)
class _Reward:
    status: str
    value: float | None
    unsubscribed: bool
    complained: bool
    sequence: int | None


class MemoryDecisionLogs:
    def __init__(self) -> None:
        self._decisions: dict[uuid.UUID, LoggedDecision] = {}
        self._rewards: dict[uuid.UUID, _Reward] = {}
        self._ranges: dict[tuple[str, int], tuple[float, float]] = {}
        self._contacts: list[LoggedContact] = []
        self._lock = threading.Lock()

    # --- filling it, as deciding, feedback and the catalog would ------------------------------

    def log(self, decision: LoggedDecision) -> None:
        with self._lock:
            self._decisions[decision.id] = decision

    def reward(
        self,
        decision_id: uuid.UUID,
        *,
        value: float | None,
        status: str = "final",
        unsubscribed: bool = False,
        complained: bool = False,
        sequence: int | None = None,
    ) -> None:
        with self._lock:
            self._rewards[decision_id] = _Reward(status, value, unsubscribed, complained, sequence)

    def declare_reward_range(self, frame_key: str, version: int, low: float, high: float) -> None:
        with self._lock:
            self._ranges[(frame_key, version)] = (low, high)

    def add_contact(self, contact: LoggedContact) -> None:
        with self._lock:
            self._contacts.append(contact)

    # --- the port ------------------------------------------------------------------------------

    def evaluation_rows(self, filters: LogFilters) -> EvaluationRows:
        with self._lock:
            decisions = sorted(self._decisions.values(), key=lambda d: (d.created_at, d.id))
            rows = [
                row
                for d in decisions
                if _matches(d, filters)
                and (row := _evaluation_row(d, self._rewards.get(d.id))) is not None
            ]
            keys = {r.frame_key for r in rows}
            ranges = [r for (key, _), r in self._ranges.items() if key in keys]
        return EvaluationRows(rows=rows, reward_ranges=ranges)

    def decisions_by_id(self, ids: Sequence[uuid.UUID]) -> list[LoggedDecision]:
        with self._lock:
            return [self._decisions[i] for i in ids if i in self._decisions]

    def contacts(self) -> list[LoggedContact]:
        with self._lock:
            return list(self._contacts)


def _matches(decision: LoggedDecision, filters: LogFilters) -> bool:
    return (
        (filters.since is None or decision.created_at >= filters.since)
        and (filters.until is None or decision.created_at < filters.until)
        and (filters.frame_key is None or decision.frame_key == filters.frame_key)
        and (filters.policy_version is None or decision.policy_version == filters.policy_version)
    )


def _evaluation_row(decision: LoggedDecision, reward: _Reward | None) -> EvaluationRow | None:
    """The row evaluation reads, or None for what says nothing about a policy."""
    if reward is None or reward.status != "final" or decision.reason not in POLICY_REASONS:
        return None
    if (
        decision.frame_key is None
        or decision.candidate_action_ids is None
        or decision.probabilities is None
        or decision.chosen_action_id is None
        or decision.probability is None
        or reward.value is None
    ):
        raise ValueError(f"decision {decision.id}: a policy decision lacks its candidates")
    return EvaluationRow(
        decision_id=decision.id,
        created_at=decision.created_at,
        frame_key=decision.frame_key,
        trigger_key=decision.trigger_key,
        policy_version=decision.policy_version,
        context=decision.context,
        candidate_action_ids=decision.candidate_action_ids,
        probabilities=decision.probabilities,
        chosen_action_id=decision.chosen_action_id,
        probability=decision.probability,
        reward=reward.value,
        unsubscribed=reward.unsubscribed,
        complained=reward.complained,
        reward_sequence=reward.sequence,
    )
