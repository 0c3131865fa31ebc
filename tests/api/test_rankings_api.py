"""The ranking API for pull channels end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func
from sqlmodel import select

from api.app import create_app
from campaign_db.engine import session_scope
from campaign_db.models import ContactHistory, RankingLog, SlotReward
from tests.api.test_decisions_api import NOW, add_customer, not_in_holdout

TRIGGER = "category_binge"  # the upsell frame, which has web_portal and app_inbox


def rank(client: TestClient, request_id: str, customer_id: str, **extra: Any) -> Any:
    body = {
        "request_id": request_id,
        "customer_id": customer_id,
        "trigger": TRIGGER,
        "channel": "web_portal",
        "slots": 3,
        "now": NOW,
        **extra,
    }
    return client.post("/v1/rankings", json=body)


def customer(client: TestClient, prefix: str = "r-") -> str:
    customer_id = not_in_holdout(prefix, frame="upsell", share=0.10)
    add_customer(client, customer_id, health_class="A")
    return customer_id


def count(engine: Engine, model: type) -> int:
    with session_scope(engine) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def test_ranking_fills_the_slots_with_distinct_offers_and_conditional_probabilities(
    client: TestClient, loaded_engine: Engine
) -> None:
    customer_id = customer(client)
    response = rank(client, "page-1", customer_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reason"] == "policy"
    slots = body["slots"]
    assert [s["slot"] for s in slots] == [1, 2, 3]
    offers = [s["offer"]["key"] for s in slots]
    assert len(set(offers)) == 3
    assert all(s["channel"] == "web_portal" for s in slots)
    # untrained: uniform among the combinations left, each slot has fewer than the one before
    for s in slots:
        assert abs(s["probability"] - 1.0 / s["candidates"]) < 1e-12
    assert slots[0]["candidates"] > slots[1]["candidates"] > slots[2]["candidates"]
    with session_scope(loaded_engine) as session:
        row = session.exec(select(RankingLog)).one()
        assert len(row.slots) == 3
        assert [s["action_id"] for s in row.slots] == [s["action_id"] for s in slots]
    assert count(loaded_engine, SlotReward) == 3
    assert count(loaded_engine, ContactHistory) == 0  # showing is not a contact


def test_page_views_are_ranked_again_and_again_without_push_caps(client: TestClient) -> None:
    customer_id = customer(client)
    for i in range(5):
        response = rank(client, f"view-{i}", customer_id)
        assert response.status_code == 200, response.text
        assert len(response.json()["slots"]) == 3


def test_a_repeated_request_id_returns_the_stored_ranking_and_logs_once(
    client: TestClient, loaded_engine: Engine
) -> None:
    customer_id = customer(client)
    first = rank(client, "same", customer_id)
    later = (datetime.fromisoformat(NOW) + timedelta(seconds=30)).isoformat()
    again = rank(client, "same", customer_id, now=later)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert count(loaded_engine, RankingLog) == 1
    other = rank(client, "same", customer_id, slots=2)
    assert other.status_code == 409
    assert other.json()["problems"][0]["field"] == "request_id"
    assert "slots" in other.json()["problems"][0]["message"]


def test_bad_requests_name_the_field(client: TestClient, loaded_engine: Engine) -> None:
    customer_id = customer(client)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"slots": 0}, "slots"),
        ({"slots": 21}, "slots"),
        ({"channel": "pigeon"}, "channel"),
        ({"trigger": "nope"}, "trigger"),
        ({"exclude_offers": ["nothing_like_it"]}, "exclude_offers[0]"),
    ]
    for i, (extra, field) in enumerate(cases):
        response = rank(client, f"bad-{i}", customer_id, **extra)
        assert response.status_code == 422, response.text
        assert response.json()["problems"][0]["field"] == field
    missing = rank(client, "who", "nobody")
    assert missing.status_code == 404
    assert missing.json()["problems"][0]["field"] == "customer_id"
    assert count(loaded_engine, RankingLog) == 0  # nothing written by a failed request


def test_a_push_channel_or_excluded_offers_leave_fewer_slots(client: TestClient) -> None:
    customer_id = customer(client)
    push = rank(client, "push", customer_id, channel="email")
    assert push.status_code == 200
    assert push.json()["reason"] == "nothing_eligible"
    assert "push channel" in push.json()["excluded"]["channel:email"]
    exclude = ["upgrade_trial", "family_plan"]
    fewer = rank(client, "fewer", customer_id, exclude_offers=exclude, slots=5)
    body = fewer.json()
    assert {s["offer"]["key"] for s in body["slots"]}.isdisjoint(exclude)
    assert len(body["slots"]) == 2  # content_recommendation and no_incentive are left
    assert body["excluded"]["offer:upgrade_trial"] == "excluded by the request"


def test_slot_feedback_is_idempotent_and_becomes_a_final_reward_per_slot(
    client: TestClient, loaded_engine: Engine, settings: Any
) -> None:
    customer_id = customer(client)
    ranking = rank(client, "fb", customer_id).json()
    url = f"/v1/rankings/{ranking['ranking_id']}/events"
    for slot in (1, 2, 3):
        r = client.post(url, json={"event_id": f"imp-{slot}", "slot": slot, "kind": "impression"})
        assert r.status_code == 200, r.text
        assert r.json()["duplicate"] is False
    click = client.post(url, json={"event_id": "clk-2", "slot": 2, "kind": "click"})
    assert click.json() == {
        "ranking_id": ranking["ranking_id"],
        "slot": 2,
        "kind": "click",
        "offer": ranking["slots"][1]["offer"]["key"],
        "duplicate": False,
    }
    again = client.post(url, json={"event_id": "clk-2", "slot": 2, "kind": "click"})
    assert again.json()["duplicate"] is True
    misuse = client.post(url, json={"event_id": "clk-2", "slot": 3, "kind": "click"})
    assert misuse.status_code == 409
    assert misuse.json()["problems"][0]["field"] == "event_id"
    no_slot = client.post(url, json={"event_id": "x", "slot": 4, "kind": "click"})
    assert no_slot.status_code == 422
    assert no_slot.json()["problems"][0]["field"] == "slot"

    services = client.app.state.services  # type: ignore[attr-defined]
    later = datetime.fromisoformat(NOW).astimezone(UTC) + timedelta(days=2)
    assert services.rankings.finalize_due(now=later) == 3
    with session_scope(loaded_engine) as session:
        rewards = {r.slot: r for r in session.exec(select(SlotReward)).all()}
    assert {s: r.value for s, r in rewards.items()} == {1: 0.0, 2: 1.0, 3: 0.0}
    assert len({r.sequence for r in rewards.values()}) == 3

    learnable = services.learning.final_rewards_after(cursor=0, limit=100)
    assert [r.reward for r in learnable] == [0.0, 1.0, 0.0]
    assert [r.context["slot"] for r in learnable] == [1, 2, 3]
    for event, slot in zip(learnable, ranking["slots"], strict=True):
        assert event.chosen_action_id == slot["action_id"]
        assert event.probability == slot["probability"]
        assert len(event.action_ids) == slot["candidates"]


def test_rankings_survive_a_restart_of_the_service(settings: Any, admin_key: str) -> None:
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {admin_key}"
        customer_id = customer(client)
        first = rank(client, "restart", customer_id).json()
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {admin_key}"
        assert rank(client, "restart", customer_id).json() == first


def test_the_online_learner_learns_every_slot_once(client: TestClient) -> None:
    from optimizer.learner import OnlineLearner, PoolPublisher

    services = client.app.state.services  # type: ignore[attr-defined]
    customer_id = customer(client)
    ranking = rank(client, "learn", customer_id).json()
    url = f"/v1/rankings/{ranking['ranking_id']}/events"
    assert client.post(url, json={"event_id": "c1", "slot": 1, "kind": "click"}).status_code == 200
    later = datetime.fromisoformat(NOW).astimezone(UTC) + timedelta(days=2)
    services.rankings.finalize_due(now=later)
    learner = OnlineLearner(
        services.learning, services.catalog, publisher=PoolPublisher(services.policies)
    )
    assert learner.run_until_caught_up() == 3
    assert learner.run_until_caught_up() == 0
    learner.checkpoint()
    assert (
        services.policies.policy_for(
            next(f for f in services.catalog.current()[0].frames if f.key == "upsell")
        ).examples_learned
        == 3
    )


def test_erasure_pseudonymises_rankings_and_retention_purges_them(
    client: TestClient, loaded_engine: Engine
) -> None:
    from campaign_db.models import RankingEvent
    from campaign_db.privacy import purge_before

    person = customer(client, "erase-")
    ranking = rank(client, "erase-page", person).json()
    url = f"/v1/rankings/{ranking['ranking_id']}/events"
    assert client.post(url, json={"event_id": "e1", "slot": 1, "kind": "click"}).status_code == 200
    alias = client.delete(f"/v1/customers/{person}").json()["pseudonym"]
    with session_scope(loaded_engine) as session:
        row = session.exec(select(RankingLog)).one()
        event = session.exec(select(RankingEvent)).one()
    assert row.customer_id == event.customer_id == alias
    assert person not in str(row.response)
    assert rank(client, "erase-again", person).status_code == 404

    with session_scope(loaded_engine, write=True) as session:
        purge_before(
            session,
            logs_before=datetime(2100, 1, 1, tzinfo=UTC),
            audit_before=datetime(2000, 1, 1, tzinfo=UTC),
        )
    assert count(loaded_engine, RankingLog) == count(loaded_engine, SlotReward) == 0
    assert count(loaded_engine, RankingEvent) == 0


def test_a_holdout_customer_is_shown_no_offers_of_the_frame(client: TestClient) -> None:
    from optimizer.eligibility import in_holdout

    i = 0
    while not in_holdout(f"held-{i}", salt="upsell", share=0.10):
        i += 1
    add_customer(client, f"held-{i}", health_class="A")
    body = rank(client, "held", f"held-{i}").json()
    assert body["reason"] == "holdout"
    assert body["slots"] == []


def test_a_push_offer_is_mirrored_first_on_the_portal_and_listed_for_the_customer(
    client: TestClient,
) -> None:
    customer_id = customer(client, "mirror-")
    assert client.get(f"/v1/customers/{customer_id}/offers").json()["offers"] == []
    push: dict[str, Any] = {}
    for attempt in range(20):
        body = {
            "request_id": f"mail-{attempt}",
            "customer_id": customer_id,
            "trigger": TRIGGER,
            "channels": ["email"],
            "now": NOW,
        }
        push = client.post("/v1/decisions", json=body).json()
        if push["contact"]:
            break
    assert push["contact"], push
    offer = push["action"]["offer"]["key"]
    sent = datetime.fromisoformat(push["action"]["send_time"]["send_at"]).astimezone(UTC)

    later = (sent + timedelta(hours=1)).isoformat()
    services = client.app.state.services  # type: ignore[attr-defined]
    (mirror,) = services.rankings.offers(customer_id, now=sent + timedelta(hours=1))
    assert str(mirror.decision_id) == push["decision_id"]
    assert mirror.until == sent + timedelta(days=14)
    assert mirror.channels == ("web_portal", "app_inbox")
    assert services.rankings.offers(customer_id, now=sent - timedelta(hours=1)) == []
    ranking = rank(client, "after-mail", customer_id, now=later).json()
    first = ranking["slots"][0]
    assert first["offer"]["key"] == offer
    assert first["forced"] is True
    assert first["probability"] == 1.0
    assert first["channel"] == "web_portal"
    assert len({s["offer"]["key"] for s in ranking["slots"]}) == 3
    assert not any(s["forced"] for s in ranking["slots"][1:])

    expired = (sent + timedelta(days=14, hours=1)).isoformat()
    after = rank(client, "after-mirror", customer_id, now=expired).json()
    assert not any(s["forced"] for s in after["slots"])
    excluded = rank(client, "excluded-mirror", customer_id, now=later, exclude_offers=[offer])
    assert offer not in {s["offer"]["key"] for s in excluded.json()["slots"]}


def test_mirrored_offers_of_an_unknown_customer_are_a_404_naming_it(client: TestClient) -> None:
    response = client.get("/v1/customers/nobody/offers")
    assert response.status_code == 404
    assert response.json()["problems"][0]["field"] == "customer_id"


def test_rankings_asked_at_once_are_written_together_and_a_repeat_gets_the_first_answer(
    client: TestClient, loaded_engine: Engine
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from optimizer.ranking import RankingAsk

    services = client.app.state.services  # type: ignore[attr-defined]
    people = [customer(client, f"batch-{n}-") for n in range(3)]
    now = datetime.fromisoformat(NOW)
    asks = [
        RankingAsk(f"b-{i}", people[i % 3], TRIGGER, "web_portal", 3, now=now) for i in range(12)
    ]
    asks += [RankingAsk("b-0", people[0], TRIGGER, "web_portal", 3, now=now)] * 4
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(services.rankings.rank, asks))
    assert count(loaded_engine, RankingLog) == 12
    first = answers[0].model_dump()
    assert all(a.model_dump() == first for a in answers[12:])
    assert len({a.ranking_id for a in answers}) == 12


def test_the_logged_ranking_explains_every_slot(client: TestClient) -> None:
    customer_id = customer(client, "explain-")
    ranking = rank(client, "explain", customer_id).json()
    record = client.get(f"/v1/rankings/{ranking['ranking_id']}")
    assert record.status_code == 200, record.text
    body = record.json()
    assert body["answer"] == ranking
    assert body["context"]["trigger"] == TRIGGER
    for logged, shown in zip(body["slots"], ranking["slots"], strict=True):
        assert logged["action_id"] == shown["action_id"]
        assert len(logged["candidate_action_ids"]) == shown["candidates"]
        assert abs(sum(logged["probabilities"]) - 1.0) < 1e-9
        index = logged["candidate_action_ids"].index(logged["action_id"])
        assert logged["probabilities"][index] == shown["probability"]
    unknown = client.get("/v1/rankings/00000000-0000-7000-8000-000000000000")
    assert unknown.status_code == 404
    assert unknown.json()["problems"][0]["field"] == "ranking_id"


def test_impressions_are_counted_per_offer_on_the_channel_within_the_days(
    client: TestClient, loaded_engine: Engine
) -> None:
    from campaign_db.rankings import SqlRankingStore

    customer_id = customer(client, "seen-")
    shown: list[str] = []
    for view in range(2):
        ranking = rank(client, f"seen-{view}", customer_id).json()
        url = f"/v1/rankings/{ranking['ranking_id']}/events"
        for slot in ranking["slots"]:
            event = {
                "event_id": f"imp-{view}-{slot['slot']}",
                "slot": slot["slot"],
                "kind": "impression",
                "occurred_at": NOW,
            }
            assert client.post(url, json=event).status_code == 200
            shown.append(slot["offer"]["key"])
    store = SqlRankingStore(loaded_engine)
    since = datetime.fromisoformat(NOW) - timedelta(days=1)
    expected = {offer: shown.count(offer) for offer in set(shown)}
    assert store.impressions(customer_id, channel="web_portal", since=since) == expected
    assert store.impressions(customer_id, channel="app_inbox", since=since) == {}
    later = datetime.fromisoformat(NOW) + timedelta(minutes=1)
    assert store.impressions(customer_id, channel="web_portal", since=later) == {}


def test_an_offer_shown_up_to_its_impression_limit_leaves_the_page(
    client: TestClient, loaded_engine: Engine
) -> None:
    from dataclasses import replace

    from campaign_db.rankings import SqlRankingStore
    from optimizer.core.catalog import ImpressionLimit
    from optimizer.ranking import RankingAsk
    from optimizer.rankings import RankingService

    services = client.app.state.services  # type: ignore[attr-defined]
    snapshot, lines = services.catalog.current()
    frames = []
    for frame in snapshot.frames:
        if frame.key == "upsell":
            limits = {"web_portal": ImpressionLimit(same_offer=1, days=1)}
            policy = frame.spec.contact_policy.model_copy(update={"impression_limits": limits})
            frame = replace(frame, spec=frame.spec.model_copy(update={"contact_policy": policy}))
        frames.append(frame)
    limited = replace(snapshot, frames=tuple(frames))

    class Limited:
        def current(self) -> Any:
            return limited, lines

        def combinations(self, frame: Any, language: str, health_class: str) -> Any:
            return services.catalog.combinations(frame, language, health_class)

    customer_id = customer(client, "capped-")
    now = datetime.fromisoformat(NOW)
    with RankingService(
        SqlRankingStore(loaded_engine), catalog=Limited(), policies=services.policies
    ) as service:
        first = service.rank(RankingAsk("cap-1", customer_id, TRIGGER, "web_portal", 3, now=now))
        seen = first.slots[0]
        service.record_event(
            first.ranking_id, event_id="cap-imp", slot=1, kind="impression", occurred_at=now
        )
        later = now + timedelta(minutes=5)
        again = service.rank(RankingAsk("cap-2", customer_id, TRIGGER, "web_portal", 4, now=later))
    assert seen.offer.key not in {s.offer.key for s in again.slots}
    assert "impression limit reached" in again.excluded[f"offer:{seen.offer.key}"]
