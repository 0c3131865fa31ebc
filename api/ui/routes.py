"""The cockpit's pages: sign in, overview, approvals, policy history, decision lookup, audit.

Pages render whatever they can: a domain error becomes a message on the page, a missing
sign-in a redirect to it, a missing scope a 403 page. Every form posts a CSRF token and is
answered with a redirect (post/redirect/get), so a reload never repeats an approval.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.auth import Principal
from api.container import Container
from api.ui import session as ui_session
from api.ui.charts import daily_chart, uplift_chart
from optimizer.answers import DecisionAnswer
from optimizer.cockpit import Cockpit, frame_changes
from optimizer.core.values import FrameStatus, utcnow
from optimizer.errors import DomainError
from optimizer.guardrails import GuardrailMonitor
from optimizer.lifecycle import version_id

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates" / "ui")
router = APIRouter(prefix="/ui", include_in_schema=False)

Reason = Annotated[str, Form(max_length=2000)]
Csrf = Annotated[str, Form(max_length=200)]


def _pct(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f} %"


def _points(value: float | None, digits: int = 2) -> str:
    """A difference of rates, in percentage points."""
    return "—" if value is None else f"{value * 100:+.{digits}f} pp"


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _when(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


TEMPLATES.env.filters.update(pct=_pct, points=_points, num=_num, when=_when)


def _services(request: Request) -> Container:
    services: Container = request.app.state.services
    return services


def _page(
    request: Request,
    template: str,
    principal: Principal | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "user": principal,
            "csrf": ui_session.csrf_token(request.session),
            "flash": ui_session.take_flash(request.session),
            **context,
        },
        status_code=status_code,
    )


def _to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/ui/login?next={request.url.path}", status_code=303)


def _back(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


@router.get("", response_class=HTMLResponse)
def home() -> RedirectResponse:
    return _back("/ui/overview")


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/ui/overview") -> Response:
    return _page(request, "login.html", None, next=_safe_next(next))


def _safe_next(target: str) -> str:
    """Only a cockpit path: never an open redirect to another site."""
    return target if target.startswith("/ui/") and "//" not in target else "/ui/overview"


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    api_key: Annotated[str, Form(max_length=200)] = "",
    csrf: Csrf = "",
    next: Annotated[str, Form(max_length=200)] = "/ui/overview",
) -> Response:
    if not ui_session.csrf_valid(request.session, csrf):
        return _page(
            request,
            "login.html",
            None,
            400,
            next=_safe_next(next),
            error="the form expired; please sign in again",
        )
    result = ui_session.sign_in(request.session, _services(request).keys, api_key)
    if isinstance(result, str):
        return _page(request, "login.html", None, 401, next=_safe_next(next), error=result)
    ui_session.flash(request.session, f"signed in as {result.name}")
    return _back(_safe_next(next))


@router.post("/logout")
def logout(request: Request, csrf: Csrf = "") -> Response:
    if ui_session.csrf_valid(request.session, csrf):
        request.session.clear()
    return _back("/ui/login")


@router.get("/overview", response_class=HTMLResponse)
def overview(request: Request, days: Annotated[int, Query(ge=1, le=90)] = 7) -> Response:
    principal = ui_session.signed_in(request)
    if principal is None:
        return _to_login(request)
    services = _services(request)
    services.catalog.refresh()
    snapshot, _ = services.catalog.current()
    cockpit = Cockpit(
        services.governance, services.cockpit, GuardrailMonitor(services.governance, services.audit)
    )
    now = utcnow()
    frames = cockpit.overviews(
        active={f.key: f for f in snapshot.frames},
        serving={r.policy_name: r for r in services.learning.serving_records()},
        now=now,
        window=timedelta(days=days),
    )
    charts = {f.key: (daily_chart(f.days), uplift_chart(f.uplift)) for f in frames}
    return _page(
        request, "overview.html", principal, frames=frames, charts=charts, days=days, now=now
    )


def _waiting_policies(services: Container, names: list[str]) -> tuple[list[Any], str | None]:
    lifecycle = services.lifecycle()
    if lifecycle is None:
        return [], "the model registry is disabled on this server: no policy can wait"
    try:
        return list(lifecycle.waiting(names)), None
    except DomainError as exc:
        return [], exc.message


@router.get("/approvals", response_class=HTMLResponse)
def approvals(request: Request) -> Response:
    principal = ui_session.signed_in(request)
    if principal is None:
        return _to_login(request)
    services = _services(request)
    frames = services.governance
    versions = frames.versions()
    drafts = []
    for draft in (v for v in versions if v.status == FrameStatus.draft):
        serving = next(
            (v for v in versions if v.key == draft.key and v.status == FrameStatus.active), None
        )
        spec = frames.spec(key=draft.key, version=draft.version)
        old = frames.spec(key=draft.key, version=serving.version) if serving else None
        changes = frame_changes(old, spec) if spec is not None else []
        drafts.append((draft, serving, changes))
    policies, registry_note = _waiting_policies(services, sorted({v.key for v in versions}))
    return _page(
        request,
        "approvals.html",
        principal,
        drafts=drafts,
        policies=policies,
        registry_note=registry_note,
        can_approve=principal.allows("approve"),
    )


def _judging(request: Request, csrf: str) -> Principal | Response:
    """The principal allowed to approve or reject, or the page that says why not."""
    principal = ui_session.signed_in(request)
    if principal is None:
        return _to_login(request)
    if not ui_session.csrf_valid(request.session, csrf):
        return _page(
            request,
            "error.html",
            principal,
            400,
            message="the form expired (CSRF token mismatch); reload the page",
        )
    if not principal.allows("approve"):
        return _page(
            request,
            "error.html",
            principal,
            403,
            message="your key lacks the 'approve' scope: you can look, not approve",
        )
    return principal


@router.post("/frames/{key}/versions/{version}/{verdict}")
def judge_frame(
    request: Request,
    key: str,
    version: int,
    verdict: Literal["approve", "reject"],
    reason: Reason = "",
    csrf: Csrf = "",
) -> Response:
    principal = _judging(request, csrf)
    if isinstance(principal, Response):
        return principal
    services = _services(request)
    try:
        if verdict == "approve":
            services.governance.approve(
                key=key,
                version=version,
                approver=principal.name,
                now=utcnow(),
                reason=reason,
                via="cockpit",
            )
        else:
            services.governance.reject(
                key=key,
                version=version,
                actor=principal.name,
                now=utcnow(),
                reason=reason,
                via="cockpit",
            )
    except (LookupError, ValueError) as exc:
        ui_session.flash(request.session, str(exc), "error")
        return _back("/ui/approvals")
    services.catalog.refresh(force=True)
    done = "approved" if verdict == "approve" else "rejected"
    ui_session.flash(request.session, f"frame {key} v{version} {done}")
    return _back("/ui/approvals")


@router.post("/policies/{name}/{version}/{verdict}")
def judge_policy(
    request: Request,
    name: str,
    version: str,
    verdict: Literal["approve", "reject"],
    reason: Reason = "",
    csrf: Csrf = "",
) -> Response:
    principal = _judging(request, csrf)
    if isinstance(principal, Response):
        return principal
    lifecycle = _services(request).lifecycle()
    if lifecycle is None:
        ui_session.flash(request.session, "the model registry is disabled", "error")
        return _back("/ui/approvals")
    judge = lifecycle.approve if verdict == "approve" else lifecycle.reject
    try:
        judge(name, version, actor=principal.name, reason=reason)
    except DomainError as exc:
        ui_session.flash(request.session, exc.message, "error")
        return _back("/ui/approvals")
    done = "approved (now serving)" if verdict == "approve" else "rejected"
    ui_session.flash(request.session, f"policy {version_id(name, version)} {done}")
    return _back("/ui/approvals")


@router.get("/frames/{key}/history", response_class=HTMLResponse)
def history(request: Request, key: str) -> Response:
    principal = ui_session.signed_in(request)
    if principal is None:
        return _to_login(request)
    services = _services(request)
    versions = services.governance.versions(key=key)
    if not versions:
        return _page(request, "error.html", principal, 404, message=f"no frame {key!r}")
    return _page(
        request,
        "history.html",
        principal,
        key=key,
        versions=versions,
        serving=services.learning.serving(key),
        policy_entries=services.audit.entries(action="policy.", subject=f"{key}:", limit=200),
        frame_entries=services.audit.entries(action="frame.", subject=key, limit=200),
    )


@router.get("/decisions", response_class=HTMLResponse)
def decision_lookup(
    request: Request,
    id: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    principal = ui_session.signed_in(request)
    if principal is None:
        return _to_login(request)
    services = _services(request)
    logged = answer = events = error = None
    if id:
        try:
            decision_id = uuid.UUID(id.strip())
            logged = services.decisions.record(decision_id)
            answer = DecisionAnswer.model_validate(logged.answer)
            events = services.cockpit.decision_events(decision_id)
        except ValueError:
            error = f"{id!r} is not a decision id (a UUID)"
        except DomainError as exc:
            error = exc.message
    return _page(
        request,
        "decision.html",
        principal,
        query=id,
        logged=logged,
        answer=answer,
        events=events,
        error=error,
        status_code=404 if error else 200,
    )


@router.get("/audit", response_class=HTMLResponse)
def audit(
    request: Request,
    action: Annotated[str, Query(max_length=64)] = "",
    subject: Annotated[str, Query(max_length=200)] = "",
    actor: Annotated[str, Query(max_length=200)] = "",
    since: Annotated[str, Query(max_length=32)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    principal = ui_session.signed_in(request)
    if principal is None:
        return _to_login(request)
    error = None
    start = None
    if since:
        try:
            start = datetime.fromisoformat(since)
            start = start if start.tzinfo else start.replace(tzinfo=UTC)
        except ValueError:
            error = f"since: {since!r} is not a date (YYYY-MM-DD)"
    entries = _services(request).audit.entries(
        action=action or None,
        subject=subject or None,
        actor=actor or None,
        since=start,
        limit=limit,
    )
    return _page(
        request,
        "audit.html",
        principal,
        entries=entries,
        error=error,
        filters={
            "action": action,
            "subject": subject,
            "actor": actor,
            "since": since,
            "limit": limit,
        },
    )
