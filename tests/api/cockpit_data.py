"""A live-looking database for the cockpit: a few days of churn-prevention decisions with
deliveries, conversions (more among contacts than in the holdout), an unsubscribe, and a draft
frame version waiting for approval."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from campaign_db.engine import session_scope
from campaign_db.feedback import SqlFeedbackStore
from campaign_db.models import DecisionFrame
from optimizer.answers import DecisionAnswer
from optimizer.core.values import utcnow
from optimizer.feedback import ConversionReport, EventReport, record_conversion, record_event
from tests.optimizer.helpers import serve_churn_decisions

FRAME = "churn_prevention"


def _share(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def _touched(answer: DecisionAnswer) -> datetime:
    """When a decision can first earn a conversion: its send time, or its time (holdout)."""
    return answer.action.send_time.send_at if answer.action else answer.decided_at


def seed_decisions(engine: Engine, *, now: datetime | None = None) -> list[DecisionAnswer]:
    """About 40 decisions on each of the five days before `now`, then what followed them."""
    now = (now or utcnow()) - timedelta(minutes=1)
    answers: list[DecisionAnswer] = []
    for back in range(5, 0, -1):
        start = (now - timedelta(days=back)).replace(hour=6, minute=0, second=0, microsecond=0)
        answers += serve_churn_decisions(
            engine, customers_n=30 + 4 * back, start=start, prefix=f"day{back}-"
        )
    feedback = SqlFeedbackStore(engine)
    for i, answer in enumerate(answers):
        contacted = answer.action is not None
        if contacted:
            record_event(
                feedback,
                decision_id=answer.decision_id,
                event=EventReport(kind="sent", occurred_at=answer.decided_at + timedelta(hours=1)),
            )
        if contacted and i % 37 == 5:
            record_event(
                feedback,
                decision_id=answer.decision_id,
                event=EventReport(
                    kind="unsubscribed", occurred_at=answer.decided_at + timedelta(hours=2)
                ),
            )
        converts = _share(answer.customer_id) < (0.35 if contacted else 0.15)
        if converts:
            record_conversion(
                feedback,
                conversion=ConversionReport(
                    conversion_id=f"conv-{answer.customer_id}",
                    customer_id=answer.customer_id,
                    kind="subscription",
                    occurred_at=min(_touched(answer) + timedelta(hours=3), now),
                    value=9.99,
                ),
            )
    return answers


def add_draft(engine: Engine, *, frame: str = FRAME, holdout_share: float = 0.08) -> int:
    """The active version of `frame` with a larger holdout, as the next draft."""
    with session_scope(engine, write=True) as session:
        active = session.exec(
            select(DecisionFrame).where(
                DecisionFrame.key == frame, DecisionFrame.status == "active"
            )
        ).one()
        draft = DecisionFrame(
            **active.model_dump(
                exclude={"id", "status", "approved_by", "approved_at", "created_at"}
            ),
        )
        draft.version = active.version + 1
        draft.status = "draft"
        draft.content_hash = uuid.uuid4().hex
        draft.holdout_share = holdout_share
        draft.spec = {**active.spec, "holdout_share": holdout_share}
        session.add(draft)
        return draft.version


def sign_in(client: TestClient, key: str) -> Any:
    page = client.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    return client.post(
        "/ui/login",
        data={"api_key": key, "csrf": token.group(1), "next": "/ui/overview"},
        follow_redirects=False,
    )


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)
