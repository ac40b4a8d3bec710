"""The loaded definitions, each compiled once into its shared machine, looked up by name and version."""

from __future__ import annotations

from pathlib import Path

from .definitions import Definition, load_directory
from .errors import DefinitionError, NotFound
from .machine import CompiledMachine


class Registry:
    """Every definition version qmsflow can run, and its one machine."""

    def __init__(self, definitions: list[Definition]) -> None:
        self._machines = {d.key: CompiledMachine(d) for d in definitions}

    @classmethod
    def from_directory(cls, directory: str | Path, *, cache_dir: Path | None = None) -> Registry:
        """Load a folder of definitions; refuse to start if any of them is invalid."""
        definitions, problems = load_directory(directory, cache_dir=cache_dir)
        if problems:
            raise DefinitionError(problems)
        return cls(definitions)

    def machine(self, name: str, version: int) -> CompiledMachine:
        """Return the compiled machine of ``name`` at ``version``."""
        try:
            return self._machines[(name, version)]
        except KeyError:
            raise NotFound("workflow", f"{name} v{version}") from None

    def get(self, name: str, version: int) -> Definition:
        """Return the definition of ``name`` at ``version``."""
        return self.machine(name, version).definition

    def latest(self, name: str) -> Definition:
        """Return the newest version of ``name``: what new cases start on."""
        versions = [v for (n, v) in self._machines if n == name]
        if not versions:
            raise NotFound("workflow", name)
        return self.get(name, max(versions))

    def definitions(self) -> list[Definition]:
        """Return every loaded definition, by name then version."""
        return [self._machines[k].definition for k in sorted(self._machines)]


__all__ = ["Registry"]
