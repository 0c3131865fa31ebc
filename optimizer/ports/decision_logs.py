"""Reading the decision log back in bulk: evaluation, exports, the simulator and the demo.

Decisions are append-only, so a reader never needs a transaction with anything else; each
method is one consistent read.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import numpy as np

from optimizer.ports.audit import JsonValue

POLICY_REASONS = ("policy", "policy_no_contact")
"""Decisions a policy made: the only ones that say anything about a policy (holdout and
no-candidate decisions do not)."""


@dataclass(frozen=True)
class LogFilters:
    """Which decisions to read: `since` inclusive, `until` exclusive; None means any."""

    since: datetime | None = None
    until: datetime | None = None
    frame_key: str | None = None
    policy_version: str | None = None


@dataclass(frozen=True)
class LoggedDecision:
    """One decision as it was logged, whatever its reason."""

    id: uuid.UUID
    created_at: datetime
    customer_id: str
    trigger_key: str
    frame_key: str | None
    reason: str
    context: Mapping[str, JsonValue]
    candidate_action_ids: np.ndarray[Any, Any] | None
    probabilities: np.ndarray[Any, Any] | None
    chosen_action_id: int | None
    probability: float | None
    send_at: datetime | None
    policy_version: str | None


@dataclass(frozen=True)
class EvaluationRow:
    """A policy decision with a final reward, as offline evaluation reads it."""

    decision_id: uuid.UUID
    created_at: datetime
    frame_key: str
    trigger_key: str
    policy_version: str | None
    context: Mapping[str, JsonValue]
    candidate_action_ids: np.ndarray[Any, Any]
    probabilities: np.ndarray[Any, Any]
    chosen_action_id: int
    probability: float
    reward: float
    unsubscribed: bool
    complained: bool
    reward_sequence: int | None = None


@dataclass(frozen=True)
class EvaluationRows:
    """The rows, oldest first, and the reward ranges every version of their frames declares
    (a frame without one declares none)."""

    rows: Sequence[EvaluationRow]
    reward_ranges: Sequence[tuple[float, float]] = ()


class LoggedContact(NamedTuple):
    """A planned or sent contact of a customer."""

    customer_id: str
    frame_key: str
    channel_key: str
    send_at: datetime
    reserved_at: datetime
    status: str


class DecisionLogReader(Protocol):
    def evaluation_rows(self, filters: LogFilters) -> EvaluationRows:
        """Policy decisions with final rewards, oldest first (by time, then id); pending and
        void rewards are left out."""
        ...

    def decisions_by_id(self, ids: Sequence[uuid.UUID]) -> list[LoggedDecision]:
        """The decisions with these ids, in the order asked (unknown ids are skipped)."""
        ...

    def contacts(self) -> list[LoggedContact]:
        """Every contact of every customer."""
        ...
