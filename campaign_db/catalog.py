"""Catalog files: read YAML with line numbers, validate, load into the database, export.

Every problem names the file, the line and the path of the field. Loading is one transaction:
either the whole catalog lands or nothing changes. A frame whose content changed becomes a new
version; an approved version is never edited in place.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from campaign_db.engine import session_scope
from campaign_db.models import (
    Action,
    AuditLog,
    CatalogRevision,
    Channel,
    DecisionFrame,
    FrameState,
    Offer,
    SendTime,
    Text,
    Trigger,
)
from optimizer.core.catalog import (
    NO_CONTACT,
    SECTIONS,
    CatalogSnapshot,
    CatalogSpec,
    ChannelSpec,
    FrameSpec,
    FrameVersion,
    Loc,
    OfferSpec,
    SendTimeSpec,
    TextSpec,
    TriggerSpec,
    action_signature,
    cross_check,
    frame_actions,
    frame_widenings,
)
from optimizer.core.values import FrameStatus, utcnow


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class CatalogError(Exception):
    """A catalog that cannot be loaded, with every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def format_loc(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# --- reading files ---------------------------------------------------------------------------


@dataclass
class _Source:
    """Where each merged block came from: its file, its index there and the file's line map."""

    origins: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    lines: dict[str, dict[Loc, int]] = field(default_factory=dict)

    def locate(self, loc: Loc) -> tuple[str, int | None, Loc]:
        if len(loc) >= 2 and isinstance(loc[0], str) and isinstance(loc[1], int):
            origins = self.origins.get(loc[0], [])
            if loc[1] < len(origins):
                file, index = origins[loc[1]]
                local: Loc = (loc[0], index, *loc[2:])
                line_map = self.lines[file]
                for depth in range(len(local), 0, -1):
                    if local[:depth] in line_map:
                        return file, line_map[local[:depth]], local
                return file, None, local
        files = list(self.lines)
        return (files[0] if files else "<catalog>"), None, loc


def _line_map(node: yaml.Node, path: Loc = ()) -> dict[Loc, int]:
    lines: dict[Loc, int] = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            lines.update(_line_map(value_node, (*path, key)))
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_map(item, (*path, i)))
    return lines


MAX_CATALOG_FILE_BYTES = 4 * 2**20
"""A larger catalog file is refused before it is read (the example's largest is 16 KB)."""
MAX_CATALOG_NODES = 100_000
"""YAML nodes in a whole catalog, each alias counted as the nodes it stands for. Bounds the
memory and time of parsing, line maps and validation (the example catalog has about 1,300);
without it a few lines of nested aliases ("billion laughs") expand to billions of nodes."""
MAX_CATALOG_DEPTH = 64
"""Nesting depth of a catalog file (the format needs 6); deeper would exhaust the recursion."""


class _Refused(yaml.YAMLError):
    """A catalog file refused before or while parsing, with the line where that happened."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, counting the nodes it composes as if aliases were expanded."""

    def __init__(self, stream: str, *, nodes: int) -> None:
        super().__init__(stream)
        self.nodes_left = nodes
        self._sizes: dict[int, int] = {}
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(str(event.anchor))
            if target is not None:
                size = self._sizes.get(id(target))
                if size is None:
                    raise _Refused(f"alias *{event.anchor} refers to itself", line)
                self._spend(size, line)
            return super().compose_node(parent, index)
        if self._depth >= MAX_CATALOG_DEPTH:
            raise _Refused(f"nested deeper than {MAX_CATALOG_DEPTH} levels", line)
        before = self.nodes_left
        self._spend(1, line)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None:
            self._sizes[id(node)] = before - self.nodes_left
        return node

    def _spend(self, nodes: int, line: int) -> None:
        self.nodes_left -= nodes
        if self.nodes_left < 0:
            raise _Refused(
                f"more than {MAX_CATALOG_NODES} YAML nodes with aliases expanded; refused", line
            )


def _read_limited(file: Path) -> str:
    """The file's text, refusing devices, pipes and folders (by `stat`, before opening, and
    again on the opened file) and files above `MAX_CATALOG_FILE_BYTES`."""
    if not stat.S_ISREG(file.stat().st_mode):
        raise _Refused("not a regular file; refused")
    descriptor = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _Refused("not a regular file; refused")
        content = handle.read(MAX_CATALOG_FILE_BYTES + 1)
    if len(content) > MAX_CATALOG_FILE_BYTES:
        raise _Refused(f"larger than the limit of {MAX_CATALOG_FILE_BYTES} bytes; refused")
    return content.decode("utf-8")


def _catalog_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        if not files:
            raise CatalogError([Problem(str(path), None, "", "no .yaml files in this folder")])
        return files
    if not path.exists():
        raise CatalogError([Problem(str(path), None, "", "no such file or folder")])
    return [path]


def read_catalog(path: str | Path) -> CatalogSpec:
    """Read a catalog file or a folder of them, validate it and raise `CatalogError` if bad."""
    source = _Source()
    merged: dict[str, list[Any]] = {section: [] for section in SECTIONS}
    source.origins = {section: [] for section in SECTIONS}
    problems: list[Problem] = []
    nodes_left = MAX_CATALOG_NODES
    for file in _catalog_files(Path(path)):
        name = str(file)
        try:
            loader = _BoundedLoader(_read_limited(file), nodes=nodes_left)
            try:
                node = loader.get_single_node()
                data = loader.construct_document(node) if node is not None else None
                nodes_left = loader.nodes_left
            finally:
                loader.dispose()
        except _Refused as exc:
            problems.append(Problem(name, exc.line, "", exc.message))
            continue
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            problems.append(Problem(name, line, "", f"YAML syntax error: {exc.problem}"))
            continue
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problems.append(Problem(name, None, "", f"cannot read: {exc}"))
            continue
        if data is None:
            continue
        source.lines[name] = _line_map(node) if node is not None else {}
        if not isinstance(data, dict):
            problems.append(Problem(name, 1, "", "a catalog file is a mapping of sections"))
            continue
        for section, items in data.items():
            if section == "catalog":
                continue
            if section not in merged:
                line = source.lines[name].get((section,))
                known = ", ".join(SECTIONS)
                problems.append(
                    Problem(name, line, str(section), f"unknown section (known: {known})")
                )
                continue
            if not isinstance(items, list):
                line = source.lines[name].get((section,))
                problems.append(Problem(name, line, section, "a section is a list of blocks"))
                continue
            for i, item in enumerate(items):
                merged[section].append(item)
                source.origins[section].append((name, i))
    if problems:
        raise CatalogError(problems)

    try:
        catalog = CatalogSpec.model_validate(merged)
    except ValidationError as exc:
        raise CatalogError(
            [_problem(source, tuple(err["loc"]), _message(err)) for err in exc.errors()]
        ) from None
    crossed = cross_check(catalog)
    if crossed:
        raise CatalogError([_problem(source, loc, message) for loc, message in crossed])
    return catalog


def _message(error: Any) -> str:
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "field required"
    return message


def _problem(source: _Source, loc: Loc, message: str) -> Problem:
    clean: Loc = tuple(part for part in loc if not (isinstance(part, str) and "[" in part))
    file, line, local = source.locate(clean)
    return Problem(file, line, format_loc(local), message)


# --- hashing and actions ---------------------------------------------------------------------


def frame_content(spec: FrameSpec) -> dict[str, Any]:
    """The part of a frame that defines its version: everything but the approval. A frame
    without budgets is dumped without the field, so frames loaded before budgets existed keep
    their content hash (and their version)."""
    exclude = {"approval"} if spec.budgets else {"approval", "budgets"}
    return spec.model_dump(mode="json", exclude=exclude)


def _same_content(stored: dict[str, Any] | None, spec: FrameSpec) -> bool:
    """Whether a stored version says what `spec` says, read with today's model: a version
    stored before a field with a default was added has another hash but the same content."""
    if not stored:
        return False
    try:
        return frame_content(FrameSpec.model_validate(stored)) == frame_content(spec)
    except ValidationError:
        return False


def content_hash(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- loading into the database ---------------------------------------------------------------


@dataclass
class LoadReport:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    frame_versions: list[str] = field(default_factory=list)
    approvals: list[str] = field(default_factory=list)
    actions_added: int = 0
    revision: int | None = None

    @property
    def changed(self) -> bool:
        return bool(
            sum(self.created.values())
            + sum(self.updated.values())
            + len(self.frame_versions)
            + len(self.approvals)
            + self.actions_added
        )


_BLOCKS: tuple[tuple[str, type[Any], type[Any]], ...] = (
    ("triggers", Trigger, TriggerSpec),
    ("channels", Channel, ChannelSpec),
    ("send_times", SendTime, SendTimeSpec),
    ("offers", Offer, OfferSpec),
    ("texts", Text, TextSpec),
)


def _block_row(section: str, spec: Any) -> dict[str, Any]:
    data = spec.model_dump(mode="python")
    if section == "texts":
        data["offer_key"] = data.pop("offer")
    return {k: v.value if isinstance(v, enum.Enum) else v for k, v in data.items()}


def load_catalog(session: Session, *, catalog: CatalogSpec, source: str, actor: str) -> LoadReport:
    """Upsert blocks, version frames and intern actions, inside the caller's transaction."""
    report = LoadReport()
    now = utcnow()
    for section, table, _spec in _BLOCKS:
        report.created[section] = report.updated[section] = report.unchanged[section] = 0
        existing = {row.key: row for row in session.exec(select(table)).all()}
        for spec in getattr(catalog, section):
            data = _block_row(section, spec)
            row = existing.get(spec.key)
            if row is None:
                session.add(table(**data))
                report.created[section] += 1
            elif {k: getattr(row, k) for k in data} != data:
                for key, value in data.items():
                    setattr(row, key, value)
                session.add(row)
                report.updated[section] += 1
            else:
                report.unchanged[section] += 1
        session.flush()

    for spec in catalog.frames:
        _load_frame(session, spec=spec, actor=actor, now=now, report=report)

    known = set(session.exec(select(Action.signature)).all())
    wanted: dict[str, tuple[str | None, ...]] = {NO_CONTACT: (None, None, None, None)}
    for spec in catalog.frames:
        for combo in frame_actions(spec, catalog.texts):
            wanted[action_signature(*combo)] = combo
    for signature, (offer, text, channel, slot) in sorted(wanted.items()):
        if signature not in known:
            session.add(
                Action(
                    signature=signature,
                    offer_key=offer,
                    text_key=text,
                    channel_key=channel,
                    send_time_key=slot,
                )
            )
            report.actions_added += 1
    session.flush()

    if report.changed:
        revision = CatalogRevision(
            loaded_at=now,
            content_hash=content_hash(catalog.model_dump(mode="json")),
            source=source,
            loaded_by=actor,
            summary={
                "created": report.created,
                "updated": report.updated,
                "frame_versions": report.frame_versions,
                "approvals": report.approvals,
                "actions_added": report.actions_added,
            },
        )
        session.add(revision)
        session.flush()
        report.revision = revision.id
        session.add(
            AuditLog(
                at=now,
                actor=actor,
                action="catalog.load",
                subject=source,
                details={"revision": revision.id, **(revision.summary or {})},
            )
        )
    return report


def _load_frame(
    session: Session, *, spec: FrameSpec, actor: str, now: datetime, report: LoadReport
) -> None:
    digest = content_hash(frame_content(spec))
    versions = session.exec(
        select(DecisionFrame)
        .where(DecisionFrame.key == spec.key)
        .order_by(col(DecisionFrame.version).desc())
    ).all()
    latest = versions[0] if versions else None
    if latest is not None and (latest.content_hash == digest or _same_content(latest.spec, spec)):
        if spec.approval is not None and latest.status == FrameStatus.draft:
            _approve(session, latest, spec=spec, actor=actor, now=now, versions=versions)
            report.approvals.append(f"{spec.key} v{latest.version}")
        return
    active = next((v for v in versions if v.status == FrameStatus.active), None)
    widenings = (
        frame_widenings(FrameSpec.model_validate(active.spec), spec) if active is not None else None
    )

    frame = DecisionFrame(
        key=spec.key,
        version=(latest.version + 1) if latest else 1,
        status=FrameStatus.draft,
        content_hash=digest,
        created_at=now,
        created_by=actor,
        **frame_columns(spec),
    )
    for old in versions:
        if old.status == FrameStatus.draft:
            old.status = FrameStatus.retired
            old.retired_at = now
            session.add(old)
    session.add(frame)
    session.flush()
    report.frame_versions.append(f"{spec.key} v{frame.version}")
    if spec.approval is not None:
        _approve(session, frame, spec=spec, actor=actor, now=now, versions=versions)
        report.approvals.append(f"{spec.key} v{frame.version}")
    elif active is not None and widenings == []:
        activate(session, frame, actor=actor, now=now, versions=versions, approved_by=None)
        session.add(
            AuditLog(
                at=now,
                actor=actor,
                action="frame.narrow",
                subject=f"{frame.key} v{frame.version}",
                details={"replaces": active.version, "note": "narrowing needs no approval"},
            )
        )
        report.approvals.append(f"{spec.key} v{frame.version} (narrows, no approval needed)")


def frame_columns(spec: FrameSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description,
        "triggers": list(spec.triggers),
        "priority": spec.priority,
        "health_classes": [hc.value for hc in spec.health_classes],
        "offers_by_health_class": spec.offers_by_health_class(),
        "channels": list(spec.channels),
        "send_times": list(spec.send_times),
        "allow_no_contact": spec.allow_no_contact,
        "max_offer_cost": spec.max_offer_cost,
        "valid_from": spec.valid_from,
        "valid_until": spec.valid_until,
        "time_zone": spec.time_zone,
        "contact_policy": spec.contact_policy.model_dump(mode="json"),
        "exploration": spec.exploration.model_dump(mode="json"),
        "guardrails": spec.guardrails.model_dump(mode="json"),
        "holdout_share": spec.holdout_share,
        "attribution_window_days": spec.attribution.window_days,
        "reward_definition": spec.attribution.reward.value,
        "reward_range": list(spec.attribution.reward_range(spec.max_offer_cost)),
        "reward_harm": spec.attribution.harm.model_dump(mode="json"),
        "safe_default": spec.safe_default.model_dump(mode="json") if spec.safe_default else None,
        "policy": frame_content(spec)["policy"],
        "spec": frame_content(spec),
    }


def _approve(
    session: Session,
    frame: DecisionFrame,
    *,
    spec: FrameSpec,
    actor: str,
    now: datetime,
    versions: Iterable[DecisionFrame],
) -> None:
    """Approval in a catalog file activates the version and retires the one it replaces."""
    assert spec.approval is not None
    activate(
        session,
        frame,
        actor=actor,
        now=now,
        versions=versions,
        approved_by=spec.approval.approved_by,
        approved_at=spec.approval.approved_at.astimezone(UTC),
    )
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action="frame.approve",
            subject=f"{frame.key} v{frame.version}",
            details={
                "approved_by": spec.approval.approved_by,
                "approved_at": spec.approval.approved_at.isoformat(),
                "via": "catalog file",
            },
        )
    )


def activate(
    session: Session,
    frame: DecisionFrame,
    *,
    actor: str,
    now: datetime,
    versions: Iterable[DecisionFrame],
    approved_by: str | None,
    approved_at: datetime | None = None,
) -> None:
    """Make `frame` the active version of its key; the one it replaces retires."""
    for old in versions:
        if old.id != frame.id and old.status in (FrameStatus.active, FrameStatus.approved):
            old.status = FrameStatus.retired
            old.retired_at = now
            session.add(old)
    frame.status = FrameStatus.active
    if approved_by is not None:
        frame.approved_by = approved_by
        frame.approved_at = approved_at or now
    session.add(frame)


def approve_frame(
    session: Session,
    *,
    key: str,
    version: int,
    approver: str,
    now: datetime,
    reason: str = "",
    via: str = "api",
) -> DecisionFrame:
    """A manager approves a draft version: it becomes active, the previous version retires."""
    versions = _versions_of(session, key)
    frame = _draft(versions, key, version, verb="approved")
    newer = [v for v in versions if v.version > version and v.status != FrameStatus.draft]
    if newer:
        raise ValueError(f"frame {key} v{version} is older than the serving v{newer[0].version}")
    widens = frame_widenings_against_active(versions, frame)
    activate(session, frame, actor=approver, now=now, versions=versions, approved_by=approver)
    session.add(
        AuditLog(
            at=now,
            actor=approver,
            action="frame.approve",
            subject=f"{key} v{version}",
            details={"via": via, "widens": widens, "reason": reason},
        )
    )
    return frame


def reject_frame(
    session: Session,
    *,
    key: str,
    version: int,
    actor: str,
    now: datetime,
    reason: str,
    via: str = "api",
) -> DecisionFrame:
    """A manager turns a draft down: it retires without ever serving, and the reason is kept."""
    frame = _draft(_versions_of(session, key), key, version, verb="rejected")
    frame.status = FrameStatus.retired
    frame.retired_at = now
    session.add(frame)
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action="frame.reject",
            subject=f"{key} v{version}",
            details={"via": via, "reason": reason},
        )
    )
    return frame


def _versions_of(session: Session, key: str) -> list[DecisionFrame]:
    return list(
        session.exec(
            select(DecisionFrame)
            .where(DecisionFrame.key == key)
            .order_by(col(DecisionFrame.version).desc())
        ).all()
    )


def _draft(versions: list[DecisionFrame], key: str, version: int, *, verb: str) -> DecisionFrame:
    frame = next((v for v in versions if v.version == version), None)
    if frame is None:
        raise LookupError(f"frame {key!r} has no version {version}")
    if frame.status != FrameStatus.draft:
        raise ValueError(f"frame {key} v{version} is {frame.status}, only a draft can be {verb}")
    return frame


def frame_widenings_against_active(
    versions: Iterable[DecisionFrame], frame: DecisionFrame
) -> list[str]:
    active = next(
        (v for v in versions if v.status == FrameStatus.active and v.id != frame.id), None
    )
    if active is None:
        return []
    return frame_widenings(
        FrameSpec.model_validate(active.spec), FrameSpec.model_validate(frame.spec)
    )


# --- export ----------------------------------------------------------------------------------


def export_catalog(session: Session) -> dict[str, Any]:
    """The current catalog in the file format: blocks, and each frame's serving version."""
    out: dict[str, Any] = {}
    for section, table, spec_type in _BLOCKS:
        rows = session.exec(select(table).order_by(table.key)).all()
        items = []
        for row in rows:
            data = row.model_dump()
            if section == "texts":
                data["offer"] = data.pop("offer_key")
            spec = spec_type.model_validate(data)
            items.append(spec.model_dump(mode="json", exclude_defaults=True))
        out[section] = items
    frames = []
    keys = session.exec(select(DecisionFrame.key).distinct().order_by(DecisionFrame.key)).all()
    for key in keys:
        frame = serving_or_latest_frame(session, key=key)
        data = dict(frame.spec)
        if frame.approved_by and frame.approved_at and frame.status != FrameStatus.draft:
            data["approval"] = {
                "approved_by": frame.approved_by,
                "approved_at": frame.approved_at.isoformat().replace("+00:00", "Z"),
            }
        frames.append(FrameSpec.model_validate(data).model_dump(mode="json", exclude_defaults=True))
    out["frames"] = frames
    return out


def serving_or_latest_frame(session: Session, *, key: str) -> DecisionFrame:
    versions = session.exec(
        select(DecisionFrame)
        .where(DecisionFrame.key == key)
        .order_by(col(DecisionFrame.version).desc())
    ).all()
    for frame in versions:
        if frame.status == FrameStatus.active:
            return frame
    return versions[0]


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def latest_revision(session: Session) -> int | None:
    return session.exec(select(func.max(CatalogRevision.id))).one()


# --- the serving snapshot --------------------------------------------------------------------


def read_snapshot(
    session: Session, *, statuses: Iterable[str] = (FrameStatus.active,)
) -> CatalogSnapshot:
    """Read the catalog and the frames in `statuses` (by default the active ones)."""
    blocks: dict[str, dict[str, Any]] = {}
    for section, table, spec_type in _BLOCKS:
        items = {}
        for row in session.exec(select(table)).all():
            data = row.model_dump()
            if section == "texts":
                data["offer"] = data.pop("offer_key")
            items[row.key] = spec_type.model_validate(data)
        blocks[section] = items
    frames = tuple(
        frame_version(row)
        for row in session.exec(
            select(DecisionFrame).where(col(DecisionFrame.status).in_(list(statuses)))
        ).all()
    )
    actions = {
        signature: id_
        for signature, id_ in session.exec(select(Action.signature, Action.id)).all()
        if id_ is not None
    }
    modes = {
        state.frame_key: state.mode
        for state in session.exec(select(FrameState)).all()
        if state.mode != "normal"
    }
    return CatalogSnapshot(
        modes=modes,
        revision=latest_revision(session),
        triggers=blocks["triggers"],
        channels=blocks["channels"],
        send_times=blocks["send_times"],
        offers=blocks["offers"],
        texts=blocks["texts"],
        frames=frames,
        actions=actions,
    )


def frame_version(row: DecisionFrame) -> FrameVersion:
    assert row.id is not None
    return FrameVersion(
        id=row.id,
        key=row.key,
        version=row.version,
        status=row.status,
        spec=FrameSpec.model_validate(row.spec),
        approved_by=row.approved_by,
        approved_at=row.approved_at,
    )


def catalog_fingerprint(session: Session) -> tuple[Any, ...]:
    """Changes whenever a catalog load or a frame status change could change decisions."""
    revision = session.exec(select(func.max(CatalogRevision.id))).one()
    frames = session.exec(
        select(DecisionFrame.id, DecisionFrame.status).order_by(col(DecisionFrame.id))
    ).all()
    states = session.exec(
        select(FrameState.frame_key, FrameState.mode).order_by(col(FrameState.frame_key))
    ).all()
    return (revision, tuple(frames), tuple(states))


class SqlCatalogReader:
    """The optimizer's `CatalogReader` over the catalog tables."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def fingerprint(self) -> tuple[Any, ...]:
        with session_scope(self.engine) as session:
            return catalog_fingerprint(session)

    def snapshot(self) -> CatalogSnapshot:
        with session_scope(self.engine) as session:
            return read_snapshot(session)
