"""The engine's words in Vietnamese and English: gettext catalogues read with Babel, never Flask.

The engine says what went wrong or what is due as a *code and parameters* (``FieldProblem("number",
"max_length", {"n": 8})``, a notification's kind and params); this module turns them into a
sentence in one person's language, when and where that person reads it: the CLI in its
``--language``, an email in its recipient's, an inbox in its owner's.

The messages are the gettext domain ``qmsflow_engine``: the English text is the message id, and
``qmsflow/translations/{vi,en}/LC_MESSAGES/qmsflow_engine.po`` hold the translations (committed).
A compiled ``.mo`` next to a ``.po`` is used when it is at least as new (``scripts/compile-translations``
writes them; they are not committed); otherwise the ``.po`` is compiled in memory on first use.
A parameter may itself be a text in both languages (``{"vi": ..., "en": ...}``, e.g. a state's
label from a definition): it is rendered in the reader's language too.

See docs/architecture.md, "Language outside the engine".
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import date
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from babel.support import Translations

    from .errors import FieldProblem

LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"
DOMAIN = "qmsflow_engine"
TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"


def N_(message: str) -> str:
    """Mark ``message`` as a message id for the catalogues without translating it here."""
    return message


# Every code a FieldProblem may carry, with its English text (the message id) and its parameters
# in braces. tests/engine/test_language.py checks that each has a translation in each catalogue
# and that every FieldProblem in the code names one of these.
PROBLEMS: dict[str, str] = {
    # submitted data (engine/fields.py)
    "required": N_("required"),
    "max_length": N_("at most {n} characters"),
    "not_in_future": N_("cannot be after today ({today})"),
    "unknown_field": N_("unknown field for this event"),
    "not_an_object": N_("must be an object of field names and values"),
    "not_text": N_("must be text"),
    "not_a_date": N_("must be a date YYYY-MM-DD"),
    "date_with_time": N_("must be a date YYYY-MM-DD, not a date and time"),
    "not_a_real_date": N_("is not a real date"),
    "not_a_whole_number": N_("must be a whole number"),
    "negative": N_("cannot be negative"),
    "not_a_boolean": N_("must be true or false"),
    "not_a_choice": N_("one of {choices}"),
    "unsupported_type": N_("unsupported type {type}"),
    # guards and branches (engine/cases.py, engine/timers.py)
    "guard": N_("{event} cannot be done yet: {reason}"),
    "undecided": N_("missing: the guard cannot be decided without it"),
    "no_branch": N_("no branch condition holds"),
    "start_date_missing": N_("a date is needed to start the deadline"),
    "unit_not_on": N_("{unit} does not exist on {day}"),
    # units, contacts and users (engine/units.py, engine/users.py)
    "unknown_kind": N_("unknown kind {value}; one of {choices}"),
    "after_valid_from": N_("must be after valid_from"),
    "unit_absent_on": N_("the unit does not exist on {day}"),
    "unit_life": N_("the unit exists from {start} to {end}"),
    "no_override": N_("{day} has no override to remove"),
    "override_exists": N_("{day} already has an override: remove it first"),
    "unit_has_open_cases": N_("the unit still has {count} open cases: close or withdraw them first"),
    "no_unit_on": N_("no unit {unit} exists on {day}"),
    "no_unit_before": N_("no unit {unit} exists on the day before {day}"),
    "self_succession": N_("a unit cannot succeed itself"),
    "under_itself": N_("a unit cannot be under itself"),
    "contact_role": N_("must be head or iso_officer"),
    "not_an_email": N_("{value} is not an email address"),
    "username_format": N_("2-64 characters: lower-case letters, digits, . _ -"),
    "one_of": N_("one of {choices}"),
    "unit_needed": N_("a {role} needs a unit"),
    "min_length": N_("at least {n} characters"),
    "unknown_admin_area": N_("unknown administrative area {value}; one of {choices}"),
    # passwords and the users pages (engine/users.py, web/users.py, web/auth.py)
    "page_out_of_range": N_("not a page of this list"),
    "deactivate_self": N_("an administrator cannot deactivate themselves"),
    "user_inactive": N_("the user is deactivated"),
    "password_wrong": N_("not your current password"),
    "password_unchanged": N_("the same as the current one"),
    "password_mismatch": N_("the two new passwords differ"),
    "unit_unknown": N_("no unit {code} today"),
    "username_taken": N_("this username is already taken"),
    # lists, pages and the inbox (engine/caselist.py, engine/cursors.py, engine/inbox.py, engine/deadlines.py)
    "unknown_filter": N_("unknown filter"),
    "a_unit_id": N_("a unit id"),
    "unknown_workflow": N_("unknown workflow {value}"),
    "unknown_state": N_("no state {value} in {workflow}"),
    "text_length": N_("{low} to {high} characters"),
    "integer_range": N_("an integer from {low} to {high}"),
    "aware_instant": N_("an instant with a UTC offset"),
    # webhooks (engine/webhooks.py)
    "bad_url": N_("not an http or https address: {value}"),
    "host_not_allowed": N_("the host {host} is not in the allowed webhook hosts (webhooks.allowed_hosts)"),
    "unknown_event_type": N_("unknown event type {value}; one of {choices}"),
    "unknown_user": N_("no active user {value}"),
    "bad_cursor": N_("not a cursor of this list; start again from the first page"),
    "item_ids": N_("1 to {n} inbox item ids"),
    # evidence files (engine/evidence.py)
    "open_exists": N_("the unit already has an open case of this workflow (case {case_id})"),
    "minutes_required": N_("the signed minutes are required"),
    "date_format": N_("not a date dd/mm/yyyy"),
    "date_unreal": N_("not a real date"),
    "form_version": N_("the case version the form was loaded at"),
    "upload_id": N_("an upload id"),
    "no_such_version": N_("case {case_id} has no version {version}"),
    "file_refused": N_("{reason}"),
    "file_broken": N_("the file is damaged or is not what its type says ({reason})"),
    "file_encrypted": N_("an encrypted PDF cannot be kept as evidence"),
    "file_type": N_("only PDF, JPEG and PNG files are accepted"),
    "file_too_large": N_("larger than the {max_bytes} bytes allowed"),
    "file_empty": N_("the file is empty"),
    "file_name": N_("a file name without control characters is required"),
    "given_twice": N_("an upload is given more than once"),
    # reorganisations (engine/reorganize.py)
    "reorg_changed": N_("operation {key} was applied on {applied} with other content: {difference}"),
    "reorg_future": N_("the effective date {day} is after today ({today})"),
    "reorg_format": N_("{reason}"),
    "reorg_conflict": N_("cannot be done: {reason}"),
    "no_code_on": N_("no unit holds code {code} on {day}"),
    "merged_into_itself": N_("unit {code} cannot be merged into itself"),
    # the import of units and users (engine/unitimport.py)
    "import_empty": N_("the file is empty"),
    "import_unreadable": N_("not a CSV or XLSX file that can be read ({reason})"),
    "import_not_utf8": N_("not UTF-8 text (byte {position}); save the file as CSV UTF-8"),
    "unknown_columns": N_("unknown columns {columns}; the columns are {known}"),
    "missing_columns": N_("missing columns {columns}"),
    "columns_twice": N_("columns given twice: {columns}"),
    "too_many_rows": N_("more than {n} rows"),
    "extra_cells": N_("more cells than the {n} columns of the header"),
    "after_as_of": N_("after the import date {day}"),
    "contact_name_needed": N_("a name is needed with an e-mail or phone"),
    "duplicate_row": N_("the same row as row {row}"),
    "code_twice": N_("the code is also in row {row}"),
    "code_taken": N_("the code is used by {name} from {start} to {end}"),
    "valid_from_differs": N_("the unit has existed since {day}; a reorganisation changes that, not an import"),
    "unknown_parent": N_("no unit {code} on {day}, in the file or the register"),
    "lead_twice": N_("row {row} already names the lead unit"),
    "lead_taken": N_("{name} is the lead unit; mark it no in the file to hand over"),
    "parent_cycle": N_("the parents go round in a circle back to this unit"),
    "username_twice": N_("the username is also in row {row}"),
    "unknown_unit_code": N_("no unit {code} on {day}, in the units file or the register"),
    "import_refused_row": N_("refused: {reason}"),
    # command-line input (qmsflow/cli.py)
    "invalid_json": N_("not valid JSON: {detail}"),
    "json_not_object": N_("JSON data must be an object"),
    "data_item": N_("{item}: use key=value or a JSON object"),
    "no_workflow": N_("no workflow {value}; known: {known}"),
    "no_state": N_("no state {value}; known: {known}"),
    # the JSON API (qmsflow/engine/tokens.py, idempotency.py, qmsflow/web/api)
    "expiry_passed": N_("must be after now ({now})"),
    "idempotency_key": N_("1 to 255 printable ASCII characters"),
    "idempotency_reused": N_("this Idempotency-Key was first used with another request"),
    "not_an_integer_list": N_("must be a list of whole numbers"),
}

# Errors other than field problems, by class name: their typed attributes are the parameters.
ERRORS: dict[str, str] = {
    "NotFound": N_("{kind} {key} not found"),
    "NotPermitted": N_("user {user} may not {action}"),
    "StaleVersion": N_("case {case_id} is at version {actual}, not {expected}: reload it"),
    "InvalidTransition": N_("event {event} cannot fire on case {case_id} in state {state}"),
    "GuardFailed": N_("event {event} refused: {detail}"),
    "ValidationFailed": N_("{detail}"),
}
_NOT_PERMITTED_ON_CASE = N_(" on case {case_id}")

# What a NotFound names, in both languages (``NotFound.kind``).
_KINDS = {
    "case": {"vi": "hồ sơ", "en": "case"},
    "unit": {"vi": "đơn vị", "en": "unit"},
    "user": {"vi": "người dùng", "en": "user"},
    "inbox item": {"vi": "mục trong hộp thư", "en": "inbox item"},
    "unit version": {"vi": "phiên bản của đơn vị", "en": "unit version"},
    "evidence": {"vi": "tệp minh chứng", "en": "evidence"},
    "upload": {"vi": "tệp tải lên", "en": "upload"},
}

# The words of reminders, escalations and digests (engine/messages.py).
MESSAGES: dict[str, str] = {
    "reminder": N_("Reminder: {timer} - {unit}"),
    "escalation": N_("Overdue (level {level}): {timer} - {unit}"),
    "body": N_(
        "Case #{case} ({workflow}) of {unit}\n"
        "Current step: {state}\n"
        "Deadline: {timer}, due by the end of {due}.\n"
        "{extra}"
    ),
    "reminder_extra": N_("Please complete it before the deadline."),
    "escalation_extra": N_("The deadline has passed. This is escalation level {level}."),
    "digest_subject": N_("Your items for {day} ({count})"),
    "digest_intro": N_("Dear {name},\n\nNew notifications in qmsflow:\n"),
    "case_link": N_("Open the case: {url}"),
}


# What the command line prints around the engine's answers (qmsflow/cli.py).
CLI: dict[str, str] = {
    "error": N_("error: {message}"),
    "opened": N_("opened case #{id} ({workflow}, {state})"),
    "created_user": N_("created user {username} ({role}{unit})"),
    "advanced": N_("case #{id}: {event}: {from_state} -> {to_state} (version {version})"),
    "show_case": N_("case #{id}  {unit} ({code})"),
    "show_workflow": N_("workflow {workflow} v{version}  version {case_version}"),
    "show_state": N_("state    {state}: {label}"),
    "show_data": N_("data:"),
    "show_events": N_("events you may fire: {events}"),
    "not_yet": N_("{event} (not yet: {reason})"),
    "show_timer": N_(
        "timer  {name} due {due} (passes {passes}), next step at {next}, {days} working days left{late}"
    ),
    "late": N_(" LATE"),
    "show_obligation": N_("obligation {name} (cycle {cycle}) open since {since}"),
    "show_history": N_("history:"),
    "import_row": N_("{sheet}, row {row}, {column}: {problem}"),
    "import_file": N_("{sheet}: {problem}"),
    "import_refused": N_("import refused, nothing changed: {count} problems"),
    "import_plan": N_("{units_created} units to create, {units_changed} to change; {users_created} users to create, {users_changed} to change; {unchanged} rows as stored"),
    "import_done": N_("imported: {units_created} units created, {units_changed} changed; {users_created} users created, {users_changed} changed; {unchanged} rows as stored"),
    "import_dry_run": N_("dry run: nothing was written"),
    "one_time_passwords": N_("one-time passwords (shown only now; each must be changed at first sign-in):"),
}


class UnknownLanguage(ValueError):
    """A language qmsflow has no catalogue for."""


def check_language(language: str) -> str:
    """Return ``language`` if qmsflow speaks it (``vi`` or ``en``); raise UnknownLanguage otherwise."""
    if language not in LANGUAGES:
        raise UnknownLanguage(f"unknown language {language!r}; one of {list(LANGUAGES)}")
    return language


def catalogue_path(language: str) -> Path:
    """Return the ``.po`` file of ``language``."""
    return TRANSLATIONS / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(language: str) -> Translations:
    """Return the catalogue of ``language``: its compiled ``.mo`` if current, else its ``.po`` compiled in memory."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import Translations

    po = catalogue_path(check_language(language))
    mo = po.with_suffix(".mo")
    if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as f:
            return Translations(f, domain=DOMAIN)
    with po.open("rb") as f:
        catalog = read_po(f, locale=language, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def _localise(value: Any, language: str) -> Any:
    if isinstance(value, Mapping) and set(value) == set(LANGUAGES):
        return value["en" if language == "en" else "vi"]
    if isinstance(value, list | tuple):
        return "[" + ", ".join(repr(_localise(v, language)) for v in value) + "]"
    if isinstance(value, date):
        return value.isoformat()
    return value


def render(language: str, message_id: str, params: Mapping[str, Any] | None = None) -> str:
    """Return ``message_id`` translated into ``language``, its ``{parameters}`` filled in."""
    text = translations(language).gettext(message_id)
    values = {k: _localise(v, language) for k, v in (params or {}).items()}
    try:
        return text.format(**values)
    except (KeyError, IndexError, ValueError):  # a translation that names a parameter the code does not give
        return message_id.format(**values)


def problem_text(problem: FieldProblem, language: str) -> str:
    """Return one field problem as a sentence in ``language``; a code the catalogue lacks is shown as is."""
    template = PROBLEMS.get(problem.code)
    if template is None:
        return problem.code
    return render(language, template, problem.params)


def message(language: str, key: str, **values: Any) -> str:
    """Return the notification text ``key`` (a key of ``MESSAGES``) in ``language``, filled in."""
    return render(language, MESSAGES[key], values)


def describe(error: BaseException, language: str) -> str:
    """Return an engine error as a sentence in ``language``: field problems and typed errors by their
    codes and attributes; an error without a catalogue entry (a conflict's own words) as it says itself."""
    from .errors import GuardFailed, ValidationFailed

    name = type(error).__name__
    if isinstance(error, GuardFailed | ValidationFailed):
        detail = "; ".join(f"{p.field}: {problem_text(p, language)}" for p in error.problems)
        if isinstance(error, GuardFailed):
            return render(language, ERRORS["GuardFailed"], {"event": repr(error.event), "detail": detail})
        return render(language, ERRORS["ValidationFailed"], {"detail": detail})
    template = ERRORS.get(name)
    if template is None:
        return str(error)
    params = {k: repr(v) if k in ("key", "user", "event", "state") else v for k, v in vars(error).items()}
    suffix = ""
    if name == "NotPermitted" and params.get("case_id"):
        suffix = _NOT_PERMITTED_ON_CASE
    english = (render("en", template, params) + (render("en", suffix, params) if suffix else ""))
    if english != str(error):  # a caller gave the error words of its own (e.g. "did you mean ...?"): keep them
        return str(error)
    if name == "NotFound":
        params["kind"] = _KINDS.get(str(params.get("kind")), params.get("kind"))
    return render(language, template, params) + (render(language, suffix, params) if suffix else "")


__all__ = [
    "DEFAULT_LANGUAGE",
    "CLI",
    "DOMAIN",
    "ERRORS",
    "LANGUAGES",
    "MESSAGES",
    "PROBLEMS",
    "UnknownLanguage",
    "N_",
    "catalogue_path",
    "check_language",
    "describe",
    "message",
    "problem_text",
    "render",
    "translations",
]
