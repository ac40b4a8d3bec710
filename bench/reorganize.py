"""Apply the whole shipped 2025 mapping (qmsflow/data/reorganisation-2025.yaml) to An Giang and Kiên Giang
as they stood on 30 June 2025, every commune and district with an open lifecycle case; time and
statements per unit, on SQLite and PostgreSQL.

    python -m bench.reorganize [--backend sqlite|postgresql|both] [--rounds 3]

The baseline, measured in the same rounds, is registering the same 326 units through ``create_unit``
(the engine's own cost of one unit write): the ratio says how many unit registrations one
reorganised unit costs. Rounds interleave the two on fresh databases; the median and range are printed.
Setup (units, cases) is not timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import event

from qmsflow.engine import SYSTEM, FixedClock, open_case
from qmsflow.engine.db import Database
from qmsflow.engine.models import Unit
from qmsflow.engine.reorganize import apply, load_mapping
from qmsflow.engine.reorgconvert import old_units
from qmsflow.engine.units import UnitKind, create_unit
from qmsflow.engine.users import create_user

from .databases import Servers, migrated, postgres_server, scratch
from .world import local, runtime

DATA = Path(__file__).resolve().parents[1] / "qmsflow" / "data"
DAY = date(2025, 7, 1)


class Statements:
    """Counts the statements an engine sends while switched on."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        self.on = False
        event.listen(db.engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        if self.on:
            self.count += 1


def _build(db: Database, rt: Any, *, cases: bool) -> tuple[int, float, int]:
    """Register the pre-July units (and open a case on each commune and district); return (units, seconds, statements)."""
    data = json.loads((DATA / "an-giang-kien-giang-units-before-2025-07.json").read_text("utf-8"))
    districts, communes = old_units(data)
    counter = Statements(db)
    ids: dict[str, int] = {}
    start = date(2020, 1, 1)
    began = time.perf_counter()
    counter.on = True
    with db.write() as session:
        for province in data["provinces"]:
            ids[province["code"]] = create_unit(session, code=province["code"], name=f"UBND tỉnh {province['name']}",
                                                kind=UnitKind.PROVINCE_PC.value, valid_from=start, rt=rt, actor=SYSTEM).id
        for code, d in districts.items():
            ids[code] = create_unit(session, code=code, name=f"UBND {d['kind'].lower()} {d['name']}", kind=UnitKind.DISTRICT_PC.value,
                                    valid_from=start, parent=session.get(Unit, ids[d["province"]]), rt=rt, actor=SYSTEM).id
        for code, c in communes.items():
            ids[code] = create_unit(session, code=code, name=f"UBND {c['kind'].lower()} {c['name']}", kind=UnitKind.COMMUNE_PC.value,
                                    valid_from=start, parent=session.get(Unit, ids[c["district"]]), rt=rt, actor=SYSTEM).id
    counter.on = False
    seconds = time.perf_counter() - began
    if cases:
        with db.write() as session:
            lead_unit = create_unit(session, code="SKHCN", name="Sở Khoa học và Công nghệ", kind=UnitKind.DEPARTMENT.value,
                                    valid_from=start, parent=session.get(Unit, ids["89"]), is_lead=True, rt=rt, actor=SYSTEM)
            create_user(session, username="lead", role="lead", unit=lead_unit, email="lead@example.org", now=rt.clock.now(), rt=rt, actor=SYSTEM)
            from qmsflow.engine.permissions import Actor
            from qmsflow.engine.users import user_by_name

            lead = Actor.of(user_by_name(session, "lead"))
            for code in [*districts, *communes]:
                open_case(session, rt, lead, session.get(Unit, ids[code]), "qms_lifecycle")
    return len(ids), seconds, counter.count


def _apply(db: Database, rt: Any) -> tuple[int, float, int]:
    from qmsflow.engine.permissions import Actor
    from qmsflow.engine.users import user_by_name

    ops = load_mapping((DATA / "reorganisation-2025.yaml").read_text("utf-8"))
    counter = Statements(db)
    rt.clock.set(local(DAY, 10))
    began = time.perf_counter()
    counter.on = True
    with db.write() as session:
        report = apply(session, rt, Actor.of(user_by_name(session, "lead")), ops)
    counter.on = False
    assert all(r.status == "applied" for r in report.operations)
    return 326, time.perf_counter() - began, counter.count  # the units the mapping touches: 2 + 26 + 298


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print one line per backend."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="both", choices=["sqlite", "postgresql", "both"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        servers = Servers(Path(workdir), postgres_server(None))
        for backend in servers.backends(args.backend):
            per_unit: list[float] = []
            baseline: list[float] = []
            statements = base_statements = 0
            for _ in range(args.rounds):
                with scratch(servers, backend, "reorg") as url:
                    db = migrated(url)
                    rt = runtime(FixedClock(local(date(2025, 6, 2))))
                    units, seconds, base_statements = _build(db, rt, cases=True)
                    baseline.append(seconds / units)
                    units, seconds, statements = _apply(db, rt)
                    per_unit.append(seconds / units)
                    db.dispose()
            ratios = [a / b for a, b in zip(per_unit, baseline, strict=True)]
            print(
                f"{backend}: apply the 2025 mapping: {statistics.median(per_unit) * 1000:.1f} ms per unit "
                f"(range {min(per_unit) * 1000:.1f}-{max(per_unit) * 1000:.1f}), {statements / 326:.1f} statements per unit; "
                f"baseline create_unit {statistics.median(baseline) * 1000:.1f} ms, {base_statements / 326:.1f} statements per unit; "
                f"ratio median {statistics.median(ratios):.1f} (range {min(ratios):.1f}-{max(ratios):.1f}), {args.rounds} rounds"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
