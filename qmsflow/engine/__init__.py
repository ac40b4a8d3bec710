"""The qmsflow engine: definitions, one shared machine each, cases, history, timers, calendar.

No Flask here and no APScheduler (only ``engine.scheduling`` may wrap it). A case can be run through
its whole life from a Python shell with a session, a Runtime and an Actor.

The names below are imported on first use (PEP 562), so that `import qmsflow.engine.calendar` or
a command that needs three modules does not pay for all of them; see docs/architecture.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .actions import AllowedEvent, allowed_events
    from .calendar import CalendarOverrides, LengthUnit, WorkingCalendar, add_months, deadline_instant
    from .caselist import CaseFilter, CasePage, CaseRow, count_cases, list_page
    from .cases import Advanced, advance, get_case, list_cases, open_case, open_obligations, pending_timers
    from .clock import LOCAL_TZ, Clock, FixedClock, SystemClock, local_date
    from .db import Database, make_engine
    from .deadlines import Deadline, case_deadlines, upcoming_deadlines
    from .definitions import Definition, Role, Target, load_definition, load_directory, parse_definition
    from .errors import (
        CalendarMismatch,
        ConditionError,
        ConfigurationError,
        Conflict,
        DatabaseBusy,
        DatabaseUnavailable,
        DefinitionError,
        DefinitionProblem,
        FieldProblem,
        GuardFailed,
        ImportRefused,
        InvalidTransition,
        NotFound,
        NotPermitted,
        PeriodOverlap,
        QmsflowError,
        StaleVersion,
        ValidationFailed,
    )
    from .history import AuditFinding, verify_all
    from .inbox import InboxEntry, InboxPage, inbox_page, mark_all_read, mark_read
    from .permissions import (
        SYSTEM,
        Actor,
        AdminArea,
        Decision,
        Scope,
        decide,
        may_administer,
        require_admin,
        scope_clause,
        visible_unit_ids,
        visible_units,
    )
    from .registry import Registry
    from .runtime import Runtime
    from .timeline import TimelineEntry, case_timeline

# name -> the module of this package that defines it
_HOME = {
    "Actor": "permissions",
    "AdminArea": "permissions",
    "Advanced": "cases",
    "AllowedEvent": "actions",
    "AuditFinding": "history",
    "CalendarOverrides": "calendar",
    "CaseFilter": "caselist",
    "CasePage": "caselist",
    "CaseRow": "caselist",
    "Clock": "clock",
    "ConditionError": "errors",
    "CalendarMismatch": "errors",
    "ConfigurationError": "errors",
    "Conflict": "errors",
    "Database": "db",
    "DatabaseBusy": "errors",
    "DatabaseUnavailable": "errors",
    "Deadline": "deadlines",
    "Decision": "permissions",
    "Definition": "definitions",
    "DefinitionError": "errors",
    "DefinitionProblem": "errors",
    "FieldProblem": "errors",
    "FixedClock": "clock",
    "GuardFailed": "errors",
    "ImportRefused": "errors",
    "InboxEntry": "inbox",
    "InboxPage": "inbox",
    "InvalidTransition": "errors",
    "LOCAL_TZ": "clock",
    "LengthUnit": "calendar",
    "NotFound": "errors",
    "NotPermitted": "errors",
    "PeriodOverlap": "errors",
    "QmsflowError": "errors",
    "Registry": "registry",
    "Role": "definitions",
    "Runtime": "runtime",
    "SYSTEM": "permissions",
    "Scope": "permissions",
    "StaleVersion": "errors",
    "SystemClock": "clock",
    "Target": "definitions",
    "TimelineEntry": "timeline",
    "ValidationFailed": "errors",
    "WorkingCalendar": "calendar",
    "add_months": "calendar",
    "advance": "cases",
    "allowed_events": "actions",
    "case_deadlines": "deadlines",
    "case_timeline": "timeline",
    "count_cases": "caselist",
    "deadline_instant": "calendar",
    "decide": "permissions",
    "get_case": "cases",
    "inbox_page": "inbox",
    "list_cases": "cases",
    "list_page": "caselist",
    "load_definition": "definitions",
    "load_directory": "definitions",
    "local_date": "clock",
    "make_engine": "db",
    "mark_all_read": "inbox",
    "mark_read": "inbox",
    "may_administer": "permissions",
    "open_case": "cases",
    "open_obligations": "cases",
    "parse_definition": "definitions",
    "pending_timers": "cases",
    "require_admin": "permissions",
    "scope_clause": "permissions",
    "upcoming_deadlines": "deadlines",
    "verify_all": "history",
    "visible_unit_ids": "permissions",
    "visible_units": "permissions",
}

__all__ = [
    "LOCAL_TZ",
    "SYSTEM",
    "Actor",
    "AdminArea",
    "Advanced",
    "AllowedEvent",
    "AuditFinding",
    "CalendarOverrides",
    "CaseFilter",
    "CasePage",
    "CaseRow",
    "Clock",
    "ConditionError",
    "CalendarMismatch",
    "ConfigurationError",
    "Conflict",
    "Database",
    "DatabaseBusy",
    "DatabaseUnavailable",
    "Deadline",
    "Decision",
    "Definition",
    "DefinitionError",
    "DefinitionProblem",
    "FieldProblem",
    "FixedClock",
    "GuardFailed",
    "ImportRefused",
    "InboxEntry",
    "InboxPage",
    "InvalidTransition",
    "LengthUnit",
    "NotFound",
    "NotPermitted",
    "PeriodOverlap",
    "QmsflowError",
    "Registry",
    "Role",
    "Runtime",
    "Scope",
    "StaleVersion",
    "SystemClock",
    "Target",
    "TimelineEntry",
    "ValidationFailed",
    "WorkingCalendar",
    "add_months",
    "advance",
    "allowed_events",
    "case_deadlines",
    "case_timeline",
    "count_cases",
    "deadline_instant",
    "decide",
    "get_case",
    "inbox_page",
    "list_cases",
    "list_page",
    "load_definition",
    "load_directory",
    "local_date",
    "make_engine",
    "mark_all_read",
    "mark_read",
    "may_administer",
    "open_case",
    "open_obligations",
    "parse_definition",
    "pending_timers",
    "require_admin",
    "scope_clause",
    "upcoming_deadlines",
    "verify_all",
    "visible_unit_ids",
    "visible_units",
]


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use, and keep the name here."""
    try:
        module = _HOME[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
