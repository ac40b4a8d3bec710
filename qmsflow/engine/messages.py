"""The words of reminders, escalations and digests: a notification's parameters, rendered per reader.

A reminder or an escalation is stored as its kind and parameters (``notification_params``), the
labels in both languages; ``render`` turns them into a subject and a body in one reader's language
at routing, inbox or digest time. The sentences themselves are in the gettext catalogues
(qmsflow/engine/language.py, ``MESSAGES``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from .clock import LOCAL_TZ
from .definitions import Definition
from .language import message
from .models import Case, Notification, Timer, Unit
from .timers import timer_key

PARAMS_VERSION = 1


def text(language: str, key: str, **values: object) -> str:
    """Return the template ``key`` in ``language`` (Vietnamese unless English), filled in."""
    return message("en" if language == "en" else "vi", key, **values)


def notification_params(
    session: Session, definition: Definition, case: Case, timer: Timer, kind: str, level: int
) -> dict[str, Any]:
    """Return what a reminder or an escalation of ``case``'s ``timer`` says, in both languages at once."""
    unit = session.get(Unit, case.unit_id)
    return {
        "v": PARAMS_VERSION,
        "kind": kind,
        "level": level,
        "case": case.id,
        "unit": unit.name if unit else str(case.unit_id),
        "workflow": definition.spec.label.model_dump(),
        "state": definition.spec.states[case.state].label.model_dump(),
        "timer": definition.timer_spec(timer_key(timer)).label.model_dump(),
        "due": timer.due_date.isoformat(),
    }


def render(params: dict[str, Any], language: str) -> tuple[str, str]:
    """Return the subject and body that ``params`` (``notification_params``) say, in ``language``."""
    language = "en" if language == "en" else "vi"

    def pick(label: Any) -> str:
        return str(label.get(language) if isinstance(label, dict) else label)

    kind, level = params["kind"], params["level"]
    timer = pick(params["timer"])
    subject = text(language, kind, timer=timer, unit=params["unit"], level=level)
    body = text(
        language, "body", case=params["case"], workflow=pick(params["workflow"]), unit=params["unit"],
        state=pick(params["state"]), timer=timer, due=date.fromisoformat(params["due"]).strftime("%d/%m/%Y"),
        extra=text(language, f"{kind}_extra", level=level),
    )
    return subject[:255], body


def render_notification(notification: Notification, language: str) -> tuple[str, str]:
    """Return a stored notification's subject and body in ``language``; a row without params as stored."""
    if not notification.params:
        return notification.subject, notification.body
    return render(notification.params, language)


def compose(
    session: Session, language: str, definition: Definition, case: Case, timer: Timer, kind: str, level: int
) -> tuple[str, str]:
    """Return the subject and body of a reminder or an escalation for ``case``'s ``timer`` in ``language``."""
    return render(notification_params(session, definition, case, timer, kind, level), language)


def local_time(at: datetime) -> str:
    """Return an instant as dd/mm/yyyy HH:MM in Vietnam."""
    return at.astimezone(LOCAL_TZ).strftime("%d/%m/%Y %H:%M")


__all__ = ["compose", "local_time", "notification_params", "render", "render_notification", "text"]
