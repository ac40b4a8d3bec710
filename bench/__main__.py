"""``python -m bench``: run the benchmarks, print one table, write ``bench/RESULTS.md``.

    python -m bench                       # everything, SQLite and PostgreSQL (~15 minutes)
    python -m bench --smoke               # tiny sizes, seconds: what CI runs to keep them alive
    python -m bench --only transitions --backend sqlite --scale 0.2   # rewrites only that section of RESULTS.md
    python -m bench --only startup --backend sqlite   # qmsflow --help and cases list against python -c pass
    python -m bench --only web_latency --backend sqlite   # My work and the case page over HTTP against a static file
    python -m bench --only province_pages   # dashboard, searched units list and exports at 5,000 units
    python -m bench.province_pages --country --backend sqlite   # opt-in: 70,000 units, 5,000,000 rows, built once
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from qmsflow.engine.clock import LOCAL_TZ

from . import memory, province_pages, reads, startup, sweep_scale, transitions_rate, web_latency
from .databases import Servers, postgres_server, postgres_version
from .report import Report, Section, load_average, machine_description, write_results

BENCHMARKS: dict[str, tuple[Callable[[Report, Servers, list[str], float, bool], None], list[str]]] = {
    "transitions": (transitions_rate.run, transitions_rate.NOTES),
    "memory": (memory.run, memory.NOTES),
    "sweep": (sweep_scale.run, sweep_scale.NOTES),
    "reads": (reads.run, reads.NOTES),
    "startup": (startup.run, startup.NOTES),
    "web_latency": (web_latency.run, web_latency.NOTES),
    "province_pages": (province_pages.run, province_pages.NOTES),
}


DURABILITY = (
    "Durability: every peer runs with the setting qmsflow ships. SQLite: WAL with synchronous=NORMAL "
    "(qmsflow.engine.db): a commit survives a crash of the application; only an OS crash or a power cut can lose "
    "the last commits, and none can corrupt the file. FULL would add an fsync to every commit, OFF would not survive "
    "an application crash. PostgreSQL: the server's defaults (synchronous_commit=on, fsync=on): each commit waits "
    "for its WAL to reach the disk."
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the benchmarks still run")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="run only this benchmark (repeatable)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size by this factor")
    parser.add_argument("--postgres-url", default=None, help="server to create scratch databases on (default: local)")
    parser.add_argument("--no-write", action="store_true", help="print the table without writing bench/RESULTS.md (--smoke never writes it)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Report:
    """Run what the arguments ask for and return the report (the smoke test calls this)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started, clock = datetime.now(LOCAL_TZ), time.perf_counter()
    pg = postgres_server(args.postgres_url) if args.backend in ("postgresql", "both") else None
    report = Report()
    general = [DURABILITY]
    report.notes.append(DURABILITY)
    machine = machine_description(postgres_version(pg))
    command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="qmsflow-bench-") as workdir:
        servers = Servers(Path(workdir), pg)
        backends = servers.backends(args.backend)
        if args.backend != "sqlite" and pg is None:
            report.notes.append("PostgreSQL was asked for but no server answered: its rows are missing.")
        for name in args.only or list(BENCHMARKS):
            run, notes = BENCHMARKS[name]
            print(f"... {name}", file=sys.stderr, flush=True)
            rows_before, notes_before, sizes_before = len(report.rows), len(report.notes), set(report.sizes)
            began, load, tick = datetime.now(LOCAL_TZ), load_average(), time.perf_counter()
            run(report, servers, backends, args.scale, args.smoke)
            report.notes.extend(notes)
            sections.append(
                Section(
                    name, report.rows[rows_before:], {k: v for k, v in report.sizes.items() if k not in sizes_before},
                    report.notes[notes_before:], began, time.perf_counter() - tick, command, load,
                )
            )
    elapsed = time.perf_counter() - clock
    print(report.table())
    print(f"\n{elapsed:.0f} s in all, started {started:%H:%M}", file=sys.stderr)
    if not (args.no_write or args.smoke):
        path = write_results(sections, machine, general, only=bool(args.only))
        print(f"\nwritten to {path}", file=sys.stderr)
    return report


if __name__ == "__main__":
    result = main()
    sys.exit(0 if result.checks_passed else 1)
