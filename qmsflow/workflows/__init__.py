"""The shipped workflow definitions, as data files beside this module."""

from pathlib import Path

DIRECTORY = Path(__file__).parent

__all__ = ["DIRECTORY"]
