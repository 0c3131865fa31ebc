"""The store of decisions: customers with their contact history, and the decision log.

The writer reads a batch of customers without locks to plan, then writes the batch in one
transaction that re-reads them under lock; whatever changed meanwhile is planned again inside
that transaction (`BatchPlanner`), so a contact is reserved only against the history it was
checked on.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple, Protocol

import numpy as np

from optimizer.core.decision import CustomerRecord
from optimizer.core.values import DecisionReason
from optimizer.ports.audit import JsonValue

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


class BudgetPeriod(NamedTuple):
    """One budget counter: a frame's budget in the period that starts on `start` (a local date
    in the frame's time zone)."""

    frame_key: str
    budget_key: str
    start: date


class BudgetCharge(NamedTuple):
    """What a decision spends of one budget counter, and the budget's limit it must stay within."""

    period: BudgetPeriod
    amount: float
    limit: float


@dataclass(frozen=True)
class LogEntry:
    """One decision log record as the decision made it; `response` is the answer's JSON."""

    id: uuid.UUID
    request_id: str
    created_at: datetime
    customer_id: str
    trigger: str
    catalog_revision: int | None
    reason: DecisionReason
    context: Mapping[str, JsonValue]
    eligibility_trace: Mapping[str, str]
    response: str
    request_digest: Mapping[str, str]
    candidate_action_ids: Sequence[int] | None = None
    frame_key: str | None = None
    frame_version: int | None = None
    policy_name: str | None = None
    policy_version: str | None = None
    probabilities: FloatArray | None = None
    chosen_action_id: int | None = None
    probability: float | None = None
    seed: int = 0
    send_at: datetime | None = None
    budget_prices: Mapping[str, float] | None = None
    """The pacing price of each of the frame's budgets that the distribution was priced with."""


@dataclass(frozen=True)
class ReservedContact:
    """The contact a decision reserves in the customer's contact history."""

    id: uuid.UUID
    customer_id: str
    decision_id: uuid.UUID | None
    frame_key: str
    channel: str
    send_at: datetime
    created_at: datetime


@dataclass(frozen=True)
class PendingReward:
    """The reward a decision waits for; `sent` where there is nothing to send."""

    decision_id: uuid.UUID
    window_closes_at: datetime
    sent: bool


@dataclass(frozen=True)
class DecisionWrite:
    """What one decision writes, all or nothing with its batch."""

    entry: LogEntry
    contact: ReservedContact | None = None
    reward: PendingReward | None = None
    charges: tuple[BudgetCharge, ...] = ()
    """What the contact spends of the frame's budgets; reserved with it or not at all."""


@dataclass(frozen=True)
class StoredRequest:
    """What a reused request id is checked against; `digest` is None for decisions logged
    before digests were."""

    customer_id: str
    answer: Mapping[str, JsonValue]
    digest: Mapping[str, str] | None


@dataclass(frozen=True)
class LoggedCandidate:
    action_id: int
    signature: str
    probability: float | None


@dataclass(frozen=True)
class LoggedDecision:
    """A logged decision read back: its answer document and what explains it."""

    answer: Mapping[str, JsonValue]
    context: Mapping[str, JsonValue]
    candidates: tuple[LoggedCandidate, ...]
    chosen_action_id: int | None
    seed: int
    catalog_revision: int | None
    eligibility_trace: Mapping[str, str]


BatchPlanner = Callable[
    [Mapping[str, CustomerRecord], Mapping[str, str], Mapping[BudgetPeriod, float]],
    Sequence[DecisionWrite],
]
"""Given the locked customers, the request ids already logged (→ customer id) and the spend of
the locked budget counters, what to write."""


@dataclass(frozen=True)
class BatchKeys:
    """Which customers and request ids a batch writes, and how far back their history counts."""

    customer_ids: Sequence[str]
    request_ids: Sequence[str]
    since: datetime
    budgets: Sequence[BudgetPeriod] = ()
    """The budget counters the batch may spend: locked (created at 0 if new) before planning."""


BatchTaker = Callable[[], BatchKeys]
"""Called once the transaction holds the write lock: the batch it writes. Asked then rather
than before, a batch takes in what was planned while it waited for the lock."""


class DecisionStore(Protocol):
    def read_customers(
        self, customer_ids: Sequence[str], since: datetime
    ) -> dict[str, CustomerRecord]:
        """Profile, granted consents and countable contacts sent since `since`, per customer
        (unknown ids are left out), without locks."""
        ...

    def logged_requests(self, request_ids: Iterable[str]) -> dict[str, str]:
        """request id → customer id, for those of `request_ids` already decided."""
        ...

    def stored_request(self, request_id: str) -> StoredRequest | None: ...

    def read_budgets(self, periods: Iterable[BudgetPeriod]) -> dict[BudgetPeriod, float]:
        """The spend of each counter (0 for one never spent), without locks."""
        ...

    def write_batch(self, *, take: BatchTaker, plan: BatchPlanner) -> None:
        """In one transaction: take the write lock, ask `take` for the batch, lock and read its
        customers and budget counters, find its logged request ids, let `plan` say what to
        write, write it all, add each write's budget charges and commit. A request id logged
        twice, or a charge that would take a counter past its limit, fails the whole batch."""
        ...

    def logged_decision(self, decision_id: uuid.UUID) -> LoggedDecision | None: ...
