"""The one table every benchmark adds rows to, the machine it ran on, and ``bench/RESULTS.md``."""

from __future__ import annotations

import os
import platform
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path

RESULTS_FILE = Path(__file__).parent / "RESULTS.md"


@dataclass(frozen=True)
class Target:
    """A bound on a ratio measured in the same run: ``ratio >= bound`` or ``ratio <= bound``.

    With a ``unit`` the bound is on qmsflow's figure itself, in that unit (an issue's absolute
    target, e.g. a page's median under 100 ms); the ratio is then reported beside it, unbounded.
    """

    op: str  # ">=" or "<="
    bound: float
    unit: str | None = None

    def met(self, ratio: float) -> bool:
        """Return whether ``ratio`` (or the figure, for an absolute target) meets the bound."""
        return ratio >= self.bound if self.op == ">=" else ratio <= self.bound

    def __str__(self) -> str:
        return f"{self.op} {_number(self.bound)} {self.unit}" if self.unit else f"{self.op} {_number(self.bound)}x"


@dataclass(frozen=True)
class Row:
    """One line of the table: qmsflow's figure, the baseline's, their ratio and the target it answers.

    ``check`` is the outcome of the final-state check behind the row ("ok", or what differed);
    a row without a target is informational (e.g. a dashboard query against the empty database).
    """

    benchmark: str
    backend: str
    subject: str
    value: float
    baseline: str
    baseline_value: float
    unit: str
    target: Target | None = None
    check: str = "ok"
    note: str = ""

    @property
    def ratio(self) -> float:
        """qmsflow's figure over the baseline's."""
        return self.value / self.baseline_value if self.baseline_value else float("inf")

    @property
    def verdict(self) -> str:
        """met / MISSED / -- (no target), and FAILED when the final-state check did not pass."""
        if self.check != "ok":
            return "FAILED"
        if self.target is None:
            return "--"
        return "met" if self.target.met(self.value if self.target.unit else self.ratio) else "MISSED"


@dataclass
class Report:
    """Everything one run measured, in the order it was measured."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sizes: dict[str, str] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        """Add a row and return it."""
        self.rows.append(row)
        return row

    @property
    def checks_passed(self) -> bool:
        """Whether every final-state check passed."""
        return all(r.check == "ok" for r in self.rows)

    def table(self) -> str:
        """Return the rows as one Markdown table."""
        header = ["benchmark", "backend", "qmsflow", "baseline", "ratio", "target", "result", "final states"]
        lines = [header]
        for r in self.rows:
            lines.append(
                [
                    r.benchmark,
                    r.backend,
                    f"{_number(r.value)} {r.unit}",
                    f"{r.baseline}: {_number(r.baseline_value)} {r.unit}",
                    f"{_number(r.ratio)}x",
                    str(r.target) if r.target else "--",
                    r.verdict,
                    r.check,
                ]
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in lines]
        out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(out)


def _number(x: float) -> str:
    if x == float("inf"):
        return "inf"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


# ----------------------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_description(postgres_version: str | None) -> list[str]:
    """Return the facts a reader needs to compare a run with theirs, one per line."""
    load = load_average()
    return [
        f"CPU: {_cpu_model()}, {os.cpu_count()} cores",
        f"RAM: {_ram_gib()}",
        f"OS: {platform.system()} {platform.release()}",
        f"Python: {platform.python_version()} ({platform.python_implementation()})",
        f"SQLite: {sqlite3.sqlite_version} (WAL, synchronous=NORMAL for every peer)",
        f"PostgreSQL: {postgres_version or 'not used in this run'}",
        "Libraries: "
        + ", ".join(
            f"{p} {_version(p)}" for p in ("SQLAlchemy", "transitions", "SpiffWorkflow", "psycopg")
        ),
        f"Load average when the run started: {load}",
    ]


@dataclass(frozen=True)
class Section:
    """What one benchmark added to the report in one run: its own part of ``bench/RESULTS.md``."""

    name: str
    rows: list[Row]
    sizes: dict[str, str]
    notes: list[str]
    started: datetime
    elapsed_s: float
    command: str
    load: str

    def text(self) -> str:
        """Return the section, between the markers ``--only`` finds it by."""
        part = Report(rows=self.rows)
        return "\n".join(
            [
                f"<!-- bench:{self.name} -->",
                f"### {self.name}",
                "",
                f"Run on {self.started:%Y-%m-%d %H:%M} ({self.started.tzinfo}) with `{self.command}`, in {self.elapsed_s:.0f} s "
                f"(load average when it started: {self.load}).",
                "",
                part.table() if self.rows else "(no rows)",
                "",
                *[f"- Size, {k}: {v}" for k, v in self.sizes.items()],
                *[f"- {n}" for n in self.notes],
                f"<!-- /bench:{self.name} -->",
            ]
        )


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages, as the kernel reports them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


_SECTION = re.compile(r"<!-- bench:(?P<name>[a-z_]+) -->.*?<!-- /bench:(?P=name) -->", re.S)


def write_results(
    sections: list[Section], machine: list[str], general_notes: list[str], *, only: bool, path: Path = RESULTS_FILE
) -> Path:
    """Write ``bench/RESULTS.md``: the whole file, or with ``only`` just the sections of the benchmarks run.

    With ``only``, every other benchmark's section (with its own run date, command and load) is kept as
    it is; a section not in the file yet is added at the end of the results.
    """
    existing = path.read_text("utf-8") if path.exists() else ""
    if only and _SECTION.search(existing):
        text = existing
        for section in sections:
            pattern = re.compile(rf"<!-- bench:{section.name} -->.*?<!-- /bench:{section.name} -->", re.S)
            found = pattern.search(text)
            if found:
                text = text[: found.start()] + section.text() + text[found.end() :]
            else:
                marker = "\n## Notes\n"
                at = text.index(marker) if marker in text else len(text)
                text = text[:at].rstrip("\n") + "\n\n" + section.text() + "\n" + text[at:]
        path.write_text(text, encoding="utf-8")
        return path
    lines = [
        "# Benchmark results",
        "",
        "Every ratio is qmsflow over a baseline measured in the same run; \"final states\" says whether "
        "every peer ended every case in the same state as qmsflow (checked after the run, not assumed). "
        "Each benchmark's section says when and with which command it last ran: `python -m bench --only NAME` "
        "rewrites that section alone.",
        "",
        "## Machine",
        "",
        *[f"- {m}" for m in machine],
        "",
        "## Results",
        "",
        *[part for section in sections for part in (section.text(), "")],
        "## Notes",
        "",
        *[f"- {n}" for n in general_notes],
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


__all__ = ["RESULTS_FILE", "Report", "Row", "Section", "Target", "load_average", "machine_description", "write_results"]
