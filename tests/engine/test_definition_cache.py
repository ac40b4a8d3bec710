"""The parse cache of definitions (qmsflow/engine/definitions.py, ``_ParseCache``): a read-only command
skips ruamel, and nothing the cache holds can change what a definition means or how a problem reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qmsflow.engine import definitions
from qmsflow.engine.definitions import load_definition, load_directory
from qmsflow.engine.errors import DefinitionError

SHIPPED = Path(definitions.__file__).parent.parent / "workflows"


def _no_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any YAML parse fail loudly, so a test sees whether the cache answered."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the YAML was parsed")

    import ruamel.yaml

    monkeypatch.setattr(ruamel.yaml, "YAML", refuse)


def test_a_cached_definition_is_the_definition_the_yaml_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed, problems = load_directory(SHIPPED)
    assert not problems and parsed
    first, _ = load_directory(SHIPPED, cache_dir=tmp_path)  # fills the cache
    assert len(list(tmp_path.glob("*.json"))) == len(parsed)
    _no_yaml(monkeypatch)
    cached, problems = load_directory(SHIPPED, cache_dir=tmp_path)
    assert not problems
    for plain, hit in zip(parsed, cached, strict=True):
        assert hit.spec == plain.spec
        assert hit.key == plain.key
        assert [(t.event, t.source, t.dest) for t in hit.transitions] == [(t.event, t.source, t.dest) for t in plain.transitions]


def test_an_edited_file_misses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = SHIPPED / "corrective_action.v1.yaml"
    copy = tmp_path / "wf" / source.name
    copy.parent.mkdir()
    (tmp_path / "cache").mkdir()
    copy.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    load_definition(copy, cache_dir=tmp_path / "cache")
    copy.write_text(source.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    _no_yaml(monkeypatch)
    with pytest.raises(AssertionError, match="the YAML was parsed"):
        load_definition(copy, cache_dir=tmp_path / "cache")


def test_a_bad_definition_is_never_cached_and_keeps_its_line_numbers(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: 1\nstates:\n  a:\n    kind: nonsense\n", encoding="utf-8")
    (tmp_path / "cache").mkdir()
    with pytest.raises(DefinitionError) as without:
        load_definition(bad)
    with pytest.raises(DefinitionError) as with_cache:
        load_definition(bad, cache_dir=tmp_path / "cache")
    assert [str(p) for p in with_cache.value.problems] == [str(p) for p in without.value.problems]
    assert any(p.line is not None and p.line > 1 for p in with_cache.value.problems)
    assert not list((tmp_path / "cache").iterdir())


def test_a_missing_cache_folder_is_not_created(tmp_path: Path) -> None:
    parsed, problems = load_directory(SHIPPED, cache_dir=tmp_path / "cache")
    assert parsed and not problems and not (tmp_path / "cache").exists()


def test_an_entry_that_does_not_compile_is_ignored(tmp_path: Path) -> None:
    # The invariant's second half: an entry is used only if it compiles; a corrupt or foreign entry
    # (here: valid JSON with the wrong shape, then not JSON at all) falls back to the YAML.
    source = SHIPPED / "corrective_action.v1.yaml"
    cache = tmp_path / "cache"
    cache.mkdir()
    expected = load_definition(source, cache_dir=cache)
    (entry,) = cache.glob("*.json")
    for junk in (json.dumps({"name": 5}), "{not json"):
        entry.write_text(junk, encoding="utf-8")
        assert load_definition(source, cache_dir=cache).spec == expected.spec
    assert load_definition(source, cache_dir=cache).spec == expected.spec


def test_data_that_json_would_change_is_not_cached(tmp_path: Path) -> None:
    # The invariant's first half: an entry holds exactly what was parsed. A date survives YAML but not
    # JSON, so a file with one is parsed every time rather than cached as a string.
    cache = definitions._ParseCache(tmp_path, "text")
    cache.write({"day": __import__("datetime").date(2026, 1, 1)})
    cache.write({1: "integer key"})
    assert not list(tmp_path.glob("*.json"))
    cache.write({"fine": [1, "two", None, True]})
    assert cache.read() == {"fine": [1, "two", None, True]}


def test_an_unwritable_cache_folder_is_ignored(tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the folder would be", encoding="utf-8")
    parsed, problems = load_directory(SHIPPED, cache_dir=blocker)
    assert parsed and not problems


def test_importing_one_engine_module_does_not_import_the_others() -> None:
    # qmsflow/engine/__init__.py resolves its names on first use (PEP 562).
    probe = (
        "import sys\n"
        "import qmsflow.engine.calendar\n"
        "print(sorted(m for m in ('sqlalchemy', 'holidays', 'ruamel.yaml', 'qmsflow.engine.cases') if m in sys.modules))\n"
        "import qmsflow.engine as e\n"
        "assert all(getattr(e, n) is getattr(sys.modules['qmsflow.engine.' + e._HOME[n]], n) for n in e.__all__)\n"
        "assert sorted(e.__all__) == sorted(e._HOME)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["[]", "ok"]
