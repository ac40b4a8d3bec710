"""On PostgreSQL a sweep with nothing due reads only the (status, next_at) index, whatever the table size."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import text

from qmsflow.engine import Database
from qmsflow.engine.sweep import _claim
from tests.conftest import local

ROWS = 60_000


def _fill(db: Database, now: datetime) -> None:
    """Setup only: many cases, each with a pending timer due in the future, and finished ones in the past."""
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO units (id, valid_from) VALUES (1, '2025-07-01')"))
        conn.execute(text(
            "INSERT INTO unit_versions (unit_id, code, name, kind, is_lead, valid_from) VALUES (1, 'U', 'Unit', 'department', false, '2025-07-01')"
        ))
        conn.execute(text(
            "INSERT INTO cases (id, unit_id, workflow, workflow_version, state, version, data, opened_at, updated_at, history_head, history_length) "
            "SELECT g, 1, 'qms_lifecycle', 1, 'planned', 1, '{}', :now, :now, '', 0 FROM generate_series(1, :n) g"
        ), {"now": now, "n": ROWS})
        # most timers are pending in the future; a third are long done (their next_at is null)
        conn.execute(text(
            "INSERT INTO timers (case_id, name, kind, state, start_date, due_date, due_at, status, level, next_step, next_at, created_at) "
            "SELECT g, 'plan_due', 'state', 'planned', :start, :due, :due_at + (g || ' minutes')::interval, "
            "CASE WHEN g % 3 = 0 THEN 'done' ELSE 'pending' END, 0, 0, "
            "CASE WHEN g % 3 = 0 THEN NULL ELSE :due_at + (g || ' minutes')::interval END, :now "
            "FROM generate_series(1, :n) g"
        ), {"start": date(2026, 1, 5), "due": date(2026, 6, 1), "due_at": now + timedelta(days=30), "now": now, "n": ROWS})
        conn.execute(text("ANALYZE"))


def test_a_sweep_with_nothing_due_scans_only_the_index(pg_db: Database) -> None:
    now = local(date(2026, 1, 5))
    _fill(pg_db, now)
    with pg_db.write_factory() as session, session.begin():
        assert _claim(session, now, 200, set(), is_sqlite=False) == []
        stats = session.execute(text(
            "SELECT relname, seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relname IN ('timers', 'cases')"
        )).all()
        counters = {name: (seq, idx) for name, seq, idx in stats}
        # this transaction read timers through an index and never scanned either table
        assert counters["timers"][0] == 0 and counters["timers"][1] >= 1
        assert counters.get("cases", (0, 0))[0] == 0
        plan = "\n".join(row[0] for row in session.execute(text(
            "EXPLAIN SELECT case_id FROM timers WHERE status = 'pending' AND next_at <= :now ORDER BY next_at LIMIT 800"
        ), {"now": now}))
        assert "ix_timers_status_next_at" in plan and "Seq Scan" not in plan, plan
