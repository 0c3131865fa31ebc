"""Customer profiles and consents."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from api.auth import AdminKey, FeedbackKey, ReadKey
from api.deps import ServicesDep
from api.errors import ERROR_RESPONSES
from campaign_db.models import CustomerPublic, CustomerUpsert
from optimizer import customers
from optimizer.core.catalog import KEY_PATTERN
from optimizer.customers import ConsentPublic, ConsentUpdate, ErasureResult

router = APIRouter(prefix="/v1/customers", tags=["customers"])

CustomerIdPath = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$", description="pseudonymous id")
]
ChannelPath = Annotated[str, Path(pattern=KEY_PATTERN)]


@router.put(
    "/{customer_id}",
    response_model=CustomerPublic,
    responses={201: {"model": CustomerPublic, "description": "created"}, **ERROR_RESPONSES},
)
def put_customer(
    _key: FeedbackKey,
    customer_id: CustomerIdPath,
    profile: CustomerUpsert,
    services: ServicesDep,
    response: Response,
) -> CustomerPublic:
    """Create or replace a customer's profile (201 when created)."""
    public, created = customers.upsert_customer(
        services.engine, customer_id=customer_id, data=profile
    )
    response.status_code = 201 if created else 200
    return public


@router.delete("/{customer_id}", response_model=ErasureResult, responses=ERROR_RESPONSES)
def delete_customer(
    principal: AdminKey, customer_id: CustomerIdPath, services: ServicesDep
) -> ErasureResult:
    """Erase a customer (GDPR): the profile, consents and contact history go; decision logs
    stay as statistics under a pseudonym. Audited."""
    return customers.erase_customer(
        services.engine,
        customer_id=customer_id,
        salt=services.settings.pseudonym_salt,
        actor=principal.name,
    )


@router.get("/{customer_id}", response_model=CustomerPublic, responses=ERROR_RESPONSES)
def get_customer(
    _key: ReadKey, customer_id: CustomerIdPath, services: ServicesDep
) -> CustomerPublic:
    return customers.get_customer(services.engine, customer_id=customer_id)


@router.put(
    "/{customer_id}/consents/{channel}", response_model=ConsentPublic, responses=ERROR_RESPONSES
)
def put_consent(
    _key: FeedbackKey,
    customer_id: CustomerIdPath,
    channel: ChannelPath,
    update: ConsentUpdate,
    services: ServicesDep,
) -> ConsentPublic:
    """Grant or revoke consent for one channel; it holds for the very next decision."""
    return customers.set_consent(
        services.engine, customer_id=customer_id, channel=channel, update=update
    )
