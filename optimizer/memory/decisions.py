"""The store of decisions in memory: customers, their contact history and the decision log."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from optimizer.core.decision import CustomerProfile, CustomerRecord, PastContact
from optimizer.ports.decisions import (
    BatchPlanner,
    BatchTaker,
    BudgetPeriod,
    LogEntry,
    LoggedCandidate,
    LoggedDecision,
    PendingReward,
    ReservedContact,
    StoredRequest,
)


class MemoryDecisionStore:
    """`actions` names each action id's signature, as the catalog interned them."""

    def __init__(self, actions: Mapping[int, str] | None = None) -> None:
        self.actions = dict(actions or {})
        self.profiles: dict[str, CustomerProfile] = {}
        self.consents: dict[str, frozenset[str]] = {}
        self.contacts: list[ReservedContact] = []
        self.entries: dict[str, LogEntry] = {}
        self.rewards: list[PendingReward] = []
        self.budgets: dict[BudgetPeriod, float] = {}
        self._lock = threading.Lock()

    def add_customer(self, profile: CustomerProfile, consents: Iterable[str] = ()) -> None:
        with self._lock:
            self.profiles[profile.id] = profile
            self.consents[profile.id] = frozenset(consents)

    def add_contact(self, contact: ReservedContact) -> None:
        with self._lock:
            self.contacts.append(contact)

    def read_customers(
        self, customer_ids: Sequence[str], since: datetime
    ) -> dict[str, CustomerRecord]:
        with self._lock:
            return self._read(customer_ids, since)

    def logged_requests(self, request_ids: Iterable[str]) -> dict[str, str]:
        with self._lock:
            return {r: self.entries[r].customer_id for r in set(request_ids) if r in self.entries}

    def stored_request(self, request_id: str) -> StoredRequest | None:
        with self._lock:
            entry = self.entries.get(request_id)
        if entry is None:
            return None
        return StoredRequest(
            customer_id=entry.customer_id,
            answer=json.loads(entry.response),
            digest=dict(entry.request_digest),
        )

    def read_budgets(self, periods: Iterable[BudgetPeriod]) -> dict[BudgetPeriod, float]:
        with self._lock:
            return {p: self.budgets.get(p, 0.0) for p in periods}

    def write_batch(self, *, take: BatchTaker, plan: BatchPlanner) -> None:
        with self._lock:
            keys = take()
            states = self._read(keys.customer_ids, keys.since)
            logged = {r: self.entries[r].customer_id for r in keys.request_ids if r in self.entries}
            spent = {p: self.budgets.get(p, 0.0) for p in keys.budgets}
            writes = list(plan(states, logged, spent))
            new = [w.entry.request_id for w in writes]
            if len(set(new)) != len(new) or any(r in self.entries for r in new):
                raise ValueError("request_id: already logged")
            after = dict(self.budgets)
            for charge in (c for w in writes for c in w.charges):
                after[charge.period] = after.get(charge.period, 0.0) + charge.amount
                if after[charge.period] > charge.limit + 1e-9:
                    raise ValueError(f"budgets: {charge.period.budget_key} would pass its limit")
            self.budgets = after
            for write in writes:
                self.entries[write.entry.request_id] = write.entry
                if write.contact is not None:
                    self.contacts.append(write.contact)
                if write.reward is not None:
                    self.rewards.append(write.reward)

    def logged_decision(self, decision_id: uuid.UUID) -> LoggedDecision | None:
        with self._lock:
            entry = next((e for e in self.entries.values() if e.id == decision_id), None)
        if entry is None:
            return None
        ids = list(entry.candidate_action_ids or [])
        probabilities = entry.probabilities
        return LoggedDecision(
            answer=json.loads(entry.response),
            context=entry.context,
            candidates=tuple(
                LoggedCandidate(
                    action_id=action_id,
                    signature=self.actions.get(action_id, "?"),
                    probability=float(probabilities[i]) if probabilities is not None else None,
                )
                for i, action_id in enumerate(ids)
            ),
            chosen_action_id=entry.chosen_action_id,
            seed=entry.seed,
            catalog_revision=entry.catalog_revision,
            eligibility_trace=entry.eligibility_trace,
        )

    def _read(self, customer_ids: Sequence[str], since: datetime) -> dict[str, CustomerRecord]:
        out: dict[str, CustomerRecord] = {}
        for customer_id in sorted(set(customer_ids)):
            profile = self.profiles.get(customer_id)
            if profile is None:
                continue
            history = sorted(
                (c for c in self.contacts if c.customer_id == customer_id and c.send_at >= since),
                key=lambda c: (c.send_at, c.id),
            )
            out[customer_id] = CustomerRecord(
                profile=profile,
                consents=self.consents.get(customer_id, frozenset()),
                history=tuple(PastContact(c.frame_key, c.channel, c.send_at) for c in history),
            )
        return out
