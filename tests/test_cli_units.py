"""`qmsflow units import/export`: bad rows listed on stderr with exit 2 and nothing written; one-time passwords printed once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from qmsflow.engine import Database
from tests.conftest import Province, rows_committed

Runner = Callable[..., Result]
HEADER = "code,name,kind,parent_code,valid_from,is_lead,head_name,head_email,head_phone,iso_officer_name,iso_officer_email,iso_officer_phone"


def test_import_lists_bad_rows_exits_2_and_changes_nothing(run: Runner, db: Database, province: Province, tmp_path: Path) -> None:
    file = tmp_path / "units.csv"
    file.write_text(f"{HEADER}\n80001,UBND xã A,commune_pc,91,2025-07-01,no,,,,,,\n80002,UBND xã B,castle,NOPE,2025-07-01,no,,,,,,\n", "utf-8")
    before = rows_committed(db)
    for extra in ((), ("--dry-run",)):
        result = run("units", "import", str(file), "--as", "admin", "--as-of", "2026-01-05", *extra)
        assert result.exit_code == 2, result.output
        assert "units file, row 3, kind: unknown kind 'castle'" in result.stderr
        assert "units file, row 3, parent_code: no unit NOPE on 2026-01-05" in result.stderr
        assert "nothing changed: 2 problems" in result.stderr
    assert rows_committed(db) == before


def test_import_then_export_then_import_again_changes_nothing(run: Runner, db: Database, province: Province, tmp_path: Path) -> None:
    units, users = tmp_path / "units.csv", tmp_path / "users.csv"
    units.write_text(f"{HEADER}\n80001,UBND xã Vĩnh An,commune_pc,91,2025-07-01,no,Ông A,a@vinhan.example,,,,\n", "utf-8")
    users.write_text("username,full_name,email,role,unit_code,language\niso.vinhan,Bà B,b@vinhan.example,unit_officer,80001,vi\n", "utf-8")
    dry = run("units", "import", str(units), "--users", str(users), "--as", "admin", "--as-of", "2026-01-05", "--dry-run")
    assert dry.exit_code == 0 and "dry run" in dry.output and "1 units to create" in dry.output
    done = run("units", "import", str(units), "--users", str(users), "--as", "admin", "--as-of", "2026-01-05")
    assert done.exit_code == 0, done.output
    assert "one-time passwords" in done.output and "iso.vinhan" in done.output
    out, out_users = tmp_path / "export.xlsx", tmp_path / "users.xlsx"
    exported = run("units", "export", "--format", "xlsx", "--as-of", "2026-01-05", "-o", str(out), "--users", str(out_users))
    assert exported.exit_code == 0, exported.output
    before = rows_committed(db)
    again = run("units", "import", str(out), "--users", str(out_users), "--as", "admin", "--as-of", "2026-01-05")
    assert again.exit_code == 0 and "0 units created, 0 changed; 0 users created, 0 changed" in again.output
    assert "one-time" not in again.output
    assert rows_committed(db) == before
    csv_out = run("units", "export", "--as-of", "2026-01-05")
    assert csv_out.exit_code == 0 and "80001,UBND xã Vĩnh An,commune_pc,91,2025-07-01,no,Ông A" in csv_out.output


def test_bad_arguments_end_in_a_message_and_exit_2(run: Runner, province: Province, tmp_path: Path) -> None:
    assert run("units", "export", "--format", "ods").exit_code == 2
    refused = run("units", "export", "--format", "xlsx")
    assert refused.exit_code == 2 and "needs -o FILE" in refused.output
    assert run("units", "import", str(tmp_path / "missing.csv"), "--as", "admin").exit_code == 2
    file = tmp_path / "u.csv"
    file.write_text(HEADER + "\n", "utf-8")
    assert run("units", "import", str(file), "--as", "admin", "--as-of", "2026-02-30").exit_code == 2
    assert run("units", "import", str(file)).exit_code == 2  # --as is required
    nobody = run("units", "import", str(file), "--as", "nobody")
    assert nobody.exit_code == 4 and "nobody" in nobody.stderr
    officer = run("units", "import", str(file), "--as", "tnh")
    assert officer.exit_code == 3
    lead_users = run("units", "import", str(file), "--users", str(file), "--as", "lead")
    assert lead_users.exit_code == 3
