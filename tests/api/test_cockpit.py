"""The cockpit's pages through the app: sign-in and its scope, CSRF, the approvals inbox, the
audit log, the decision lookup, and every number on the overview recomputed from the database."""

from __future__ import annotations

import math
import re
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient
from scipy.optimize import brentq
from scipy.stats import norm
from sqlalchemy import Engine, text

from api.auth import create_key
from tests.api.cockpit_data import FRAME, add_draft, csrf_of, seed_decisions, sign_in


@pytest.fixture
def browser_client(client: TestClient) -> TestClient:
    """The app's client without the API key header: the cockpit signs in with its form."""
    del client.headers["Authorization"]
    return client


def test_pages_need_a_sign_in_and_a_key_with_the_read_scope(
    browser_client: TestClient, loaded_engine: Engine
) -> None:
    page = browser_client.get("/ui/overview", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/ui/login")
    decide_only = create_key(loaded_engine, name="crm", scopes=["decide"], actor="t")[1]
    refused = sign_in(browser_client, decide_only)
    assert refused.status_code == 401
    assert "read_logs" in refused.text
    assert sign_in(browser_client, "co_nonsense").status_code == 401
    reader = create_key(loaded_engine, name="viewer", scopes=["read_logs"], actor="t")[1]
    signed = sign_in(browser_client, reader)
    assert (signed.status_code, signed.headers["location"]) == (303, "/ui/overview")
    assert reader not in (signed.headers.get("set-cookie") or "")
    assert browser_client.get("/ui/overview").status_code == 200


def test_a_login_without_the_form_token_is_refused(browser_client: TestClient) -> None:
    response = browser_client.post("/ui/login", data={"api_key": "x", "csrf": "forged"})
    assert response.status_code == 400


def test_approving_a_draft_needs_the_approve_scope_and_a_csrf_token(
    browser_client: TestClient, loaded_engine: Engine
) -> None:
    version = add_draft(loaded_engine)
    reader = create_key(loaded_engine, name="viewer", scopes=["read_logs"], actor="t")[1]
    sign_in(browser_client, reader)
    inbox = browser_client.get("/ui/approvals")
    assert f'data-draft="{FRAME}:{version}"' in inbox.text
    assert "holdout_share" in inbox.text
    url = f"/ui/frames/{FRAME}/versions/{version}/approve"

    refused = browser_client.post(url, data={"csrf": csrf_of(inbox.text), "reason": "x"})

    assert refused.status_code == 403
    assert "approve" in refused.text
    manager = create_key(loaded_engine, name="manager", scopes=["read_logs", "approve"], actor="t")
    sign_in(browser_client, manager[1])
    inbox = browser_client.get("/ui/approvals")
    forged = browser_client.post(url, data={"csrf": "forged", "reason": "x"})
    assert forged.status_code == 400
    approved = browser_client.post(
        url, data={"csrf": csrf_of(inbox.text), "reason": "bigger holdout"}, follow_redirects=True
    )
    assert approved.status_code == 200
    assert f"frame {FRAME} v{version} approved" in approved.text
    audit = browser_client.get("/ui/audit", params={"action": "frame.approve"})
    assert "manager" in audit.text
    assert "bigger holdout" in audit.text
    again = browser_client.post(url, data={"csrf": csrf_of(inbox.text)}, follow_redirects=True)
    assert "only a draft can be approved" in again.text


def test_rejecting_a_draft_retires_it_and_keeps_the_reason(
    browser_client: TestClient, loaded_engine: Engine, admin_key: str
) -> None:
    version = add_draft(loaded_engine)
    sign_in(browser_client, admin_key)
    inbox = browser_client.get("/ui/approvals")

    browser_client.post(
        f"/ui/frames/{FRAME}/versions/{version}/reject",
        data={"csrf": csrf_of(inbox.text), "reason": "holdout too large"},
    )

    history = browser_client.get(f"/ui/frames/{FRAME}/history").text
    assert re.search(rf"<td>{version}</td><td>retired</td>", history)
    assert "holdout too large" in history
    assert "No frame version is waiting" in browser_client.get("/ui/approvals").text


def test_decision_lookup_explains_the_decision_and_what_followed(
    browser_client: TestClient, loaded_engine: Engine, admin_key: str
) -> None:
    answers = seed_decisions(loaded_engine)
    contact = next(a for a in answers if a.action is not None)
    sign_in(browser_client, admin_key)

    page = browser_client.get("/ui/decisions", params={"id": str(contact.decision_id)})

    assert page.status_code == 200
    assert f"{FRAME} v" in page.text
    assert 'class="chosen"' in page.text
    assert "sent" in page.text
    assert "reward pending" in page.text
    missing = browser_client.get("/ui/decisions", params={"id": str(uuid.uuid4())})
    assert missing.status_code == 404
    assert browser_client.get("/ui/decisions", params={"id": "nonsense"}).status_code == 404


def test_audit_filters_by_action_subject_actor_and_date(
    browser_client: TestClient, admin_key: str
) -> None:
    sign_in(browser_client, admin_key)
    everything = browser_client.get("/ui/audit").text
    assert 'data-action="catalog.load"' in everything
    assert "no entry matches" in browser_client.get("/ui/audit", params={"action": "zzz"}).text
    assert "no entry matches" in browser_client.get("/ui/audit", params={"actor": "nobody"}).text
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    assert "no entry matches" in browser_client.get("/ui/audit", params={"since": tomorrow}).text
    bad = browser_client.get("/ui/audit", params={"since": "soon"})
    assert (bad.status_code, "is not a date" in bad.text) == (200, True)


class Metrics(HTMLParser):
    """Every `data-metric` with its `data-value`, keyed by frame, day and guardrail."""

    def __init__(self) -> None:
        super().__init__()
        self.frame = ""
        self.day = ""
        self.guardrail = ""
        self.found: dict[tuple[str, str, str, str], str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "data-frame" in a:
            self.frame, self.day, self.guardrail = a["data-frame"] or "", "", ""
        if "data-day" in a:
            self.day = a["data-day"] or ""
        if "data-guardrail" in a:
            self.guardrail = a["data-guardrail"] or ""
        if "data-metric" in a:
            daily = a["data-metric"] in ("decisions", "contacts", "conversions")
            place = self.day if daily else ""
            guardrail = self.guardrail if a["data-metric"].startswith("guardrail") else ""
            self.found[(self.frame, place, guardrail, a["data-metric"] or "")] = (
                a.get("data-value") or ""
            )


def _number(value: str) -> float | None:
    return None if value in ("None", "") else float(value)


def _agree(shown: float | None, expected: float | None) -> bool:
    """Equal up to the order of a float sum (the database adds in its own order)."""
    if shown is None or expected is None:
        return shown is expected
    return math.isclose(shown, expected, rel_tol=1e-9, abs_tol=1e-12)


def _wilson(successes: int, n: int) -> tuple[float, float]:
    """Wilson's bounds as the roots of (p_hat - p)^2 = z^2 p (1 - p) / n, found numerically."""
    z = norm.ppf(0.975)
    p_hat = successes / n

    def gap(p: float) -> float:
        return (p_hat - p) ** 2 - z * z * p * (1 - p) / n

    tiny = 1e-12  # p̂ itself is no root unless it is 0 or 1: step off it
    low = 0.0 if successes == 0 else brentq(gap, 0.0, min(p_hat, 1 - tiny))
    high = 1.0 if successes == n else brentq(gap, max(p_hat, tiny), 1.0)
    return low, high


def test_every_number_on_the_overview_agrees_with_the_database(
    browser_client: TestClient, loaded_engine: Engine, admin_key: str
) -> None:
    seed_decisions(loaded_engine)
    sign_in(browser_client, admin_key)
    page = browser_client.get("/ui/overview").text
    now = datetime.now(UTC)
    parser = Metrics()
    parser.feed(page)
    shown = parser.found

    with loaded_engine.connect() as connection:
        rows = connection.execute(
            text(
                "select d.frame_key, d.created_at, d.reason, r.decision_id is not null, "
                "coalesce(r.conversions, 0), coalesce(r.unsubscribed, false), "
                "coalesce(r.complained, false), o.cost "
                "from decision_log d left join reward r on r.decision_id = d.id "
                "left join action a on a.id = d.chosen_action_id "
                "left join offer o on o.key = a.offer_key"
            )
        ).all()
        frames = connection.execute(
            text(
                "select key, version, guardrails, max_offer_cost from decision_frame "
                "where status = 'active'"
            )
        ).all()
    checked = 0
    assert shown[("", "", "", "window_days")] == "7"
    for key, version, guardrails, max_offer_cost in frames:
        guardrails = (
            guardrails if isinstance(guardrails, dict) else __import__("json").loads(guardrails)
        )
        mine = [r for r in rows if r[0] == key]

        def at(value: Any) -> datetime:
            moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

        days = Counter(at(r[1]).date() for r in mine)
        contacts_by_day = Counter(at(r[1]).date() for r in mine if r[2] == "policy")
        converted_by_day = Counter(at(r[1]).date() for r in mine if r[2] == "policy" and r[4] > 0)
        for back in range(7):
            day = now.date() - timedelta(days=back)
            iso = day.isoformat()
            assert shown[(key, iso, "", "decisions")] == str(days[day])
            assert shown[(key, iso, "", "contacts")] == str(contacts_by_day[day])
            assert shown[(key, iso, "", "conversions")] == str(converted_by_day[day])
            checked += 3
        window = [r for r in mine if now - timedelta(days=7) <= at(r[1]) < now]
        contacts = [r for r in window if r[2] == "policy" and r[3]]
        holdout = [r for r in window if r[2] == "holdout" and r[3]]
        x1, n1 = sum(r[4] > 0 for r in contacts), len(contacts)
        x0, n0 = sum(r[4] > 0 for r in holdout), len(holdout)
        expected: dict[str, float | None] = {
            "uplift.contacts": n1,
            "uplift.contact_conversions": x1,
            "uplift.holdout": n0,
            "uplift.holdout_conversions": x0,
            "uplift.contact_rate": x1 / n1 if n1 else None,
            "uplift.holdout_rate": x0 / n0 if n0 else None,
        }
        if n1 and n0:
            p1, p0 = x1 / n1, x0 / n0
            (l1, u1), (l0, u0) = _wilson(x1, n1), _wilson(x0, n0)
            expected["uplift.difference"] = p1 - p0
            expected["uplift.low"] = p1 - p0 - math.hypot(p1 - l1, u0 - p0)
            expected["uplift.high"] = p1 - p0 + math.hypot(u1 - p1, p0 - l0)
        else:
            expected.update({"uplift.difference": None, "uplift.low": None, "uplift.high": None})
        served = [r for r in window if r[2] in ("policy", "policy_no_contact")]
        cost = sum(r[7] or 0.0 for r in served)
        expected |= {
            "spend.decisions": len(served),
            "spend.offer_cost": cost,
            "spend.per_decision": cost / len(served) if served else None,
            "spend.limit": guardrails["max_offer_cost_per_decision"],
        }
        for metric, value in expected.items():
            assert _agree(_number(shown[(key, "", "", metric)]), value), (key, metric)
            checked += 1
        rate = {
            "unsubscribe rate": (sum(bool(r[5]) for r in contacts), "max_unsubscribe_rate"),
            "complaint rate": (sum(bool(r[6]) for r in contacts), "max_complaint_rate"),
        }
        for name, (count, limit) in rate.items():
            value = _number(shown[(key, "", name, "guardrail.value")])
            assert _agree(value, count / n1 if n1 else None), (key, name)
            assert _number(shown[(key, "", name, "guardrail.threshold")]) == guardrails[limit]
            checked += 2
        floor = "conversion rate (floor: previous champion)"
        conversion = _number(shown[(key, "", floor, "guardrail.value")])
        assert _agree(conversion, x1 / n1 if n1 else None)
        per_decision = _number(shown[(key, "", "offer cost per decision", "guardrail.value")])
        assert _agree(per_decision, expected["spend.per_decision"])
        cost_limit = _number(shown[(key, "", "offer cost per decision", "guardrail.threshold")])
        assert cost_limit == guardrails["max_offer_cost_per_decision"]
        assert _number(shown[(key, "", floor, "guardrail.threshold")]) is None  # no promotion
        assert _number(shown[(key, "", "", "spend.max_offer_cost")]) == max_offer_cost
        week = [now.date() - timedelta(days=back) for back in range(7)]
        peak = max(1, *(c[d] for c in (days, contacts_by_day, converted_by_day) for d in week))
        assert shown[(key, "", "", "chart.peak")] == str(peak)
        checked += 4
        assert shown[(key, "", "", "active_version")] == ""  # an element without a value
        checked += 2
        for metric in ("uplift.contact_rate", "uplift.holdout_rate"):
            value = _number(shown[(key, "", "", metric)])
            assert value is None or 0.0 <= value <= 1.0
        low, high = (_number(shown[(key, "", "", m)]) for m in ("uplift.low", "uplift.high"))
        assert low is None or -1.0 <= low <= high <= 1.0  # type: ignore[operator]
        assert f'data-frame="{key}"' in page
        assert f'Active frame version: <b data-metric="active_version">{version}</b>' in page
    assert checked > 60
    assert _number(shown[(FRAME, "", "", "uplift.contacts")])  # the seeded frame has contacts


def test_approvals_command_lists_waiting_frame_versions_with_their_changes(
    loaded_engine: Engine, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from api.cli import app
    from tests.conftest import engine_url

    monkeypatch.setenv("CAMPOPT_DATA_DIR", str(tmp_path))
    url = engine_url(loaded_engine)
    runner = CliRunner()
    nothing = runner.invoke(app, ["approvals", "--no-policies", "--database-url", url])
    assert nothing.exit_code == 0, nothing.output
    assert "No frame version is waiting" in nothing.output
    version = add_draft(loaded_engine)

    listed = runner.invoke(app, ["approvals", "--no-policies", "--database-url", url])

    assert listed.exit_code == 0, listed.output
    assert FRAME in listed.output
    assert str(version) in listed.output
    assert "holdout_share" in listed.output
    assert "0.05 → 0.08" in listed.output
