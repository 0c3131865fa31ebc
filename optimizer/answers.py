"""The answer document of a decision: what the HTTP answer, the outbox and the decision log's
`response` column hold, so that a repeated request id gets exactly the answer it got before.

It is built once, when the decision is made, from the catalog of that moment; personalisation
fills placeholders into a copy at the edge and is never stored.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from optimizer.core.catalog import CatalogSnapshot
from optimizer.core.decision import Contact
from optimizer.core.values import DecisionReason


class OfferAnswer(BaseModel):
    key: str
    name: str
    kind: str
    cost: float
    value: float
    currency: str


class TextAnswer(BaseModel):
    key: str
    language: str
    tone: str
    subject: str | None
    body: str
    image_url: str | None


class SendTimeAnswer(BaseModel):
    key: str
    name: str
    send_at: datetime = Field(description="when to send, in the customer's time zone")


class ActionAnswer(BaseModel):
    action_id: int
    offer: OfferAnswer
    text: TextAnswer
    channel: str
    send_time: SendTimeAnswer


class PolicyRef(BaseModel):
    name: str
    version: str


class FrameRef(BaseModel):
    key: str
    version: int


class DecisionAnswer(BaseModel):
    """The answer: a combination to send with its probability, or no contact and why."""

    decision_id: uuid.UUID
    request_id: str
    customer_id: str
    trigger: str
    decided_at: datetime
    contact: bool
    reason: DecisionReason
    action: ActionAnswer | None = None
    probability: float | None = Field(
        default=None, description="probability the policy chose this candidate with"
    )
    candidates: int = 0
    policy: PolicyRef | None = None
    frame: FrameRef | None = None
    excluded: dict[str, str] = Field(
        default_factory=dict, description="for no_contact: the rule that excluded each block"
    )


def action_answer(snapshot: CatalogSnapshot, contact: Contact, *, time_zone: str) -> ActionAnswer:
    """The blocks of a contact as the channel system needs them, texts unrendered."""
    offer = snapshot.offers[contact.offer]
    text = snapshot.texts[contact.text]
    slot = snapshot.send_times[contact.send_time]
    return ActionAnswer(
        action_id=contact.action_id,
        offer=OfferAnswer(
            key=offer.key,
            name=offer.name,
            kind=offer.kind.value,
            cost=offer.cost,
            value=offer.value,
            currency=offer.currency,
        ),
        text=TextAnswer(
            key=text.key,
            language=text.language,
            tone=text.tone,
            subject=text.subject,
            body=text.body,
            image_url=text.image_url,
        ),
        channel=contact.channel,
        send_time=SendTimeAnswer(
            key=slot.key, name=slot.name, send_at=contact.send_at.astimezone(ZoneInfo(time_zone))
        ),
    )
