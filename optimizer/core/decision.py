"""A decision as a value: a contact to send, or no contact and why; and what it is made from.

`Decision = Contact | NoContact` replaces candidates whose empty fields meant "no contact": a
contact always has its offer, text, channel, send slot and send time, a no-contact always has
its reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from optimizer.core.values import DecisionReason

AttributeValue = str | int | float | bool | None


@dataclass(frozen=True)
class CustomerState:
    """The customer as eligibility and featurisation see them on the decision's day."""

    id: str
    health_class: str
    usage_index: float
    tenure_days: float | None
    time_zone: str
    language: str
    attributes: Mapping[str, Any]
    consented_channels: frozenset[str]


@dataclass(frozen=True)
class PastContact:
    """One contact that counts against the contact policy."""

    frame_key: str
    channel: str
    send_at: datetime


@dataclass(frozen=True)
class CustomerProfile:
    """The stored customer a decision reads."""

    id: str
    health_class: str
    usage_index: float
    customer_since: date | None
    time_zone: str
    language: str
    attributes: Mapping[str, Any]

    def state(self, consents: frozenset[str], today: date) -> CustomerState:
        tenure = (today - self.customer_since).days if self.customer_since else None
        return CustomerState(
            id=self.id,
            health_class=self.health_class,
            usage_index=self.usage_index,
            tenure_days=float(tenure) if tenure is not None else None,
            time_zone=self.time_zone,
            language=self.language,
            attributes=self.attributes,
            consented_channels=consents,
        )


@dataclass(frozen=True)
class CustomerRecord:
    """Everything a decision reads about its customer; if it changed, the decision is made
    again."""

    profile: CustomerProfile
    consents: frozenset[str]
    history: tuple[PastContact, ...]

    def with_contact(self, contact: PastContact) -> CustomerRecord:
        return CustomerRecord(self.profile, self.consents, (*self.history, contact))


@dataclass(frozen=True)
class DecisionAsk:
    """What a channel system (or an in-process job) asks: what should this customer get now?

    `now` None means the decider's clock.
    """

    request_id: str
    customer_id: str
    trigger: str
    channels: Sequence[str]
    context: Mapping[str, AttributeValue] = field(default_factory=dict)
    now: datetime | None = None


@dataclass(frozen=True)
class Contact:
    """The combination to send, when, and the probability the policy chose it with."""

    action_id: int
    offer: str
    text: str
    channel: str
    send_time: str
    send_at: datetime
    probability: float


@dataclass(frozen=True)
class NoContact:
    """No contact, and why; `action_id` and `probability` where the no-contact action was
    chosen (by the policy, or by the holdout)."""

    reason: DecisionReason
    action_id: int | None = None
    probability: float | None = None
    excluded: Mapping[str, str] = field(default_factory=dict)


Decision = Contact | NoContact
