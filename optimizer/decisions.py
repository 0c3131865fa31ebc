"""The decision: eligibility → candidates → policy → reserve the contact and log, in one commit.

Reserving the contact and writing the decision log happen in one transaction that holds the
customer's lock, committed before the answer goes out. A repeated `request_id` with the same body
returns the stored answer and reserves nothing; with another body it is a conflict.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import queue
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)
from sqlalchemy import Engine

from campaign_db import queries
from campaign_db.engine import session_scope
from campaign_db.hotpath import CustomerRecord, CustomerRow, DecisionStore
from optimizer.core.catalog import (
    KEY_PATTERN,
    NO_CONTACT,
    CatalogSnapshot,
    SafeDefaultSpec,
    split_signature,
)
from optimizer.core.values import DecisionReason, Timestamp, new_id, refuse_nul, utcnow
from optimizer.eligibility import (
    Candidate,
    CandidateSet,
    Combination,
    CustomerState,
    PastContact,
    build_candidates,
    choose_frame,
    in_holdout,
    local_now,
    max_lookback,
)
from optimizer.errors import ConflictError, InvalidInputError, NotFoundError
from optimizer.features import ActionLines, context_snapshot, shared_line
from optimizer.policy import Choice, sample_index, seed_from_id
from optimizer.serving import CatalogCache, PolicyPool

log = logging.getLogger("campopt.decisions")

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
CustomerId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$")]
RequestId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
BlockKey = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
AttributeValue = str | int | float | bool | None
EARLIEST_NOW = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_NOW = datetime(2100, 1, 1, tzinfo=UTC)


def check_now(value: datetime | None) -> datetime | None:
    """A caller's decision time must be a plausible instant: far-off years overflow the
    history look-back and the send times, and no campaign runs in them."""
    if value is None:
        return None
    problem = f"must lie between {EARLIEST_NOW:%Y-%m-%d} and {LATEST_NOW:%Y-%m-%d} (UTC)"
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(problem) from None
    if not EARLIEST_NOW <= utc < LATEST_NOW:
        raise ValueError(problem)
    return value


class DecisionRequest(BaseModel):
    """What a channel system asks: what should this customer get now, for this trigger?"""

    model_config = ConfigDict(extra="forbid")

    request_id: RequestId = Field(description="idempotency key: a retry returns the same answer")
    customer_id: CustomerId
    trigger: BlockKey
    channels: list[BlockKey] = Field(
        min_length=1, max_length=16, description="channels the caller can deliver on now"
    )
    context: Annotated[
        dict[Annotated[str, StringConstraints(max_length=64)], AttributeValue],
        AfterValidator(refuse_nul),
    ] = Field(default_factory=dict, max_length=32, description="extra context attributes")
    personalisation: dict[Annotated[str, StringConstraints(max_length=64)], str] = Field(
        default_factory=dict,
        max_length=32,
        description="values for {placeholders} in texts; used to render, never stored",
    )
    now: Annotated[Timestamp | None, AfterValidator(check_now)] = Field(
        default=None,
        description="decision time (default: the server clock); further than the allowed skew "
        "from the server clock only with the simulate scope",
    )


def request_digest(request: DecisionRequest) -> dict[str, str]:
    """Per field that says what is asked, a short SHA-256 of its canonical JSON: a retry must
    ask the same, and a digest names what differs without storing the request's context.

    `personalisation` only renders the answer. `now` is when it is asked, and a retry is asked
    later: a client that stamps each attempt, or a sweeper that runs again, must get the stored
    answer (whose `decided_at` says when it was decided), not a conflict.
    """
    fields: dict[str, Any] = {
        "trigger": request.trigger,
        "channels": sorted(set(request.channels)),
        "context": request.context,
    }
    return {
        name: hashlib.sha256(
            json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()[:16]
        for name, value in fields.items()
    }


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


class CandidateRecord(BaseModel):
    action_id: int
    signature: str
    probability: float | None


class DecisionRecord(BaseModel):
    """The logged decision: why this customer got this (GET /v1/decisions/{id})."""

    answer: DecisionAnswer
    context: dict[str, Any]
    candidates: list[CandidateRecord]
    chosen_action_id: int | None
    seed: int
    catalog_revision: int | None
    eligibility_trace: dict[str, str]


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render(template: str | None, values: Mapping[str, str]) -> str | None:
    """Fill `{name}` placeholders the caller supplied; leave the others for the channel system."""
    if template is None:
        return None
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


SAFE_MODE_VERSION = "safe_mode"


def safe_candidates(candidates: CandidateSet, default: SafeDefaultSpec | None) -> CandidateSet:
    """In safe mode only the frame's safe default combination may be sent (any fitting text),
    and no contact where the frame allows it; without a safe default, only no contact."""
    keep: tuple[Combination, ...] = ()
    if default is not None and default.offer is not None:
        keep = tuple(
            c
            for c in candidates.combinations
            if c.offer == default.offer
            and (default.channel is None or c.channel == default.channel)
            and (default.send_time is None or c.send_time == default.send_time)
        )
    return replace(candidates, combinations=keep)


def uniform_choice(size: int, decision_id: uuid.UUID) -> Choice:
    distribution = np.full(size, 1.0 / size)
    seed = seed_from_id(decision_id)
    index = sample_index(distribution, seed)
    return Choice(
        index=index, probability=float(distribution[index]), distribution=distribution, seed=seed
    )


def customer_state(row: CustomerRow, consents: frozenset[str], today: date) -> CustomerState:
    tenure = (today - row.customer_since).days if row.customer_since else None
    return CustomerState(
        id=row.id,
        health_class=row.health_class,
        usage_index=row.usage_index,
        tenure_days=float(tenure) if tenure is not None else None,
        time_zone=row.time_zone,
        language=row.language,
        attributes=row.attributes or {},
        consented_channels=consents,
    )


def action_answer(
    snapshot: CatalogSnapshot,
    candidate: Candidate,
    *,
    time_zone: str,
    personalisation: Mapping[str, str],
) -> ActionAnswer:
    assert candidate.offer
    assert candidate.text
    assert candidate.channel
    assert candidate.send_time
    assert candidate.send_at is not None
    offer = snapshot.offers[candidate.offer]
    text = snapshot.texts[candidate.text]
    slot = snapshot.send_times[candidate.send_time]
    return ActionAnswer(
        action_id=candidate.action_id,
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
            subject=render(text.subject, personalisation),
            body=render(text.body, personalisation) or "",
            image_url=text.image_url,
        ),
        channel=candidate.channel,
        send_time=SendTimeAnswer(
            key=slot.key, name=slot.name, send_at=candidate.send_at.astimezone(ZoneInfo(time_zone))
        ),
    )


@dataclass
class Plan:
    """A decision ready to be written: the answer, its log row and the contact to reserve."""

    answer: DecisionAnswer
    log: dict[str, Any]
    contact: dict[str, Any] | None
    reward: dict[str, Any] | None
    state: CustomerRecord


@dataclass
class _Pending:
    request: DecisionRequest
    now: datetime
    future: Future[DecisionAnswer]
    plan: Plan | None = None
    duplicate: bool = False


class DecisionService:
    """Makes decisions and reads them back.

    Decisions are written by one writer thread per process with group commit: it takes every
    request waiting, plans each one outside the write lock (reads, eligibility, the policy), then
    under the lock re-reads each customer's state, re-plans the few whose state changed, writes
    all and commits once. One fsync then covers a whole batch, which is what makes full
    durability affordable on SQLite; on PostgreSQL the same batches save round trips and WAL
    flushes. Every caller still gets its answer only after the commit.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        catalog: CatalogCache,
        policies: PolicyPool,
        clock: Callable[[], datetime] = utcnow,
        max_batch: int = 64,
        timeout_seconds: float = 30.0,
    ) -> None:
        self.engine = engine
        self.store = DecisionStore(engine)
        self.catalog = catalog
        self.policies = policies
        self.clock = clock
        self.max_batch = max_batch
        self.timeout_seconds = timeout_seconds
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._start_lock = threading.Lock()

    # --- the public API ---------------------------------------------------------------------

    def decide(
        self, request: DecisionRequest, *, max_skew: timedelta | None = None
    ) -> DecisionAnswer:
        """Decide, reserve and log; returns after the commit. A reused request id gets its old
        answer."""
        return self.submit(request, max_skew=max_skew).result(timeout=self.timeout_seconds)

    async def decide_async(
        self, request: DecisionRequest, *, max_skew: timedelta | None = None
    ) -> DecisionAnswer:
        future = asyncio.wrap_future(self.submit(request, max_skew=max_skew))
        return await asyncio.wait_for(future, timeout=self.timeout_seconds)

    def submit(
        self, request: DecisionRequest, *, max_skew: timedelta | None = None
    ) -> Future[DecisionAnswer]:
        """Queue a decision for the writer; bad triggers, channels and times fail at once.

        `max_skew` bounds how far the request's `now` may be from this service's clock: a
        caller that could pick any time could backdate contacts past the contact policy's caps.
        None trusts the caller's time (simulations, in-process jobs).
        """
        snapshot, _ = self.catalog.current()
        if request.trigger not in snapshot.triggers:
            raise InvalidInputError("trigger", f"unknown trigger {request.trigger!r}")
        for i, channel in enumerate(request.channels):
            if channel not in snapshot.channels:
                raise InvalidInputError(f"channels[{i}]", f"unknown channel {channel!r}")
        now = self.clock().astimezone(UTC)
        if request.now is not None:
            offset = (request.now - now).total_seconds()
            if max_skew is not None and abs(offset) > max_skew.total_seconds():
                raise InvalidInputError(
                    "now",
                    f"{offset:+.0f} s from the server clock; without the simulate scope it may "
                    f"differ by at most {max_skew.total_seconds():.0f} s (or leave it out)",
                )
            now = request.now.astimezone(UTC)
        future: Future[DecisionAnswer] = Future()
        self._ensure_writer()
        self._queue.put(_Pending(request=request, now=now, future=future))
        return future

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join(timeout=10)
            self._writer = None

    # --- the writer -------------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        if self._writer is None:
            with self._start_lock:
                if self._writer is None:
                    self._writer = threading.Thread(
                        target=self._run, name="decision-writer", daemon=True
                    )
                    self._writer.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            try:
                self._process(batch)
            except Exception as exc:  # the batch's transaction failed: nobody got an answer
                log.exception("decision batch of %d failed", len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)

    def _process(self, batch: list[_Pending]) -> None:
        snapshot, lines = self.catalog.current()
        lookback = max_lookback(snapshot)
        starts: list[datetime] = []
        for item in batch:  # one request's time must not break the others' batch
            try:
                starts.append(item.now - lookback)
            except Exception as exc:
                item.future.set_exception(exc)
        batch = [item for item in batch if not item.future.done()]
        if not batch:
            return
        since = min(starts)
        customer_ids = [item.request.customer_id for item in batch]
        with self.store.transaction(write=False) as cursor:
            states = cursor.read_customers(customer_ids, since, lock=False)
        for item in batch:
            try:
                state = states.get(item.request.customer_id)
                if state is None:
                    raise NotFoundError(
                        "customer_id", f"unknown customer {item.request.customer_id!r}"
                    )
                item.plan = self._plan(item.request, item.now, state, snapshot, lines)
            except Exception as exc:
                item.future.set_exception(exc)
        todo = sorted((i for i in batch if i.plan is not None), key=lambda i: i.request.customer_id)
        if not todo:
            return
        try:
            self._write(todo, since, snapshot, lines)
        except Exception as exc:
            if len(todo) == 1:
                self._settle_failed(todo[0], exc)
            else:
                log.warning("decision batch of %d failed; writing one by one", len(todo))
                for item in todo:
                    try:
                        self._write([item], since, snapshot, lines)
                    except Exception as one:
                        self._settle_failed(item, one)
        for item in todo:
            if item.future.done():
                continue
            if item.duplicate:
                try:
                    item.future.set_result(self._stored(item.request))
                except Exception as exc:
                    item.future.set_exception(exc)
            elif item.plan is not None:
                item.future.set_result(item.plan.answer)

    def _settle_failed(self, item: _Pending, exc: Exception) -> None:
        """A request whose write failed because another writer (another process) logged the same
        request id meanwhile is a repeat and gets that answer or a conflict; else it fails."""
        if item.future.done():
            return
        try:
            with self.store.transaction(write=False) as cursor:
                logged = cursor.logged_requests([item.request.request_id])
        except Exception:
            logged = {}
        if logged:
            item.duplicate = True
            return
        log.error("decision %s failed", item.request.request_id, exc_info=exc)
        item.future.set_exception(exc)
        item.plan = None

    def _write(
        self,
        todo: list[_Pending],
        since: datetime,
        snapshot: CatalogSnapshot,
        lines: ActionLines,
    ) -> None:
        """Under the write lock: re-read, re-plan what changed, insert everything, commit."""
        with self.store.transaction(write=True) as cursor:
            states = cursor.read_customers([i.request.customer_id for i in todo], since, lock=True)
            logged = cursor.logged_requests(i.request.request_id for i in todo)
            contacts, decisions, rewards = [], [], []
            for item in todo:
                assert item.plan is not None
                request = item.request
                item.duplicate = False
                if request.request_id in logged:
                    item.duplicate = True
                    continue
                state = states.get(request.customer_id)
                if state is None:
                    item.plan = None
                    item.future.set_exception(
                        NotFoundError("customer_id", f"unknown customer {request.customer_id!r}")
                    )
                    continue
                if state != item.plan.state:
                    item.plan = self._plan(request, item.now, state, snapshot, lines)
                plan = item.plan
                logged[request.request_id] = request.customer_id
                decisions.append(plan.log)
                if plan.reward is not None:
                    rewards.append(plan.reward)
                if plan.contact is not None:
                    contacts.append(plan.contact)
                    states[request.customer_id] = state.with_contact(
                        (
                            plan.contact["frame_key"],
                            plan.contact["channel_key"],
                            plan.contact["send_at"],
                        )
                    )
            cursor.insert_contacts(contacts)
            cursor.insert_decisions(decisions)
            cursor.insert_rewards(rewards)

    def _stored(self, request: DecisionRequest) -> DecisionAnswer:
        """The answer logged for a repeated request id, if the request is the same one."""
        with self.store.transaction(write=False) as cursor:
            stored = cursor.stored_answer(request.request_id)
        if stored is None:  # pragma: no cover - the unique constraint just said it exists
            raise ConflictError("request_id", "conflicting concurrent request")
        differ = [] if stored.customer_id == request.customer_id else ["customer_id"]
        if stored.digest is not None:
            digest = request_digest(request)
            differ += [
                name
                for name, value in digest.items()
                if name in stored.digest and stored.digest[name] != value
            ]
        if differ:
            raise ConflictError(
                "request_id",
                f"already used for a different request ({', '.join(differ)} differ); "
                "a new request needs a new request_id",
            )
        return DecisionAnswer.model_validate(stored.answer)

    # --- planning: pure but for the caches ---------------------------------------------------

    def _plan(
        self,
        request: DecisionRequest,
        now: datetime,
        state: CustomerRecord,
        snapshot: CatalogSnapshot,
        lines: ActionLines,
    ) -> Plan:
        row = state.row
        customer = customer_state(row, state.consents, local_now(now, row.time_zone).date())
        decision_id = new_id()
        base = {
            "decision_id": decision_id,
            "request_id": request.request_id,
            "customer_id": row.id,
            "trigger": request.trigger,
            "decided_at": now,
        }
        record: dict[str, Any] = {
            "id": decision_id,
            "request_id": request.request_id,
            "created_at": now,
            "customer_id": row.id,
            "trigger_key": request.trigger,
            "catalog_revision": snapshot.revision,
            "seed": 0,
            "request_digest": request_digest(request),
        }

        def done(
            answer: DecisionAnswer,
            context: dict[str, Any],
            trace: dict[str, str],
            ids: list[int] | None = None,
            contact: dict[str, Any] | None = None,
            window_days: int | None = None,
        ) -> Plan:
            record.update(
                {
                    "reason": answer.reason.value,
                    "context": context,
                    "candidate_action_ids": ids,
                    "eligibility_trace": trace,
                    "response": answer.model_dump_json(),
                }
            )
            reward = None
            if window_days is not None:
                start = contact["send_at"] if contact is not None else now
                reward = {
                    "decision_id": decision_id,
                    "status": "pending",
                    "window_closes_at": start + timedelta(days=window_days),
                    "conversions": 0,
                    "sent": contact is None,  # nothing to send: counts as delivered
                }
            return Plan(answer=answer, log=record, contact=contact, reward=reward, state=state)

        frame, trace = choose_frame(snapshot, trigger=request.trigger, customer=customer, now=now)
        if frame is None:
            answer = DecisionAnswer(
                **base, contact=False, reason=DecisionReason.nothing_eligible, excluded=trace
            )
            return done(answer, {}, trace)

        candidate_set = build_candidates(
            snapshot,
            frame=frame,
            customer=customer,
            history=[PastContact(frame_key=f, channel=c, send_at=t) for f, c, t in state.history],
            channels=request.channels,
            now=now,
            combinations=self.catalog.combinations(frame, customer.language, customer.health_class),
        )
        trace = {**trace, **candidate_set.trace}
        policy = self.policies.policy_for(frame)
        context = context_snapshot(
            customer=customer,
            trigger=request.trigger,
            now_local=local_now(now, customer.time_zone),
            attributes=policy.spec.customer_attributes,
            extra=request.context,
        )
        frame_ref = FrameRef(key=frame.key, version=frame.version)
        window = frame.spec.attribution.window_days
        record |= {"frame_key": frame.key, "frame_version": frame.version}
        ids = candidate_set.action_ids

        if not candidate_set.has_contact:
            answer = DecisionAnswer(
                **base,
                contact=False,
                reason=DecisionReason.nothing_eligible,
                frame=frame_ref,
                candidates=len(ids),
                excluded=trace,
            )
            return done(answer, context, trace, ids)

        if in_holdout(row.id, salt=frame.key, share=frame.spec.holdout_share):
            answer = DecisionAnswer(
                **base,
                contact=False,
                reason=DecisionReason.holdout,
                frame=frame_ref,
                candidates=len(ids),
            )
            record |= {"chosen_action_id": snapshot.actions.get(NO_CONTACT), "probability": 1.0}
            return done(answer, context, trace, ids)

        if snapshot.modes.get(frame.key) == "safe":
            candidate_set = safe_candidates(candidate_set, frame.spec.safe_default)
            ids = candidate_set.action_ids
            if not ids:
                answer = DecisionAnswer(
                    **base,
                    contact=False,
                    reason=DecisionReason.nothing_eligible,
                    frame=frame_ref,
                    excluded={"frame": "safe mode after a guardrail breach: no contact"},
                )
                return done(answer, context, {**trace, "frame": "safe mode"}, ids)
            choice = uniform_choice(len(ids), decision_id)
            policy_ref = PolicyRef(name=policy.name, version=SAFE_MODE_VERSION)
        else:
            limit = frame.spec.guardrails.max_offer_cost_per_decision
            # no candidate costs more than max_offer_cost: at or below the limit nothing to cap
            capped = frame.spec.max_offer_cost > limit
            choice = policy.choose(
                shared_line(context),
                candidate_set.lines,
                decision_id=decision_id,
                floor_share=policy.spec.floor_share(frame.spec.exploration),
                costs=candidate_set.offer_costs(snapshot.offers) if capped else None,
                max_expected_cost=limit,
            )
            policy_ref = PolicyRef(name=policy.name, version=policy.version)
        chosen = candidate_set.candidate(choice.index)
        record |= {
            "policy_name": policy_ref.name,
            "policy_version": policy_ref.version,
            "probabilities": choice.distribution,
            "chosen_action_id": chosen.action_id,
            "probability": choice.probability,
            "seed": choice.seed,
        }
        if not chosen.is_contact:
            answer = DecisionAnswer(
                **base,
                contact=False,
                reason=DecisionReason.policy_no_contact,
                probability=choice.probability,
                candidates=len(ids),
                policy=policy_ref,
                frame=frame_ref,
            )
            return done(answer, context, trace, ids, window_days=window)

        assert chosen.channel is not None
        assert chosen.send_at is not None
        answer = DecisionAnswer(
            **base,
            contact=True,
            reason=DecisionReason.policy,
            action=action_answer(
                snapshot, chosen, time_zone=customer.time_zone, personalisation={}
            ),
            probability=choice.probability,
            candidates=len(ids),
            policy=policy_ref,
            frame=frame_ref,
        )
        record["send_at"] = chosen.send_at
        contact = {
            "id": new_id(),
            "customer_id": row.id,
            "decision_id": decision_id,
            "frame_key": frame.key,
            "channel_key": chosen.channel,
            "send_at": chosen.send_at,
            "created_at": now,
            "status": "reserved",
        }
        return done(answer, context, trace, ids, contact, window_days=window)

    def personalise(self, answer: DecisionAnswer, values: Mapping[str, str]) -> DecisionAnswer:
        """Fill the caller's placeholders into the answer's text (never stored)."""
        if not values or answer.action is None:
            return answer
        text = answer.action.text
        rendered = text.model_copy(
            update={"subject": render(text.subject, values), "body": render(text.body, values)}
        )
        action = answer.action.model_copy(update={"text": rendered})
        return answer.model_copy(update={"action": action})

    def record(self, decision_id: uuid.UUID) -> DecisionRecord:
        with session_scope(self.engine) as session:
            row = queries.get_decision(session, decision_id=decision_id)
            if row is None:
                raise NotFoundError("decision_id", f"no decision {decision_id}")
            ids = [
                int(i)
                for i in (row.candidate_action_ids if row.candidate_action_ids is not None else [])
            ]
            actions = queries.actions_by_id(session, ids=ids)
        probabilities = row.probabilities
        candidates = [
            CandidateRecord(
                action_id=action_id,
                signature=actions[action_id].signature if action_id in actions else "?",
                probability=float(probabilities[i]) if probabilities is not None else None,
            )
            for i, action_id in enumerate(ids)
        ]
        return DecisionRecord(
            answer=DecisionAnswer.model_validate(row.response),
            context=row.context,
            candidates=candidates,
            chosen_action_id=row.chosen_action_id,
            seed=row.seed,
            catalog_revision=row.catalog_revision,
            eligibility_trace=row.eligibility_trace or {},
        )


def describe_action(signature: str) -> dict[str, str | None]:
    offer, text, channel, send_time = split_signature(signature)
    return {"offer": offer, "text": text, "channel": channel, "send_time": send_time}
