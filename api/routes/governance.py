"""Frames, policies and the audit log: the governance API."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api.auth import ApproveKey, Principal, ReadKey
from api.container import Container
from api.deps import ServicesDep
from api.errors import ERROR_RESPONSES
from optimizer.budgets import budget_status, frame_periods
from optimizer.core.catalog import KEY_PATTERN, FrameVersion
from optimizer.core.values import NulFreeStr, Timestamp, utcnow
from optimizer.errors import ConflictError, NotFoundError
from optimizer.guardrails import NORMAL, GuardrailMonitor
from optimizer.lifecycle import PolicyLifecycle, parse_version_id
from optimizer.policy import BanditPolicy
from optimizer.ports.audit import AuditLog
from optimizer.ports.governance import GovernanceStore
from optimizer.publishing import serving_states

router = APIRouter(tags=["governance"])
FrameKey = Annotated[str, Path(pattern=KEY_PATTERN)]
VersionId = Annotated[
    str,
    Path(
        pattern=rf"{KEY_PATTERN.removesuffix('$')}:[0-9]{{1,9}}$",
        description="`<policy>:<version>`, e.g. churn_prevention:3",
    ),
]


def governance_store(services: ServicesDep) -> GovernanceStore:
    """The frames' store over the service's database; routes never open a session."""
    return services.governance


def audit_log(services: ServicesDep) -> AuditLog:
    return services.audit


GovernanceDep = Annotated[GovernanceStore, Depends(governance_store)]
AuditDep = Annotated[AuditLog, Depends(audit_log)]


def guardrail_monitor(frames: GovernanceDep, audit: AuditDep) -> GuardrailMonitor:
    return GuardrailMonitor(frames, audit)


GuardrailsDep = Annotated[GuardrailMonitor, Depends(guardrail_monitor)]


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: NulFreeStr = Field(default="", max_length=2000)


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: Annotated[str, Field(pattern=KEY_PATTERN)]
    to_version: Annotated[str, Field(pattern=r"^\d{1,9}$")] | None = None
    reason: NulFreeStr = Field(default="", max_length=2000)


class FrameVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    status: str
    approved_by: str | None
    approved_at: datetime | None
    created_at: datetime


class FrameOut(BaseModel):
    key: str
    name: str
    mode: str
    versions: list[FrameVersionOut]


class SpendOut(BaseModel):
    """Offer cost of the frame's policy decisions (contact or not) in the guardrail window."""

    window_days: float
    decisions: int
    offer_cost: float
    offer_cost_per_decision: float | None
    max_offer_cost_per_decision: float


class BudgetOut(BaseModel):
    """A budget in its current period (in the frame's time zone): spend against the limit and
    the linear plan, and the pacing price decisions pay now (0 at or behind plan)."""

    key: str
    measure: str
    scope: str
    period: str
    period_start: date
    period_end: date
    limit: float
    spent: float
    planned: float
    price: float


class FrameStatusOut(BaseModel):
    key: str
    active_version: int | None
    mode: str
    mode_reason: str
    mode_since: datetime | None
    health: dict[str, Any] | None
    spend: SpendOut | None = None
    budgets: list[BudgetOut] = Field(default_factory=list)
    champion: str | None = Field(description="The policy version the service serves.")
    champion_alias_tampered: str | None = Field(
        default=None,
        description="Set when MLflow's `champion` alias was moved outside the service: the "
        "version it points to, which does not serve.",
    )
    drift: dict[str, Any] | None = Field(
        default=None,
        description="The serving policy's drift test: `drifting` while it found a change in "
        "what customers do and has not caught up (it explores up to the frame's max_epsilon "
        "meanwhile), the reward count it was found at, and how many alarms it raised.",
    )


class PolicyActionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    policy: str
    version: str
    replaced: str | None
    action: str


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any] | None


@router.get("/v1/frames", response_model=list[FrameOut], responses=ERROR_RESPONSES)
def list_frames(_key: ReadKey, frames: GovernanceDep) -> list[FrameOut]:
    """Every frame with its versions and lifecycle status."""
    states = frames.states()
    out: dict[str, FrameOut] = {}
    for info in frames.versions():
        frame = out.setdefault(
            info.key,
            FrameOut(
                key=info.key,
                name=info.name,
                mode=states[info.key].mode if info.key in states else NORMAL,
                versions=[],
            ),
        )
        frame.name = info.name
        frame.versions.append(FrameVersionOut.model_validate(info))
    return list(out.values())


@router.get("/v1/frames/{key}/status", response_model=FrameStatusOut, responses=ERROR_RESPONSES)
def frame_status(
    _key: ReadKey,
    key: FrameKey,
    services: ServicesDep,
    frames: GovernanceDep,
    guardrails: GuardrailsDep,
) -> FrameStatusOut:
    """Mode (normal, or safe after a kill switch), live guardrail metrics, offer cost per
    decision against the frame's limit, and the champion."""
    services.catalog.refresh()
    snapshot, _ = services.catalog.current()
    if not frames.versions(key=key):
        raise NotFoundError("key", f"no frame {key!r}")
    state = frames.states().get(key)
    frame = next((f for f in snapshot.frames if f.key == key), None)
    health = None
    spend = None
    if frame is not None:
        measured = guardrails.health(
            frame,
            now=utcnow(),
            window=timedelta(days=services.settings.guardrail_window_days),
            mode=state.mode if state else NORMAL,
        )
        health = measured.to_dict()
        spend = SpendOut(
            window_days=measured.window_days,
            decisions=measured.decisions,
            offer_cost=measured.offer_cost,
            offer_cost_per_decision=measured.offer_cost_per_decision,
            max_offer_cost_per_decision=frame.spec.guardrails.max_offer_cost_per_decision,
        )
    budgets = _budgets(services, frame)
    serving = serving_states(services.learning).get(key) if services.source is not None else None
    return FrameStatusOut(
        key=key,
        active_version=frame.version if frame else None,
        mode=state.mode if state else NORMAL,
        mode_reason=state.reason if state else "",
        mode_since=state.changed_at if state else None,
        health=health,
        spend=spend,
        budgets=budgets,
        champion=serving.version if serving else None,
        champion_alias_tampered=serving.tampered_alias if serving else None,
        drift=drift_of(services.policies.policy_for(frame)) if frame is not None else None,
    )


def drift_of(policy: BanditPolicy) -> dict[str, Any] | None:
    report = policy.tuning_report()
    return None if report is None else dict(report["drift"])


def _budgets(services: Container, frame: FrameVersion | None) -> list[BudgetOut]:
    if frame is None or not frame.spec.budgets:
        return []
    now = utcnow()
    spent = services.decisions.store.read_budgets(p for _, p in frame_periods(frame, now))
    return [BudgetOut(**vars(b)) for b in budget_status(frame, now, spent)]


@router.post(
    "/v1/frames/{key}/versions/{version}/approve",
    response_model=FrameVersionOut,
    responses=ERROR_RESPONSES,
)
def approve_frame_version(
    principal: ApproveKey,
    key: FrameKey,
    version: int,
    body: Reason,
    services: ServicesDep,
    frames: GovernanceDep,
) -> FrameVersionOut:
    """Approve a draft frame version: it becomes active, the version it replaces retires."""
    try:
        approved = frames.approve(
            key=key, version=version, approver=principal.name, now=utcnow(), reason=body.reason
        )
    except LookupError as exc:
        raise NotFoundError("version", str(exc)) from None
    except ValueError as exc:
        raise ConflictError("version", str(exc)) from None
    services.catalog.refresh(force=True)
    return FrameVersionOut.model_validate(approved)


@router.post(
    "/v1/frames/{key}/versions/{version}/reject",
    response_model=FrameVersionOut,
    responses=ERROR_RESPONSES,
)
def reject_frame_version(
    principal: ApproveKey, key: FrameKey, version: int, body: Reason, frames: GovernanceDep
) -> FrameVersionOut:
    """Turn a draft frame version down: it retires without serving; the reason is audited."""
    try:
        rejected = frames.reject(
            key=key, version=version, actor=principal.name, now=utcnow(), reason=body.reason
        )
    except LookupError as exc:
        raise NotFoundError("version", str(exc)) from None
    except ValueError as exc:
        raise ConflictError("version", str(exc)) from None
    return FrameVersionOut.model_validate(rejected)


@router.post("/v1/frames/{key}/resume", response_model=FrameStatusOut, responses=ERROR_RESPONSES)
def resume_frame(
    principal: ApproveKey,
    key: FrameKey,
    body: Reason,
    services: ServicesDep,
    frames: GovernanceDep,
    guardrails: GuardrailsDep,
) -> FrameStatusOut:
    """Leave safe mode after a kill switch (the cause should be understood first)."""
    if not frames.versions(key=key):
        raise NotFoundError("key", f"no frame {key!r}")
    guardrails.resume(key, actor=principal.name, reason=body.reason)
    services.catalog.refresh(force=True)
    return frame_status(principal, key, services, frames, guardrails)


def _lifecycle(services: ServicesDep) -> PolicyLifecycle:
    lifecycle = services.lifecycle()
    if lifecycle is None:
        raise ConflictError("registry", "the model registry is disabled on this server")
    return lifecycle


def _judge_policy(
    verdict: Literal["approve", "reject"],
    principal: Principal,
    version_id: str,
    body: Reason,
    services: ServicesDep,
) -> PolicyActionOut:
    name, version = parse_version_id(version_id)
    lifecycle = _lifecycle(services)
    judge = lifecycle.approve if verdict == "approve" else lifecycle.reject
    result = judge(name, version, actor=principal.name, reason=body.reason)
    return PolicyActionOut.model_validate(result)


@router.post(
    "/v1/policies/{version_id}/approve", response_model=PolicyActionOut, responses=ERROR_RESPONSES
)
def approve_policy(
    principal: ApproveKey, version_id: VersionId, body: Reason, services: ServicesDep
) -> PolicyActionOut:
    """Approve a candidate that leaves its frame (`<policy>:<version>`); it becomes champion."""
    return _judge_policy("approve", principal, version_id, body, services)


@router.post(
    "/v1/policies/{version_id}/reject", response_model=PolicyActionOut, responses=ERROR_RESPONSES
)
def reject_policy(
    principal: ApproveKey, version_id: VersionId, body: Reason, services: ServicesDep
) -> PolicyActionOut:
    return _judge_policy("reject", principal, version_id, body, services)


@router.post("/v1/policies/rollback", response_model=PolicyActionOut, responses=ERROR_RESPONSES)
def rollback_policy(
    principal: ApproveKey, body: RollbackRequest, services: ServicesDep
) -> PolicyActionOut:
    """Champion goes back to `to_version`, or to the version the last promotion replaced."""
    result = _lifecycle(services).rollback(
        body.policy, actor=principal.name, reason=body.reason, to_version=body.to_version
    )
    return PolicyActionOut.model_validate(result)


@router.get("/v1/audit", response_model=list[AuditOut], responses=ERROR_RESPONSES)
def read_audit(
    _key: ReadKey,
    audit: AuditDep,
    action: Annotated[
        NulFreeStr | None, Query(max_length=64, description="prefix, e.g. policy.")
    ] = None,
    subject: Annotated[NulFreeStr | None, Query(max_length=200, description="prefix")] = None,
    actor: Annotated[
        NulFreeStr | None, Query(max_length=200, description="prefix, e.g. learner")
    ] = None,
    since: Annotated[Timestamp | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    """Who did what, when and why, newest first."""
    entries = audit.entries(action=action, subject=subject, actor=actor, since=since, limit=limit)
    return [AuditOut.model_validate(replace(e, id=e.id or 0)) for e in entries]
