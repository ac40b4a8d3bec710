"""The qmsflow engine: definitions, one shared machine each, cases, history, timers, calendar.

No Flask here and no APScheduler (only ``engine.scheduling`` may wrap it). A case can be run through
its whole life from a Python shell with a session, a Runtime and an Actor.
"""

from .actions import AllowedEvent, allowed_events
from .calendar import CalendarOverrides, LengthUnit, WorkingCalendar, add_months, deadline_instant
from .caselist import CaseFilter, CasePage, CaseRow, count_cases, list_page
from .cases import Advanced, advance, get_case, list_cases, open_case, open_obligations, pending_timers
from .clock import LOCAL_TZ, Clock, FixedClock, SystemClock, local_date
from .db import Database, make_engine
from .deadlines import Deadline, case_deadlines, upcoming_deadlines
from .definitions import Definition, Role, Target, load_definition, load_directory, parse_definition
from .errors import (
    ConditionError,
    ConfigurationError,
    Conflict,
    DatabaseBusy,
    DatabaseUnavailable,
    DefinitionError,
    DefinitionProblem,
    FieldProblem,
    GuardFailed,
    InvalidTransition,
    NotFound,
    NotPermitted,
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
    "InboxEntry",
    "InboxPage",
    "InvalidTransition",
    "LengthUnit",
    "NotFound",
    "NotPermitted",
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
