"""HTTP bodies: what the API accepts and answers, validated at the edge and mapped to the
optimizer's typed inputs and results."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from optimizer.core.values import JsonFloat, NulFreeStr, Timestamp
from optimizer.feedback import ConversionReport, EventKind, EventReport
from optimizer.ports.feedback import ConversionStatus

# --- feedback --------------------------------------------------------------------------------

IdempotencyKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")]


class DeliveryEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: EventKind
    occurred_at: Timestamp | None = None
    event_id: IdempotencyKey | None = Field(
        default=None, description="idempotency key of the event"
    )

    def report(self) -> EventReport:
        return EventReport(kind=self.kind, occurred_at=self.occurred_at, event_id=self.event_id)


class DeliveryEventResult(BaseModel):
    decision_id: uuid.UUID
    kind: EventKind
    duplicate: bool


class ConversionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversion_id: IdempotencyKey = Field(description="idempotency key")
    customer_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")]
    type: Annotated[NulFreeStr, StringConstraints(min_length=1, max_length=64)]
    value: JsonFloat = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    occurred_at: Timestamp

    def report(self) -> ConversionReport:
        return ConversionReport(
            conversion_id=self.conversion_id,
            customer_id=self.customer_id,
            kind=self.type,
            value=self.value,
            occurred_at=self.occurred_at,
        )


class ConversionResult(BaseModel):
    conversion_id: str
    status: ConversionStatus
    decision_id: uuid.UUID | None
    duplicate: bool


class RewardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: JsonFloat = Field(allow_inf_nan=False)


class RewardResult(BaseModel):
    decision_id: uuid.UUID
    value: float
    status: str
