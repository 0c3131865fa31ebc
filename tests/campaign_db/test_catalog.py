"""The catalog file format: validation with file/line errors, loading, versioning, export."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, func
from sqlmodel import select
from typer.testing import CliRunner

from api.cli import app
from campaign_db.catalog import (
    CatalogError,
    content_hash,
    dump_yaml,
    export_catalog,
    load_catalog,
    read_catalog,
)
from campaign_db.engine import session_scope
from campaign_db.models import Action, AuditLog, CatalogRevision, DecisionFrame, Offer, Text
from optimizer.core.catalog import FrameSpec, HarmSpec
from optimizer.core.values import FrameStatus

MINIMAL = Path(__file__).parent / "minimal_catalog.yaml"

# (case, text to replace, replacement, expected path in the file, message fragment); the
# problem must point at the first changed line, or at the line in POINT_AT for its case.
POINT_AT = {"offer_above_max_cost": "    offers: [free_month, usage_tip]"}
BAD_CATALOGS = [
    ("yaml_syntax_error", "    kind: tip\n", "    kind: [tip\n", None, "YAML syntax error"),
    (
        "unknown_reference",
        "    offer: free_month\n    language: de\n    channels: [sms]",
        "    offer: free_mnth\n    language: de\n    channels: [sms]",
        "texts[1].offer",
        "unknown offer 'free_mnth'",
    ),
    (
        "duplicate_key",
        "  - key: usage_tip_sms_en",
        "  - key: free_month_sms_de",
        "texts[2].key",
        "duplicate key 'free_month_sms_de'",
    ),
    (
        "negative_cost",
        "    cost: 9.99",
        "    cost: -9.99",
        "offers[0].cost",
        "greater than or equal to 0",
    ),
    (
        "text_does_not_fit_channel",
        '    channels: [sms]\n    body: "Dein nächster Monat ist kostenlos."',
        '    channels: [sms]\n    body: "' + "x" * 200 + '"',
        "texts[1].channels[0]",
        "does not fit channel 'sms'",
    ),
    (
        "offer_above_max_cost",
        "    max_offer_cost: 12",
        "    max_offer_cost: 5",
        "frames[0].offers[0]",
        "above the frame's max_offer_cost 5",
    ),
    (
        "unknown_time_zone",
        "    time_zone: Europe/Berlin",
        "    time_zone: Europe/Atlantis",
        "frames[0].time_zone",
        "unknown time zone 'Europe/Atlantis'",
    ),
    (
        "unknown_language",
        "    language: en",
        "    language: xx",
        "texts[2].language",
        "unknown language 'xx'",
    ),
    (
        "attribution_window_not_sane",
        "      window_days: 14",
        "      window_days: 0",
        "frames[0].attribution.window_days",
        "greater than or equal to 1",
    ),
    (
        "unknown_field",
        "    kind: tip\n",
        "    kind: tip\n    colour: blue\n",
        "offers[1].colour",
        "unknown field",
    ),
    (
        "misspelt_policy_setting",
        "    max_offer_cost: 12\n",
        "    max_offer_cost: 12\n    policy: {learnin_rate: 0.3}\n",
        "frames[0].policy.learnin_rate",
        "unknown field",
    ),
    (
        "policy_setting_out_of_range",
        "    max_offer_cost: 12\n",
        "    max_offer_cost: 12\n    policy:\n      bits: 40\n",
        "frames[0].policy.bits",
        "less than or equal to 28",
    ),
    (
        "budget_unknown_offer",
        "    max_offer_cost: 12\n",
        "    max_offer_cost: 12\n    budgets:\n      - {key: free_months, limit: 5000, "
        "period: week, offer: free_mnth}\n",
        "frames[0].budgets[0].offer",
        "counts offer 'free_mnth', which the frame does not offer",
    ),
    (
        "budget_without_period",
        "    max_offer_cost: 12\n",
        "    max_offer_cost: 12\n    budgets:\n      - {key: calls, limit: 800}\n",
        "frames[0].budgets[0].period",
        "field required",
    ),
    (
        "budget_fractional_count",
        "    max_offer_cost: 12\n",
        "    max_offer_cost: 12\n    budgets:\n      - {key: calls, limit: 80.5, period: day}\n",
        "frames[0].budgets[0]",
        "a count budget takes a whole number",
    ),
]


def _write_variant(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    text = MINIMAL.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"test setup: {old!r} must occur once"
    line = (
        text[: text.index(old)].count("\n")
        + 1
        + old[: len(old) - len(old.lstrip("\n"))].count("\n")
    )
    path = tmp_path / "catalog.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path, line


def _first_differing_line(old: str, new: str) -> int:
    for i, (a, b) in enumerate(zip(old.split("\n"), new.split("\n"), strict=False)):
        if a != b:
            return i
    return 0


@pytest.mark.parametrize(
    ("case", "old", "new", "path", "fragment"), BAD_CATALOGS, ids=[c[0] for c in BAD_CATALOGS]
)
def test_bad_catalog_names_file_line_and_field(
    tmp_path: Path, case: str, old: str, new: str, path: str | None, fragment: str
) -> None:
    file, start = _write_variant(tmp_path, old, new)
    expected_line = start + _first_differing_line(old, new)
    if case in POINT_AT:
        text = file.read_text(encoding="utf-8")
        expected_line = text[: text.index(POINT_AT[case])].count("\n") + 1
    with pytest.raises(CatalogError) as caught:
        read_catalog(file)
    problem = caught.value.problems[0]
    assert problem.file == str(file)
    assert fragment in problem.message
    if path is not None:
        assert problem.path == path
    assert problem.line is not None
    assert abs(problem.line - expected_line) <= 1, str(problem)


@pytest.mark.parametrize(
    ("case", "old", "new", "path", "fragment"), BAD_CATALOGS, ids=[c[0] for c in BAD_CATALOGS]
)
def test_cli_refuses_bad_catalog_and_leaves_database_unchanged(
    tmp_path: Path, case: str, old: str, new: str, path: str | None, fragment: str
) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    good = runner.invoke(app, ["catalog", "load", str(MINIMAL), "--database-url", url])
    assert good.exit_code == 0, good.output
    before = runner.invoke(app, ["catalog", "export", "--database-url", url]).output

    file, _ = _write_variant(tmp_path, old, new)
    result = runner.invoke(app, ["catalog", "load", str(file), "--database-url", url])
    assert result.exit_code != 0
    assert str(file) in result.output
    assert fragment.split("'")[0] in result.output

    after = runner.invoke(app, ["catalog", "export", "--database-url", url]).output
    assert after == before


def test_a_folder_of_files_reports_the_file_the_problem_is_in(tmp_path: Path) -> None:
    data = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
    frames = {"frames": data.pop("frames")}
    frames["frames"][0]["channels"].append("fax")
    (tmp_path / "blocks.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    (tmp_path / "frames.yaml").write_text(yaml.safe_dump(frames), encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        read_catalog(tmp_path)
    problem = caught.value.problems[0]
    assert problem.file == str(tmp_path / "frames.yaml")
    assert problem.path == "frames[0].channels[3]"
    assert "unknown channel 'fax'" in problem.message


def test_load_export_load_is_idempotent(engine: Engine, tmp_path: Path) -> None:
    catalog = read_catalog(MINIMAL)
    with session_scope(engine, write=True) as session:
        first = load_catalog(session, catalog=catalog, source="minimal", actor="test")
    assert first.changed
    assert first.revision == 1

    with session_scope(engine) as session:
        exported = export_catalog(session)
    path = tmp_path / "exported.yaml"
    path.write_text(dump_yaml(exported), encoding="utf-8")

    with session_scope(engine, write=True) as session:
        again = load_catalog(session, catalog=read_catalog(path), source="export", actor="test")
    assert not again.changed
    assert again.revision is None
    with session_scope(engine) as session:
        assert export_catalog(session) == exported
        assert session.exec(select(func.count()).select_from(CatalogRevision)).one() == 1
        assert session.exec(select(func.count()).select_from(DecisionFrame)).one() == 1


def test_loaded_catalog_interns_every_combination_and_no_contact(engine: Engine) -> None:
    with session_scope(engine, write=True) as session:
        load_catalog(session, catalog=read_catalog(MINIMAL), source="minimal", actor="test")
    with session_scope(engine) as session:
        signatures = set(session.exec(select(Action.signature)).all())
    # free_month: 2 channels on the mail text + sms text; usage_tip: sms; x 2 send times
    assert "no_contact" in signatures
    assert "free_month|free_month_mail_de|email|immediate" in signatures
    assert "usage_tip|usage_tip_sms_en|sms|late_afternoon" in signatures
    assert len(signatures) == 1 + (2 + 1 + 1) * 2


def test_changed_frame_becomes_new_version_and_approved_one_is_not_edited(
    engine: Engine, tmp_path: Path
) -> None:
    with session_scope(engine, write=True) as session:
        load_catalog(session, catalog=read_catalog(MINIMAL), source="v1", actor="test")

    data = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
    data["frames"][0]["holdout_share"] = 0.02  # fewer held out: widens, needs approval
    del data["frames"][0]["approval"]
    changed = tmp_path / "v2.yaml"
    changed.write_text(yaml.safe_dump(data), encoding="utf-8")
    with session_scope(engine, write=True) as session:
        report = load_catalog(session, catalog=read_catalog(changed), source="v2", actor="test")
    assert report.frame_versions == ["churn_prevention v2"]

    with session_scope(engine) as session:
        frames = session.exec(select(DecisionFrame).order_by(DecisionFrame.version)).all()
    assert [(f.version, f.status, f.holdout_share) for f in frames] == [
        (1, FrameStatus.active, 0.05),
        (2, FrameStatus.draft, 0.02),
    ]

    data["frames"][0]["approval"] = {"approved_by": "a.boss", "approved_at": "2026-11-20T08:00:00Z"}
    changed.write_text(yaml.safe_dump(data), encoding="utf-8")
    with session_scope(engine, write=True) as session:
        report = load_catalog(session, catalog=read_catalog(changed), source="v2", actor="test")
    assert report.frame_versions == []
    assert report.approvals == ["churn_prevention v2"]
    with session_scope(engine) as session:
        frames = session.exec(select(DecisionFrame).order_by(DecisionFrame.version)).all()
        audit = session.exec(select(AuditLog.action, AuditLog.subject)).all()
    assert [(f.version, f.status) for f in frames] == [
        (1, FrameStatus.retired),
        (2, FrameStatus.active),
    ]
    assert frames[0].holdout_share == 0.05
    assert frames[1].approved_by == "a.boss"
    assert ("frame.approve", "churn_prevention v2") in audit


def test_narrowing_a_frame_takes_effect_without_approval(engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine, write=True) as session:
        load_catalog(session, catalog=read_catalog(MINIMAL), source="v1", actor="test")
    data = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
    del data["frames"][0]["approval"]
    data["frames"][0]["offers"] = ["usage_tip"]  # fewer offers
    data["frames"][0]["max_offer_cost"] = 5  # lower cost ceiling
    path = tmp_path / "narrow.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with session_scope(engine, write=True) as session:
        report = load_catalog(session, catalog=read_catalog(path), source="narrow", actor="crm")
    assert report.approvals == ["churn_prevention v2 (narrows, no approval needed)"]
    with session_scope(engine) as session:
        frames = session.exec(select(DecisionFrame).order_by(DecisionFrame.version)).all()
        audit = session.exec(select(AuditLog.action, AuditLog.subject)).all()
    assert [(f.version, f.status) for f in frames] == [
        (1, FrameStatus.retired),
        (2, FrameStatus.active),
    ]
    assert ("frame.narrow", "churn_prevention v2") in audit


def test_a_frame_policy_is_stored_as_written_and_served_under_the_frame_key(
    engine: Engine, tmp_path: Path
) -> None:
    """Only the settings the catalog names are stored, so a changed default does not make a new
    frame version; the policy the frame serves carries the frame's key as its name."""
    text = MINIMAL.read_text(encoding="utf-8")
    path = tmp_path / "catalog.yaml"
    path.write_text(
        text.replace(
            "    max_offer_cost: 12\n", "    max_offer_cost: 12\n    policy: {bits: 20}\n"
        ),
        encoding="utf-8",
    )
    catalog = read_catalog(path)
    with session_scope(engine) as session:
        load_catalog(session, catalog=catalog, source=str(path), actor="test")
    with session_scope(engine) as session:
        stored = session.exec(select(DecisionFrame)).one()
        spec = FrameSpec.model_validate(stored.spec)
    assert stored.spec["policy"] == {"bits": 20}
    assert spec.policy_spec().bits == 20
    assert spec.policy_spec().name == spec.key
    assert catalog.frames[0].policy_spec() == spec.policy_spec()


def test_frame_widenings_name_each_loosening() -> None:
    from optimizer.core.catalog import frame_widenings

    old = read_catalog(MINIMAL).frames[0]
    wider = old.model_copy(
        update={
            "max_offer_cost": 20.0,
            "channels": [*old.channels, "fax"],
            "contact_policy": old.contact_policy.model_copy(update={"min_gap_hours": 1.0}),
        }
    )
    found = frame_widenings(old, wider)
    assert any(w.startswith("max_offer_cost") for w in found)
    assert any(w.startswith("channels") for w in found)
    assert any(w.startswith("min_gap_hours") for w in found)
    assert frame_widenings(wider, old) == []

    limited = old.model_copy(
        update={"guardrails": old.guardrails.model_copy(update={"max_harm_per_decision": 0.1})}
    )
    assert frame_widenings(old, limited) == []
    assert [w.split(":")[0] for w in frame_widenings(limited, old)] == [
        "guardrails.max_harm_per_decision"
    ]
    cheaper_harm = old.model_copy(
        update={
            "attribution": old.attribution.model_copy(update={"harm": HarmSpec(unsubscribe=1.0)})
        }
    )
    assert [w.split(":")[0] for w in frame_widenings(old, cheaper_harm)] == ["attribution"]


def test_a_version_stored_before_a_new_default_field_is_not_changed_by_loading_it_again(
    engine: Engine,
) -> None:
    catalog = read_catalog(MINIMAL)
    with session_scope(engine, write=True) as session:
        load_catalog(session, catalog=catalog, source="v1", actor="test")
    with session_scope(engine, write=True) as session:
        stored = session.exec(select(DecisionFrame)).one()
        older = {**stored.spec, "attribution": dict(stored.spec["attribution"])}
        del older["attribution"]["harm"]  # as written before harm costs existed
        stored.spec = older
        stored.content_hash = content_hash(older)
        session.add(stored)
    with session_scope(engine, write=True) as session:
        again = load_catalog(session, catalog=catalog, source="v1 again", actor="test")
    assert not again.changed
    with session_scope(engine) as session:
        assert session.exec(select(func.count()).select_from(DecisionFrame)).one() == 1


def test_harm_costs_are_stored_with_the_reward_range_they_widen(
    engine: Engine, tmp_path: Path
) -> None:
    data = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
    data["frames"][0]["attribution"] = {
        "reward": "binary",
        "harm": {"unsubscribe": 4.0, "complaint": 6.0, "contact": 0.05},
    }
    path = tmp_path / "harm.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with session_scope(engine, write=True) as session:
        load_catalog(session, catalog=read_catalog(path), source="harm", actor="test")
    with session_scope(engine) as session:
        stored = session.exec(select(DecisionFrame)).one()
    assert stored.reward_harm == {"unsubscribe": 4.0, "complaint": 6.0, "contact": 0.05}
    assert stored.reward_range == pytest.approx([-10.05, 1.0])


def test_raising_or_removing_a_budget_widens_and_adding_or_lowering_narrows() -> None:
    from optimizer.core.catalog import BudgetSpec, frame_widenings

    old = read_catalog(MINIMAL).frames[0]
    week = BudgetSpec(key="free_months", limit=5000, period="week", offer="free_month")
    budgeted = old.model_copy(update={"budgets": [week]})
    raised = old.model_copy(update={"budgets": [week.model_copy(update={"limit": 6000.0})]})
    lowered = old.model_copy(update={"budgets": [week.model_copy(update={"limit": 4000.0})]})
    monthly = old.model_copy(update={"budgets": [week.model_copy(update={"period": "month"})]})
    assert frame_widenings(old, budgeted) == []
    assert frame_widenings(budgeted, lowered) == []
    assert frame_widenings(budgeted, raised) == ["budgets.free_months: 5000 -> 6000 per week"]
    assert frame_widenings(budgeted, old) == ["budgets.free_months: 5000 per week -> no budget"]
    assert [w.split(":")[0] for w in frame_widenings(budgeted, monthly)] == ["budgets.free_months"]


def test_changed_block_is_updated_in_place(engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine, write=True) as session:
        load_catalog(session, catalog=read_catalog(MINIMAL), source="v1", actor="test")
    data = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
    data["offers"][0]["value"] = 75
    data["texts"][2]["body"] = "Tip: make a profile for everyone at home."
    path = tmp_path / "v2.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with session_scope(engine, write=True) as session:
        report = load_catalog(session, catalog=read_catalog(path), source="v2", actor="test")
    assert report.updated == {
        "triggers": 0,
        "channels": 0,
        "send_times": 0,
        "offers": 1,
        "texts": 1,
    }
    with session_scope(engine) as session:
        assert session.get(Offer, "free_month").value == 75  # type: ignore[union-attr]
        assert "profile" in session.get(Text, "usage_tip_sms_en").body  # type: ignore[union-attr]


def test_failed_load_rolls_back_everything(engine: Engine) -> None:
    catalog = read_catalog(MINIMAL)

    class SimulatedCrashError(Exception):
        pass

    def load_then_fail() -> None:
        with session_scope(engine, write=True) as session:
            load_catalog(session, catalog=catalog, source="minimal", actor="test")
            raise SimulatedCrashError

    with pytest.raises(SimulatedCrashError):
        load_then_fail()
    with session_scope(engine) as session:
        assert session.exec(select(func.count()).select_from(Offer)).one() == 0
        assert session.exec(select(func.count()).select_from(DecisionFrame)).one() == 0


def test_unquoted_clock_times_are_read_as_times(tmp_path: Path) -> None:
    text = MINIMAL.read_text(encoding="utf-8").replace('start: "16:00"', "start: 16:00")
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    assert read_catalog(path).send_times[1].start == "16:00"


def test_example_catalog_is_valid_and_complete(example_catalog) -> None:  # type: ignore[no-untyped-def]
    catalog = example_catalog
    assert {c.key for c in catalog.channels} == {
        "email",
        "sms",
        "app_push",
        "letter",
        "web_portal",
        "app_inbox",
    }
    assert len(catalog.frames) >= 2
    for offer in catalog.offers:
        for channel in catalog.channels:
            for language in ("de", "en"):
                fitting = [
                    t
                    for t in catalog.texts
                    if t.offer == offer.key and channel.key in t.channels and t.language == language
                ]
                assert len(fitting) >= 3, (offer.key, channel.key, language)


BILLION_LAUGHS = "".join(
    [
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n',
        *(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n"
            for i in range(8)
        ),
        "triggers: [*i]\n",
    ]
)


def test_billion_laughs_catalog_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    import tracemalloc

    file = tmp_path / "laughs.yaml"
    file.write_text(BILLION_LAUGHS, encoding="utf-8")
    tracemalloc.start()
    try:
        with pytest.raises(CatalogError) as caught:
            read_catalog(file)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
    (problem,) = caught.value.problems
    assert problem.file == str(file)
    assert problem.line is not None
    assert 2 <= problem.line <= 10
    assert "aliases expanded" in problem.message


def test_self_referencing_alias_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("triggers: &t [*t]\n", encoding="utf-8")
    deep = tmp_path / "deep.yaml"
    deep.write_text("triggers: " + "[" * 50_000 + "]" * 50_000 + "\n", encoding="utf-8")
    for file, fragment in ((recursive, "refers to itself"), (deep, "nested deeper")):
        with pytest.raises(CatalogError) as caught:
            read_catalog(file)
        (problem,) = caught.value.problems
        assert (problem.file, problem.line) == (str(file), 1)
        assert fragment in problem.message


def test_oversized_catalog_file_is_refused_before_parsing(tmp_path: Path) -> None:
    from campaign_db.catalog import MAX_CATALOG_FILE_BYTES

    file = tmp_path / "huge.yaml"
    file.write_bytes(b"#" * (MAX_CATALOG_FILE_BYTES + 1))
    with pytest.raises(CatalogError) as caught:
        read_catalog(file)
    (problem,) = caught.value.problems
    assert problem.file == str(file)
    assert f"larger than the limit of {MAX_CATALOG_FILE_BYTES} bytes" in problem.message


def test_symlink_to_a_device_or_a_pipe_is_refused_without_reading_it(tmp_path: Path) -> None:
    import os

    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "pipe.yaml")
    with pytest.raises(CatalogError) as caught:
        read_catalog(tmp_path)
    assert [(p.file, p.message) for p in caught.value.problems] == [
        (str(tmp_path / name), "not a regular file; refused") for name in ("pipe.yaml", "zero.yaml")
    ]


def test_cli_refuses_billion_laughs_without_a_traceback(tmp_path: Path) -> None:
    file = tmp_path / "laughs.yaml"
    file.write_text(BILLION_LAUGHS, encoding="utf-8")
    result = CliRunner().invoke(app, ["catalog", "validate", str(file)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert str(file) in result.output
    assert "aliases expanded" in result.output
    assert "Traceback" not in result.output


def test_a_frame_without_budgets_keeps_the_content_it_had_before_budgets_existed() -> None:
    from campaign_db.catalog import frame_content
    from optimizer.core.catalog import BudgetSpec

    frame = read_catalog(MINIMAL).frames[0]
    assert "budgets" not in frame_content(frame)
    budget = BudgetSpec(key="calls", limit=800, period="day")
    budgeted = frame.model_copy(update={"budgets": [budget]})
    assert frame_content(budgeted)["budgets"][0]["limit"] == 800
    assert FrameSpec.model_validate(frame_content(budgeted)).budgets == [budget]
