"""What a view reaches besides the request: the settings, the database and the runtime of this app.

``create_app`` puts one ``WebServices`` into ``app.extensions["qmsflow"]``; views call ``services()``
and open their own transaction (``with services().db.write() as session:``), as the CLI does.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from ..config import Settings
from ..engine.db import Database
from ..engine.runtime import Runtime


@dataclass(frozen=True)
class WebServices:
    """The app's settings, database and runtime."""

    settings: Settings
    db: Database
    rt: Runtime

    def __getitem__(self, name: str) -> object:
        """``app.extensions["qmsflow"]["db"]``, as code from before this class reads it."""
        return getattr(self, "rt" if name == "runtime" else name)


def services() -> WebServices:
    """The services of the current app."""
    found: WebServices = current_app.extensions["qmsflow"]
    return found


__all__ = ["WebServices", "services"]
