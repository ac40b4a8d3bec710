"""Importing a province register of units: ``apply_import`` against a bulk Core insert of the same rows.

    python -m bench.unit_import                      # 10,000 units, SQLite and PostgreSQL, 3 rounds
    python -m bench.unit_import --units 500 --rounds 1 --backend sqlite

Each round makes a fresh migrated database per variant, interleaved (import, floor, floor, import,
...), so a slow moment of the machine falls on both. The floor writes the same units, versions,
parent links and contacts with four executemany INSERTs in one transaction and no checks, no admin
log: no import can be faster, so the ratio says what the checks, the unit services (a version and a
log entry per unit) and the per-unit statements cost. Statements are counted with a cursor event;
an executemany counts once. A second import of the same file (nothing to change) is timed too.
Prints the median and range of each, and of the ratio to the same round's floor.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert

from qmsflow.engine.db import Database
from qmsflow.engine.models import Contact, Unit, UnitParent, UnitVersion
from qmsflow.engine.permissions import CONSOLE
from qmsflow.engine.unitimport import UNIT_COLUMNS, apply_import, write_table

from .databases import Servers, migrated, postgres_server, scratch
from .world import runtime

AS_OF = date(2026, 1, 5)
START = date(2025, 7, 1)


def rows(n: int) -> list[list[str]]:
    """The province PC and ``n`` units under it, each with a head; every tenth a school under the commune before it."""
    out = [["91", "UBND tỉnh An Giang", "province_pc", "", START.isoformat(), "no", "Chủ tịch UBND tỉnh", "", "", "", "", ""]]
    for i in range(n):
        code = str(100000 + i)
        school = i % 10 == 9
        parent = str(100000 + i - 1) if school else "91"
        kind = "lower_secondary_school" if school else "commune_pc"
        name = f"Trường THCS mẫu {i}" if school else f"UBND xã mẫu {i}"
        out.append([code, name, kind, parent, START.isoformat(), "no", f"Thủ trưởng {i}", f"head{i}@unit.example", "",
                    f"Cán bộ ISO {i}", f"iso{i}@unit.example", ""])
    return out


class Counter:
    def __init__(self, db: Database) -> None:
        self.n = 0
        event.listen(db.engine, "before_cursor_execute", self._count)

    def _count(self, *args: Any) -> None:
        self.n += 1


def floor(db: Database, table: list[list[str]]) -> None:
    """Insert the same rows with four executemany statements, in one transaction (ids chosen here)."""
    ids = {r[0]: i + 1 for i, r in enumerate(table)}
    with db.write() as session:
        session.execute(insert(Unit), [{"id": ids[r[0]], "valid_from": START, "valid_to": None} for r in table])
        session.execute(insert(UnitVersion), [
            {"unit_id": ids[r[0]], "valid_from": START, "valid_to": None, "code": r[0], "name": r[1], "kind": r[2],
             "is_lead": False} for r in table])
        session.execute(insert(UnitParent), [
            {"unit_id": ids[r[0]], "parent_id": ids[r[3]], "valid_from": START, "valid_to": None} for r in table if r[3]])
        contacts = [{"unit_id": ids[r[0]], "role": "head", "name": r[6], "email": r[7] or None, "phone": None} for r in table]
        contacts += [{"unit_id": ids[r[0]], "role": "iso_officer", "name": r[9], "email": r[10] or None, "phone": None}
                     for r in table if r[9]]
        session.execute(insert(Contact), contacts)


def imported(db: Database, data: bytes) -> None:
    with db.write() as session:
        apply_import(session, runtime(), CONSOLE, data, as_of=AS_OF)


def measure(servers: Servers, backend: str, n: int, rounds: int) -> dict[str, list[float]]:
    table = rows(n)
    data = write_table(UNIT_COLUMNS, table, "csv")
    got: dict[str, list[float]] = {"import_s": [], "floor_s": [], "again_s": [], "ratio": [], "import_statements": [],
                                   "floor_statements": [], "again_statements": []}
    for r in range(rounds):
        order = ["import", "floor"] if r % 2 == 0 else ["floor", "import"]
        for variant in order:
            with scratch(servers, backend, f"uimp_{variant}") as url:
                db = migrated(url)
                counter = Counter(db)
                started = time.perf_counter()
                if variant == "import":
                    imported(db, data)
                else:
                    floor(db, table)
                got[f"{variant}_s"].append(time.perf_counter() - started)
                got[f"{variant}_statements"].append(counter.n)
                if variant == "import":
                    counter.n = 0
                    started = time.perf_counter()
                    imported(db, data)
                    got["again_s"].append(time.perf_counter() - started)
                    got["again_statements"].append(counter.n)
                db.dispose()
        got["ratio"].append(got["import_s"][-1] / got["floor_s"][-1])
    return got


def _summary(values: list[float], unit: str = "") -> str:
    return f"{statistics.median(values):.3g}{unit} (range {min(values):.3g}-{max(values):.3g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qmsflow-bench-") as folder:
        servers = Servers(Path(folder), postgres_server(None))
        for backend in servers.backends(args.backend):
            got = measure(servers, backend, args.units, args.rounds)
            units = args.units + 1
            print(f"{backend}: {units} units, {args.rounds} interleaved rounds")
            print(f"  import          {_summary(got['import_s'], ' s')}, "
                  f"{statistics.median(got['import_statements']) / units:.1f} statements per unit")
            print(f"  floor (Core)    {_summary(got['floor_s'], ' s')}, {statistics.median(got['floor_statements']):.0f} statements in all")
            print(f"  import / floor  {_summary(got['ratio'], 'x')}")
            print(f"  same file again {_summary(got['again_s'], ' s')}, {statistics.median(got['again_statements']):.0f} statements in all (nothing to change)")
        if "postgresql" not in servers.backends(args.backend) and args.backend != "sqlite":
            print("postgresql: no server answered; left out")


if __name__ == "__main__":
    main()
