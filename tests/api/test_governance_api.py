"""The governance routes over the stores: frames and their versions, approving a draft,
resuming a frame after the kill switch, and the audit log."""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from campaign_db.engine import session_scope
from campaign_db.governance import SqlGovernanceStore
from campaign_db.models import DecisionFrame
from optimizer.core.values import utcnow
from optimizer.ports.governance import SAFE, FrameState

FRAME = "churn_prevention"


def _add_draft(client: Any) -> int:
    """A copy of the active version as the next draft."""
    with session_scope(client.app.state.services.engine, write=True) as session:
        active = session.exec(select(DecisionFrame).where(DecisionFrame.key == FRAME)).one()
        draft = DecisionFrame(
            **active.model_dump(exclude={"id", "status", "approved_by", "approved_at"}),
        )
        draft.version = active.version + 1
        draft.status = "draft"
        draft.content_hash = "draft"
        session.add(draft)
        return draft.version


def test_frames_list_every_version_and_the_mode(client: Any) -> None:
    frames = {f["key"]: f for f in client.get("/v1/frames").json()}
    assert FRAME in frames
    assert frames[FRAME]["mode"] == "normal"
    assert [v["status"] for v in frames[FRAME]["versions"]] == ["active"]


def test_approving_a_draft_activates_it_and_an_unknown_one_is_not_found(client: Any) -> None:
    version = _add_draft(client)

    response = client.post(f"/v1/frames/{FRAME}/versions/{version}/approve", json={})

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "active"
    assert response.json()["approved_by"] == "tests"
    (frame,) = [f for f in client.get("/v1/frames").json() if f["key"] == FRAME]
    assert [v["status"] for v in frame["versions"]] == ["retired", "active"]
    again = client.post(f"/v1/frames/{FRAME}/versions/{version}/approve", json={})
    assert again.status_code == 409
    missing = client.post(f"/v1/frames/{FRAME}/versions/99/approve", json={})
    assert missing.status_code == 404
    query = {"action": "frame.approve", "subject": f"{FRAME} v{version}"}
    (entry,) = client.get("/v1/audit", params=query).json()
    assert (entry["actor"], entry["details"]["via"]) == ("tests", "api")
    assert entry["id"] > 0


def test_resume_leaves_safe_mode_and_is_audited(client: Any) -> None:
    store = SqlGovernanceStore(client.app.state.services.engine)
    store.set_state(
        FrameState(FRAME, mode=SAFE, reason="tripped", changed_at=utcnow(), changed_by="monitor")
    )
    assert client.get(f"/v1/frames/{FRAME}/status").json()["mode"] == SAFE

    response = client.post(f"/v1/frames/{FRAME}/resume", json={"reason": "cause fixed"})

    assert response.status_code == 200, response.text
    assert (response.json()["mode"], response.json()["mode_reason"]) == ("normal", "cause fixed")
    (entry,) = client.get("/v1/audit", params={"action": "frame.resume"}).json()
    assert client.get("/v1/audit", params={"action": "frame.resume", "actor": "test"}).json()
    assert not client.get("/v1/audit", params={"action": "frame.resume", "actor": "ops"}).json()
    assert (entry["actor"], entry["subject"], entry["details"]) == (
        "tests",
        FRAME,
        {"reason": "cause fixed"},
    )
    assert client.post("/v1/frames/nothing/resume", json={}).status_code == 404
    assert client.get("/v1/frames/nothing/status").status_code == 404


def test_rejecting_a_draft_retires_it_with_the_reason_and_only_drafts_can_be_rejected(
    client: Any,
) -> None:
    version = _add_draft(client)
    url = f"/v1/frames/{FRAME}/versions/{version}/reject"

    response = client.post(url, json={"reason": "too wide"})

    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["approved_by"]) == ("retired", None)
    (entry,) = client.get("/v1/audit", params={"action": "frame.reject"}).json()
    assert (entry["subject"], entry["details"]["reason"]) == (f"{FRAME} v{version}", "too wide")
    assert client.post(url, json={}).status_code == 409
    assert client.post(f"/v1/frames/{FRAME}/versions/99/reject", json={}).status_code == 404
