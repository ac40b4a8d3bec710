"""Bulk setup for the big sizes: units, cases, history and timers inserted in bulk, never timed.

SQLite gets ``executemany`` in large transactions; PostgreSQL gets ``COPY``. Rows are what the
engine would have written (cases in a given state with their data and a valid HMAC chain, timers
planned with the engine's own plan), so the timed part runs on realistic rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from itertools import islice
from typing import Any

from qmsflow.engine.history import row_hash

from .databases import connect_sqlite, psycopg_dsn
from .peers.writes import naive_utc

CHUNK = 50_000


class Loader:
    """Inserts rows into one scratch database through the bare driver, as fast as it allows."""

    def __init__(self, url: str) -> None:
        self.sqlite = url.startswith("sqlite")
        self.url = url

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Insert ``rows`` (tuples in ``columns`` order) into ``table``; return how many."""
        count = 0
        if self.sqlite:
            conn: Any = connect_sqlite(self.url)
            try:
                sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
                for chunk in _chunks(rows, CHUNK):
                    conn.execute("BEGIN")
                    conn.executemany(sql, [tuple(_sqlite_value(v) for v in row) for row in chunk])
                    conn.execute("COMMIT")
                    count += len(chunk)
            finally:
                conn.close()
            return count
        import psycopg

        with psycopg.connect(psycopg_dsn(self.url)) as pg, pg.cursor() as cur:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([_pg_value(v) for v in row])
                    count += 1
        return count

    def insert_units(self, rows: Iterable[Sequence[Any]]) -> int:
        """Insert units given as ``UNIT_COLUMNS`` tuples: the identity into ``units``, its one version into ``unit_versions``."""
        rows = list(rows)
        count = self.insert("units", ("id", "valid_from", "valid_to"), [(r[0], r[5], r[6]) for r in rows])
        self.insert("unit_versions", VERSION_COLUMNS, rows)
        return count

    def execute(self, sql: str) -> None:
        """Run one statement (an index, ANALYZE, a sequence reset) in its own transaction."""
        if self.sqlite:
            conn = connect_sqlite(self.url)
            try:
                conn.execute(sql)
            finally:
                conn.close()
            return
        import psycopg

        with psycopg.connect(psycopg_dsn(self.url), autocommit=True) as pg:
            pg.execute(sql)

    def analyze(self) -> None:
        """Refresh planner statistics after a bulk load, as an operator would after an import."""
        self.execute("ANALYZE")

    def reset_sequences(self, tables: Sequence[str]) -> None:
        """On PostgreSQL, move each table's id sequence past the ids inserted with explicit values."""
        if self.sqlite:
            return
        for table in tables:
            self.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT max(id) FROM {table}), 1))")


def _chunks(rows: Iterable[Sequence[Any]], size: int) -> Iterator[list[Sequence[Any]]]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return naive_utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def _pg_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return naive_utc(value)
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def opened_row(key: bytes, case_id: int, at: datetime, actor: str, state: str, data: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Return the "opened" history row of a case and its hash: the head of a one-row chain."""
    fields = {"at": at, "kind": "opened", "event": None, "from_state": None, "to_state": state, "actor": actor, "data": data}
    return fields, row_hash(key, case_id, 1, fields, "")


CASE_COLUMNS = (
    "id", "unit_id", "workflow", "workflow_version", "state", "version", "data", "parent_case_id", "opened_at", "updated_at",
    "closed_at", "history_head", "history_length",
)
HISTORY_COLUMNS = ("case_id", "seq", "at", "kind", "event", "from_state", "to_state", "actor", "data", "prev_hash", "hash")
TIMER_COLUMNS = (
    "id", "case_id", "name", "kind", "state", "obligation_id", "start_date", "due_date", "due_at", "status", "level",
    "next_step", "next_at", "created_at", "closed_at",
)
UNIT_COLUMNS = ("id", "code", "name", "kind", "is_lead", "valid_from", "valid_to")  # a unit and its one version
VERSION_COLUMNS = ("unit_id", "code", "name", "kind", "is_lead", "valid_from", "valid_to")
PARENT_COLUMNS = ("unit_id", "parent_id", "valid_from", "valid_to")

__all__ = [
    "CASE_COLUMNS",
    "HISTORY_COLUMNS",
    "Loader",
    "PARENT_COLUMNS",
    "TIMER_COLUMNS",
    "UNIT_COLUMNS",
    "VERSION_COLUMNS",
    "opened_row",
]
