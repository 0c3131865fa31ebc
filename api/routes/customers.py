"""Customer profiles and consents."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from api.auth import AdminKey, FeedbackKey, ReadKey
from api.deps import ServicesDep
from api.errors import ERROR_RESPONSES
from optimizer import customers
from optimizer.core.catalog import (
    KEY_PATTERN,
    check_language,
    check_time_zone,
    languages,
    time_zones,
)
from optimizer.core.values import CalendarDate, HealthClass, JsonFloat, refuse_nul
from optimizer.customers import ConsentPublic, ConsentUpdate, ErasureResult
from optimizer.ports.customers import CustomerStore, Profile, StoredCustomer

router = APIRouter(prefix="/v1/customers", tags=["customers"])

CustomerIdPath = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$", description="pseudonymous id")
]
ChannelPath = Annotated[str, Path(pattern=KEY_PATTERN)]


def customer_store(services: ServicesDep) -> CustomerStore:
    return services.customers


CustomerStoreDep = Annotated[CustomerStore, Depends(customer_store)]


# The HTTP shapes of a profile, checked and answered here.


def _enum(values: Iterable[str]) -> dict[str, Any]:
    """The schema lists what the validators accept."""
    return {"enum": list(values)}


class CustomerBase(BaseModel):
    health_class: str = "B"
    usage_index: float = 0.5
    customer_since: date | None = None
    time_zone: str = Field(default="Europe/Berlin", max_length=64)
    language: str = Field(default="de", max_length=8)
    attributes: dict[str, Any] | None = None


class CustomerUpsert(CustomerBase):
    """A profile as a CRM sends it: validated before it reaches the table. Unknown fields are
    refused, so a misspelt field is an error rather than a silently kept default."""

    model_config = ConfigDict(extra="forbid")

    # the schema lists what the validators accept
    health_class: str = Field(default="B", json_schema_extra=_enum(c.value for c in HealthClass))
    usage_index: JsonFloat = Field(default=0.5, ge=0.0, le=1.0)
    customer_since: CalendarDate | None = None
    time_zone: str = Field(
        default="Europe/Berlin",
        max_length=64,
        json_schema_extra=_enum(sorted(time_zones())),
    )
    language: str = Field(default="de", max_length=8, json_schema_extra=_enum(languages()))
    attributes: (
        dict[Annotated[str, StringConstraints(max_length=64)], str | int | float | bool | None]
        | None
    ) = Field(default=None, json_schema_extra={"maxProperties": 64})

    @field_validator("health_class")
    @classmethod
    def _health_class(cls, value: str) -> str:
        return HealthClass(value).value

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        return check_time_zone(value)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        return check_language(value)

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if len(value) > 64:
            raise ValueError("at most 64 attributes")
        for key, item in value.items():
            if len(key) > 64:
                raise ValueError(f"attribute name {key[:20]!r}… is longer than 64 characters")
            if not isinstance(item, str | int | float | bool) and item is not None:
                raise ValueError(f"attribute {key!r} must be a string, number or boolean")
        return refuse_nul(value)


class CustomerPublic(CustomerBase):
    id: str
    created_at: datetime
    updated_at: datetime
    consents: dict[str, bool] = {}

    @classmethod
    def of(cls, customer: StoredCustomer) -> CustomerPublic:
        return cls(
            id=customer.customer_id,
            created_at=customer.created_at,
            updated_at=customer.updated_at,
            consents=dict(customer.consents),
            **asdict(customer.profile),
        )


@router.put(
    "/{customer_id}",
    response_model=CustomerPublic,
    responses={201: {"model": CustomerPublic, "description": "created"}, **ERROR_RESPONSES},
)
def put_customer(
    _key: FeedbackKey,
    customer_id: CustomerIdPath,
    profile: CustomerUpsert,
    store: CustomerStoreDep,
    response: Response,
) -> CustomerPublic:
    """Create or replace a customer's profile (201 when created)."""
    stored, created = customers.upsert_customer(
        store, customer_id=customer_id, data=Profile(**profile.model_dump())
    )
    response.status_code = 201 if created else 200
    return CustomerPublic.of(stored)


@router.delete("/{customer_id}", response_model=ErasureResult, responses=ERROR_RESPONSES)
def delete_customer(
    principal: AdminKey, customer_id: CustomerIdPath, store: CustomerStoreDep, services: ServicesDep
) -> ErasureResult:
    """Erase a customer (GDPR): the profile, consents and contact history go; decision logs
    stay as statistics under a pseudonym. Audited."""
    return customers.erase_customer(
        store,
        customer_id=customer_id,
        salt=services.settings.pseudonym_salt,
        actor=principal.name,
    )


@router.get("/{customer_id}", response_model=CustomerPublic, responses=ERROR_RESPONSES)
def get_customer(
    _key: ReadKey, customer_id: CustomerIdPath, store: CustomerStoreDep
) -> CustomerPublic:
    return CustomerPublic.of(customers.get_customer(store, customer_id=customer_id))


@router.put(
    "/{customer_id}/consents/{channel}", response_model=ConsentPublic, responses=ERROR_RESPONSES
)
def put_consent(
    _key: FeedbackKey,
    customer_id: CustomerIdPath,
    channel: ChannelPath,
    update: ConsentUpdate,
    store: CustomerStoreDep,
) -> ConsentPublic:
    """Grant or revoke consent for one channel; it holds for the very next decision."""
    return customers.set_consent(store, customer_id=customer_id, channel=channel, update=update)
