"""The benchmarks still run: ``python -m bench --smoke`` in-process, every final-state check passing.

Benchmarks are not tests. This keeps them alive in CI at tiny sizes and asserts no timing at all:
only that the table comes out with every benchmark in it and every peer ended where qmsflow did.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.report import RESULTS_FILE
from tests.conftest import REQUIRE_ALL, SKIPPED_SUITES

BENCHMARKS = ("transitions/s", "memory per", "sweep, nothing due", "due reminders fired/s", "dashboard:", "start-up:", "web:")


def _assert_complete(report, backend: str, printed: str) -> None:
    assert report.rows, "no rows"
    assert {row.backend for row in report.rows} == {backend}
    for prefix in BENCHMARKS:
        assert any(row.benchmark.startswith(prefix) for row in report.rows), f"no {prefix!r} row"
    failed = [f"{row.benchmark}: {row.check}" for row in report.rows if row.check != "ok"]
    assert failed == []
    assert report.table().splitlines()[0].startswith("| benchmark")
    assert "| benchmark" in printed


def test_the_smoke_run_on_sqlite_completes_with_every_check_passing(capsys: pytest.CaptureFixture[str]) -> None:
    before = RESULTS_FILE.read_text("utf-8") if RESULTS_FILE.exists() else None
    report = main(["--smoke", "--backend", "sqlite"])
    _assert_complete(report, "sqlite", capsys.readouterr().out)
    # a smoke run never overwrites the real results
    assert (RESULTS_FILE.read_text("utf-8") if RESULTS_FILE.exists() else None) == before


def test_the_smoke_run_on_postgresql_completes_with_every_check_passing(
    postgres_url: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    if postgres_url is None:
        SKIPPED_SUITES["postgresql"] = "PostgreSQL not reachable (bench smoke)"
        if REQUIRE_ALL:
            pytest.fail("PostgreSQL suite required but unavailable")
        pytest.skip("no PostgreSQL server")
    report = main(["--smoke", "--backend", "postgresql", "--postgres-url", postgres_url])
    _assert_complete(report, "postgresql", capsys.readouterr().out)


def test_the_web_latency_smoke_run_times_every_page_over_http_on_a_verified_chain(capsys: pytest.CaptureFixture[str]) -> None:
    # `qmsflow serve` on a seeded instance whose chains passed `qmsflow audit verify`: a row per page and figure, every check ok
    report = main(["--smoke", "--only", "web_latency", "--backend", "sqlite"])
    rows = [row.benchmark for row in report.rows]
    for page in ("My work, supervisor of 10 units", "My work, the lead", "case page, supervisor"):
        assert any(r.startswith(f"web: {page}, median (rounds ") for r in rows), page
        assert f"web: {page}, p95" in rows
    assert len(rows) == 6
    assert all(row.check == "ok" and row.unit == "ms" and row.target is not None and row.target.unit == "ms" for row in report.rows)
    assert "audit verify`: ok: 59 cases, 900 history rows" in report.sizes["web_latency (sqlite)"]
    assert "| web: My work, the lead, p95" in capsys.readouterr().out


def test_only_rewrites_the_section_of_the_benchmarks_it_ran(tmp_path: Path) -> None:
    from bench.report import Row, Section, write_results

    def section(name: str, value: float) -> Section:
        row = Row(f"{name} row", "sqlite", "qmsflow", value, "floor", 1.0, "/s")
        return Section(name, [row], {name: "tiny"}, [f"{name} note"], datetime(2026, 12, 3, 9, 0, tzinfo=UTC), 1.0, "cmd", "0.1")

    path = tmp_path / "RESULTS.md"
    write_results([section("transitions", 2.0), section("sweep", 3.0)], ["CPU: x"], ["general"], only=False, path=path)
    write_results([section("sweep", 7.0), section("startup", 5.0)], ["CPU: y"], ["general"], only=True, path=path)
    text = path.read_text("utf-8")
    assert "| transitions row" in text and "2.00 /s" in text  # kept as it was
    assert "7.00 /s" in text and "3.00 /s" not in text  # replaced
    assert text.count("<!-- bench:sweep -->") == 1
    assert text.index("<!-- bench:startup -->") < text.index("## Notes")  # a missing section is added
    assert "CPU: x" in text  # the machine of the full run stays


def test_the_province_pages_smoke_run_times_the_dashboard_list_and_exports_and_explains_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # issue 16's pages over HTTP on a verified chain: a median and a p95 row each, targets on all but the whole-province exports
    report = main(["--smoke", "--only", "province_pages", "--backend", "sqlite"])
    rows = [row.benchmark for row in report.rows]
    assert len(rows) == 14
    assert all(row.check == "ok" and row.unit == "ms" for row in report.rows)
    assert sum(row.target is not None for row in report.rows) == 10
    assert "audit verify`: ok: 59 cases, 900 history rows" in report.sizes["province_pages (sqlite)"]
    assert any("SEARCH" in note and "Access paths" in note for note in report.notes)  # EXPLAIN QUERY PLAN printed
    assert "| province_pages: dashboard, today, p95" in capsys.readouterr().out
