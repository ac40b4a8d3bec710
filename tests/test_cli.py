"""The command line an operator uses: init, demo, users, cases, workflows, audit, calendar."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import update

from qmsflow.cli import main
from qmsflow.engine import Database
from qmsflow.engine.models import HistoryEntry

FIXTURES = Path(__file__).parent / "fixtures"


def test_init_is_idempotent_and_demo_loads_once(run) -> None:
    assert run("init").exit_code == 0
    assert run("init").exit_code == 0
    first = run("demo", "--as-of", "2026-11-23")
    assert first.exit_code == 0, first.output
    assert "demo loaded: 12 units, 11 users, 12 cases" in first.output
    again = run("demo", "--as-of", "2026-11-23")
    assert again.exit_code == 0 and "not loaded again" in again.output
    verified = run("audit", "verify")
    assert verified.exit_code == 0 and "ok: 12 cases" in verified.output


def test_a_user_advances_a_case_and_refusals_have_distinct_exit_codes(run) -> None:
    run("demo", "--as-of", "2026-11-23")
    listed = json.loads(run("cases", "list", "--as", "stp.iso", "--json").output)
    assert [c["unit"] for c in listed] == ["STP"]  # a unit officer sees only its unit
    case = listed[0]
    assert case["state"] == "building"
    ok = run("cases", "advance", str(case["id"]), "establish_committee", "--as", "stp.iso",
             "--data", "committee_decision_number=70/QĐ-STP", "--data", '{"committee_decided_on": "2026-06-05"}',
             "--expect-version", str(case["version"]))
    assert ok.exit_code == 0, ok.output
    assert "building -> building (version 3)" in ok.output
    stale = run("cases", "advance", str(case["id"]), "establish_committee", "--as", "stp.iso",
                "--data", "committee_decision_number=x", "--data", "committee_decided_on=2026-06-05", "--expect-version", "2")
    assert stale.exit_code == 5 and "reload" in stale.output
    hidden = run("cases", "advance", str(case["id"]), "start_applying", "--as", "tnh.iso")
    assert hidden.exit_code == 4
    not_allowed = run("cases", "advance", str(case["id"]), "start_applying", "--as", "lanhdao")
    assert not_allowed.exit_code == 3
    invalid = run("cases", "advance", str(case["id"]), "announce", "--as", "stp.iso")
    assert invalid.exit_code == 6
    guarded = run("cases", "advance", str(case["id"]), "start_applying", "--as", "stp.iso")
    assert guarded.exit_code == 7 and "steering committee" in guarded.output  # English unless --language vi
    bad_json = run("cases", "advance", str(case["id"]), "issue_documents", "--as", "stp.iso", "--data", "{oops")
    assert bad_json.exit_code == 2
    shown = run("cases", "show", str(case["id"]), "--as", "tdc.lan")
    assert "70/QĐ-STP" in shown.output and "build_due" in shown.output
    # the officer sees the guarded event with the guard's reason, and the history with full names
    own = run("cases", "show", str(case["id"]), "--as", "stp.iso").output
    assert "start_applying (not yet: The steering committee" in own and "Đỗ Thị Ngọc" in own and "working days left" in own


def test_users_create_checks_role_and_unit(run) -> None:
    run("demo", "--as-of", "2026-11-23")
    made = run("users", "create", "snv.deputy", "--role", "unit_officer", "--unit", "SNV", "--email", "d@snv.example",
               "--password-stdin", input="a long enough password\n")
    assert made.exit_code == 0, made.output
    assert run("users", "create", "nobody", "--role", "supervisor").exit_code == 2
    assert run("users", "create", "snv.deputy", "--role", "viewer").exit_code == 8
    assert run("users", "create", "x.y", "--role", "unit_officer", "--unit", "NOPE").exit_code == 4
    assert "snv.deputy" in run("users", "list").output
    # only an administrator creates users: the lead may not, even from the command line
    assert run("users", "create", "by.lead", "--role", "viewer", "--as", "tdc.lan").exit_code == 3
    assert run("users", "create", "by.admin", "--role", "viewer", "--as", "admin").exit_code == 0


def test_audit_verify_fails_on_tampering(run, db: Database) -> None:
    run("demo", "--as-of", "2026-11-23")
    with db.write() as session:
        session.execute(update(HistoryEntry).where(HistoryEntry.id == 5).values(actor="someone else"))
    result = run("audit", "verify")
    assert result.exit_code == 1
    assert "edited" in result.output


def test_workflows_validate_lists_every_problem_and_fails(run, tmp_path: Path) -> None:
    shipped = run("workflows", "validate", str(Path(__file__).parents[1] / "qmsflow" / "workflows"))
    assert shipped.exit_code == 0 and shipped.output.count(": ok") == 4  # v1 and v2 of each
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: 0\nlabel: {vi: a, en: b}\ninitial: s\nstates: {s: {kind: task, label: {vi: a, en: b}}}\nevents: {}\n")
    result = run("workflows", "validate", str(bad))
    assert result.exit_code == 9
    assert "version" in result.output and "events" in result.output and f"{bad}:2" in result.output
    listed = run("workflows", "list")
    assert "qms_lifecycle v1" in listed.output and "corrective_action v1" in listed.output


def test_calendar_show_lists_tet_and_the_make_up_saturday(run) -> None:
    out = run("calendar", "show", "2026").output
    assert "2026-02-17" in out and "2026-08-22 Sat working" in out


def test_tick_reports_what_fired_as_json_and_a_dry_run_fires_nothing(run) -> None:
    run("demo", "--as-of", "2026-11-23")
    dry = run("tick", "--now", "2026-12-20T08:00:00+07:00", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    preview = json.loads(dry.output)
    assert preview["dry_run"] is True and preview["fired"]
    real = json.loads(run("tick", "--now", "2026-12-20T08:00:00+07:00", "--json").output)
    fired = [f for f in real["fired"] if f["outcome"] == "fired"]
    assert {(f["case"], f["step"]) for f in preview["fired"][: len(real["fired"])]} <= {(f["case"], f["step"]) for f in real["fired"]}
    assert any(f["kind"] == "escalation" and f["level"] == 2 for f in fired)
    assert real["routed"] == sum(1 for f in fired if f["kind"] in ("escalation", "reminder") and not f["detail"].startswith("same"))
    again = json.loads(run("tick", "--now", "2026-12-20T08:00:00+07:00", "--json").output)
    assert again["fired"] == []  # each step fires once
    assert run("audit", "verify").exit_code == 0
    listed = run("timers", "list", "--due-before", "2027-01-31T00:00:00+07:00").output
    assert "report_due" in listed and "notice_due" in listed
    own = run("timers", "list", "--as", "stp.iso").output  # scope applies to a user's list
    assert own and all(" STP " in line for line in own.splitlines())
    assert run("tick", "--now", "2026-11-28T08:00:00").exit_code == 2  # an instant without offset is refused


def test_a_changed_calendar_file_is_applied_by_calendar_replan_from_file_not_by_a_scheduler_or_init(db: Database, tmp_path: Path) -> None:
    # A scheduler used to re-plan to its own calendar file on start: two processes on two files moved
    # the same deadlines back and forth. Now only an explicit `calendar replan --from-file` (or `init --from-file`) applies one.
    calendar = tmp_path / "calendar.yaml"
    calendar.write_text("2026:\n  working_days: ['2026-08-22']\n")
    env = {
        "QMSFLOW_INSTANCE_PATH": str(tmp_path / "instance"),
        "QMSFLOW_DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
        "QMSFLOW_HISTORY_KEY": "cli-test-key",
        "QMSFLOW_CALENDAR_FILE": str(calendar),
    }

    def run(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    assert run("init", "--from-file").exit_code == 0  # the test database holds the shipped calendar: this file replaces it
    assert run("demo", "--as-of", "2026-11-23").exit_code == 0
    before = run("timers", "list").output
    assert "report_due               due 2026-12-15" in before
    # the province declares Tuesday 15 December 2026 a day off: the corrective report is due a day later
    calendar.write_text("2026:\n  working_days: ['2026-08-22']\n  days_off: ['2026-12-15']\n")
    started = run("scheduler", "--now", "2026-11-28T08:00:00+07:00", "--exit-when-idle", "--interval", "1")
    assert started.exit_code == 0, started.output
    assert "is not the stored one" in started.output and "qmsflow calendar replan" in started.output
    assert run("timers", "list").output == before  # nothing moved
    refused = run("tick", "--now", "2026-12-20T08:00:00+07:00")
    assert refused.exit_code == 13 and "is not the stored one" in refused.output, refused.output
    # the stored days are the source: init and a plain replan keep them; only --from-file applies the file
    kept = run("init")
    assert kept.exit_code == 0 and "which is kept" in kept.output and "calendar replan --from-file" in kept.output, kept.output
    assert run("timers", "list").output == before
    assert "0 pending deadlines re-planned" in run("calendar", "replan").output
    replanned = run("calendar", "replan", "--from-file")
    assert replanned.exit_code == 0, replanned.output
    assert "2026-12-15 -> 2026-12-16" in replanned.output and "pending deadlines re-planned" in replanned.output
    assert "report_due               due 2026-12-16" in run("timers", "list").output
    assert run("tick", "--now", "2026-11-28T08:00:00+07:00").exit_code == 0
    assert run("audit", "verify").exit_code == 0


def test_a_day_off_added_through_the_engine_survives_init(db: Database, tmp_path: Path) -> None:
    # `qmsflow init` applied the calendar file whenever it differed from the stored days, so it undid a
    # day off an administrator had added on /admin/calendar; the stored days are now the source
    from qmsflow.engine import FixedClock
    from qmsflow.engine.calendar import WorkingCalendar
    from qmsflow.engine.calendar_admin import OverrideChange, apply
    from qmsflow.engine.calendar_store import load_overrides, stored
    from qmsflow.engine.permissions import CONSOLE
    from qmsflow.engine.registry import Registry
    from qmsflow.engine.runtime import Runtime
    from qmsflow.workflows import DIRECTORY
    from tests.conftest import local

    env = {
        "QMSFLOW_INSTANCE_PATH": str(tmp_path / "instance"),
        "QMSFLOW_DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
        "QMSFLOW_HISTORY_KEY": "cli-test-key",
    }

    def run(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    assert run("demo", "--as-of", "2026-11-23").exit_code == 0
    assert "report_due               due 2026-12-15" in run("timers", "list").output
    with db.read() as session:
        rt = Runtime(Registry.from_directory(DIRECTORY), WorkingCalendar(load_overrides(session)), FixedClock(local(date(2026, 11, 23))),
                     b"cli-test-key")
        fingerprint = stored(session).fingerprint
    apply(db, rt, CONSOLE, OverrideChange("add", date(2026, 12, 15), name="ngày nghỉ của tỉnh"), expected_fingerprint=fingerprint)
    assert "report_due               due 2026-12-16" in run("timers", "list").output
    again = run("init")
    assert again.exit_code == 0 and "which is kept" in again.output, again.output
    with db.read() as session:
        assert date(2026, 12, 15) in load_overrides(session).days_off
        assert stored(session).fingerprint == rt.calendar.fingerprint()
    assert "report_due               due 2026-12-16" in run("timers", "list").output
    assert run("audit", "verify").exit_code == 0


def test_rotate_key_writes_a_new_current_key_and_the_chain_still_verifies(db: Database, tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    env = {"QMSFLOW_INSTANCE_PATH": str(instance), "QMSFLOW_DATABASE_URL": db.engine.url.render_as_string(hide_password=False)}

    def run(*args: str, extra: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, list(args), env={**env, **(extra or {})}, catch_exceptions=False)

    assert run("demo").exit_code == 0
    before = (instance / "qmsflow.toml").read_text()
    refused = run("audit", "rotate-key", extra={"QMSFLOW_HISTORY_KEY": "from-env"})
    assert refused.exit_code == 10 and "QMSFLOW_HISTORY_KEY" in refused.output
    rotated = run("audit", "rotate-key")
    assert rotated.exit_code == 0, rotated.output
    assert "history key '2' now signs new rows; key '1' retired" in rotated.output
    after = (instance / "qmsflow.toml").read_text()
    assert after != before and 'key_id = "2"' in after and "retired_keys = \"1=" in after
    assert "secret_key" in after  # the rest of the file is kept
    verified = run("audit", "verify")
    assert verified.exit_code == 0 and "ok: 12 cases" in verified.output, verified.output
    listed = json.loads(run("cases", "list", "--as", "stp.iso", "--json").output)
    ok = run("cases", "advance", str(listed[0]["id"]), "establish_committee", "--as", "stp.iso",
             "--data", "committee_decision_number=70/QĐ-STP", "--data", "committee_decided_on=2026-06-05")
    assert ok.exit_code == 0, ok.output
    assert run("audit", "verify").exit_code == 0
    # The old file's key is the wrong key for key id 2 now: refused at start, named by verify.
    (instance / "qmsflow.toml").write_text(after.replace(after.split('history_key = "')[1].split('"')[0], "f" * 64))
    wrong = run("audit", "verify")
    assert wrong.exit_code == 1 and "history key '2': this is not the key that wrote the chain" in wrong.output
    assert "edited" not in wrong.output
    assert run("init").exit_code == 10


def test_tokens_create_prints_the_token_once_list_names_it_and_revoke_ends_it(run, province) -> None:  # type: ignore[no-untyped-def]
    made = run("tokens", "create", "tnh", "--name", "one-stop shop", "--expires", "2030-01-31")
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[0]
    assert secret.startswith("qmsf_")
    listed = run("tokens", "list")
    assert listed.exit_code == 0 and secret[:12] in listed.output and secret not in listed.output and "one-stop shop" in listed.output
    assert "active" in listed.output
    token_id = listed.output.split()[0]
    assert run("tokens", "revoke", token_id).exit_code == 0
    assert "revoked" in run("tokens", "list", "--user", "tnh").output
    assert run("tokens", "create", "nobody").exit_code == 4
    assert run("tokens", "create", "tnh", "--expires", "2001-01-01").exit_code == 2
