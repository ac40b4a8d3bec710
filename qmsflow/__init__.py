"""qmsflow: the workflow engine for ISO 9001 quality management lifecycles of Vietnamese public bodies."""

__version__ = "0.1.0"
__all__ = ["__version__"]
