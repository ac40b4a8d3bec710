"""``qmsflow reorganize``: convert the official data; apply a file, its dry run changing nothing."""

from __future__ import annotations

from pathlib import Path

from tests.engine.test_reorgconvert import MERGES, UNITS


def test_convert_writes_the_mapping_and_reports_the_traps(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out.yaml"
    result = run("reorganize", "convert", "--units", str(UNITS), "--mapping", str(MERGES), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "missing_from_mapping 30622" in result.output and "partial_split 30358" in result.output
    assert "merge-30604" in out.read_text("utf-8")
    broken = tmp_path / "broken.json"
    broken.write_text("{}", "utf-8")
    refused = run("reorganize", "convert", "--units", str(broken), "--mapping", str(MERGES), "-o", str(out))
    assert refused.exit_code == 2 and "Traceback" not in refused.output


def test_apply_dry_run_changes_nothing_and_a_bad_file_is_refused(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("demo", "--as-of", "2026-11-23").exit_code == 0
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "- {op: rename, effective: 2026-11-23, unit: '30301', name: 'UBND phường Mỹ Thới (mới)'}\n"
        "- {op: move, effective: 2026-11-23, unit: THPT-LX, parent: '30307'}\n", "utf-8")
    report = tmp_path / "report.csv"
    dry = run("reorganize", "apply", str(mapping), "--dry-run", "--as", "tdc.lan", "--report", str(report))
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing changed" in dry.output and report.read_text("utf-8").startswith("section,unit_code")
    done = run("reorganize", "apply", str(mapping), "--as", "tdc.lan")
    assert done.exit_code == 0 and "applied 2 operations" in done.output
    again = run("reorganize", "apply", str(mapping), "--as", "tdc.lan")
    assert "applied 0 operations, 2 unchanged" in again.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {op: split, id: bad, effective: 2026-11-23, unit: '99999', primary: '30307'}\n", "utf-8")
    refused = run("reorganize", "apply", str(bad), "--as", "tdc.lan")
    assert refused.exit_code != 0 and "bad" in refused.output and "99999" in refused.output
    assert run("audit", "verify").exit_code == 0
