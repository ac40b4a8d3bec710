"""Signed webhooks: subscriptions, fan-out of event rows to deliveries, sending at least once with backoff.

An administrator subscribes a URL to event types (qmsflow/engine/events.py) *as a user*: the
subscription hears only of cases that user sees, and its payloads show the case as that user would.
Event rows are written in the transaction of what they report; the dispatcher, a job of the
scheduler, fans each one out to the matching subscriptions (``fan_out``, one transaction per
bounded batch) and sends the deliveries outside any transaction (``send_due``), as email is sent
(qmsflow/engine/notifications.py): a batch is claimed with a lease and committed, posted, and each
outcome recorded in a second short transaction. A dispatcher that dies in between leaves the lease
to run out, and the delivery goes out again under the same ``webhook-id``: at least once.

Signatures follow the Standard Webhooks specification with the ``standardwebhooks`` package
(headers ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``). While a rotated secret's
overlap lasts, both the new and the previous secret sign (two signatures in the header), so a
receiver may switch keys at its own pace.

Outcomes: a 2xx answer delivers; 410 Gone unsubscribes the subscription; anything else (another
status, a refused connection, a timeout, a redirect, which is never followed) is retried with
exponential backoff on the injected clock, until ``give_up_hours`` after the delivery was made:
then the delivery is failed, the subscription disabled, and the administrators told (the admin log
and an email to each active administrator with an address). Every try is a row of the delivery log.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import Table, insert, or_, select, update
from sqlalchemy.orm import Session

from . import adminlog
from .clock import local_date
from .db import Database
from .errors import FieldProblem, NotFound, ValidationFailed
from .events import TYPES
from .models import Case, EmailMessage, Event, User, WebhookAttempt, WebhookDelivery, WebhookSubscription
from .permissions import SYSTEM, Actor, require_admin, scope_clause
from .runtime import Runtime

log = logging.getLogger(__name__)

MAX_URL = 2000
MAX_ERROR = 1000
USER_AGENT = "qmsflow-webhooks/1"


@dataclass(frozen=True)
class WebhookSettings:
    """The ``[webhooks]`` settings (qmsflow/config/defaults.toml)."""

    enabled: bool = True  # False: no scheduler runs the dispatcher (events wait, undispatched)
    # Host names a subscription may post to; ".example.vn" also admits its subdomains. Empty: none.
    allowed_hosts: tuple[str, ...] = ()
    timeout_seconds: float = 10
    retry_initial_seconds: int = 30
    retry_max_seconds: int = 3600
    give_up_hours: int = 24
    lease_seconds: int = 300
    batch_size: int = 100
    batches_per_cycle: int = 10
    rotation_overlap_hours: int = 24

    def allows(self, host: str) -> bool:
        """Whether ``host`` is one of the allowed hosts (or under an allowed ``.domain``)."""
        host = host.lower().rstrip(".")
        for allowed in self.allowed_hosts:
            allowed = allowed.lower().rstrip(".")
            if host == allowed.lstrip(".") or (allowed.startswith(".") and host.endswith(allowed)):
                return True
        return False


# A function that posts ``body`` with ``headers`` and returns the HTTP status, or raises OSError.
Transport = Callable[[str, bytes, Mapping[str, str], float], int]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # a redirect could lead outside the allowed hosts
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """Post with the standard library; return the status (an error status included); OSError when no answer."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def new_secret() -> str:
    """Return a fresh signing secret in the Standard Webhooks form ``whsec_<base64 of 32 bytes>``."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _problem(field: str, code: str, **params: object) -> ValidationFailed:
    return ValidationFailed([FieldProblem(field, code, params)])


def check_url(url: object, settings: WebhookSettings) -> str:
    """Return the URL if it is http(s) to an allowed host; ValidationFailed naming the problem otherwise."""
    if not isinstance(url, str) or not url.strip() or len(url) > MAX_URL:
        raise _problem("url", "text_length", low=1, high=MAX_URL)
    url = url.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (a malformed port raises here)
    except ValueError:
        raise _problem("url", "bad_url", value=repr(url)) from None
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        raise _problem("url", "bad_url", value=repr(url))
    if not settings.allows(host):
        raise _problem("url", "host_not_allowed", host=host)
    return url


def check_event_types(event_types: Iterable[object]) -> list[str]:
    """Return the event types, deduplicated in the order of ``events.TYPES``; ValidationFailed when unknown or none."""
    given = list(event_types)
    unknown = [t for t in given if t not in TYPES]
    if unknown or not given:
        raise _problem("events", "unknown_event_type", value=repr(unknown[0] if unknown else ""), choices=list(TYPES))
    return [t for t in TYPES if t in given]


def subscribe(
    session: Session,
    rt: Runtime,
    actor: Actor,
    settings: WebhookSettings,
    *,
    url: object,
    username: str,
    event_types: Iterable[object],
) -> tuple[WebhookSubscription, str]:
    """Subscribe ``url`` to ``event_types`` seen as user ``username``; return it and its secret (shown once)."""
    require_admin(actor, "webhooks")
    clean_url = check_url(url, settings)
    types = check_event_types(event_types)
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        raise _problem("as", "unknown_user", value=repr(username))
    now = rt.clock.now()
    secret = new_secret()
    sub = WebhookSubscription(
        url=clean_url, event_types=types, user_id=user.id, secret=secret, status="active",
        created_at=now, created_by=actor.username, changed_at=now,
    )
    session.add(sub)
    session.flush()
    adminlog.record(
        session, rt.history_key, actor, at=now, action="webhook.subscribe", object_kind="webhook", object_id=sub.id,
        before=None, after={"url": clean_url, "events": types, "as": username},
    )
    return sub, secret


def get_subscription(session: Session, actor: Actor, subscription_id: int) -> WebhookSubscription:
    """Return a subscription (administrators only); NotFound otherwise."""
    require_admin(actor, "webhooks")
    sub = session.get(WebhookSubscription, subscription_id)
    if sub is None:
        raise NotFound("webhook", subscription_id)
    return sub


def subscriptions(session: Session, actor: Actor) -> list[WebhookSubscription]:
    """Return every subscription, oldest first (administrators only)."""
    require_admin(actor, "webhooks")
    return list(session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.id)))


def _set_status(session: Session, rt: Runtime, actor: Actor, sub: WebhookSubscription, status: str, reason: str | None, now: datetime) -> None:
    before = {"status": sub.status}
    sub.status, sub.status_reason, sub.changed_at = status, reason, now
    adminlog.record(
        session, rt.history_key, actor, at=now, action=f"webhook.{status}", object_kind="webhook", object_id=sub.id,
        before=before, after={"status": status, "reason": reason},
    )


def disable(session: Session, rt: Runtime, actor: Actor, subscription_id: int) -> WebhookSubscription:
    """Stop sending to a subscription; its pending deliveries wait (``enable`` sends them)."""
    sub = get_subscription(session, actor, subscription_id)
    if sub.status != "disabled":
        _set_status(session, rt, actor, sub, "disabled", "by an administrator", rt.clock.now())
    return sub


def enable(session: Session, rt: Runtime, actor: Actor, subscription_id: int, settings: WebhookSettings) -> WebhookSubscription:
    """Send to a disabled or unsubscribed subscription again (its URL must still be allowed)."""
    sub = get_subscription(session, actor, subscription_id)
    check_url(sub.url, settings)
    if sub.status != "active":
        _set_status(session, rt, actor, sub, "active", None, rt.clock.now())
    return sub


def rotate_secret(
    session: Session, rt: Runtime, actor: Actor, subscription_id: int, *, overlap_hours: int = 24
) -> tuple[WebhookSubscription, str]:
    """Give a subscription a new secret; the old one also signs for ``overlap_hours``. Return the new secret."""
    if not isinstance(overlap_hours, int) or isinstance(overlap_hours, bool) or not 0 <= overlap_hours <= 24 * 30:
        raise _problem("overlap_hours", "integer_range", low=0, high=24 * 30)
    sub = get_subscription(session, actor, subscription_id)
    now = rt.clock.now()
    secret = new_secret()
    sub.previous_secret, sub.previous_until = sub.secret, now + timedelta(hours=overlap_hours)
    sub.secret, sub.changed_at = secret, now
    adminlog.record(
        session, rt.history_key, actor, at=now, action="webhook.rotate_secret", object_kind="webhook", object_id=sub.id,
        before=None, after={"overlap_hours": overlap_hours},
    )
    return sub, secret


def redeliver(session: Session, rt: Runtime, actor: Actor, delivery_id: int) -> WebhookDelivery:
    """Queue a delivery to be sent again at once (same body and webhook-id), whatever its outcome was."""
    require_admin(actor, "webhooks")
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise NotFound("webhook delivery", delivery_id)
    now = rt.clock.now()
    delivery.status, delivery.next_attempt_at, delivery.claimed_until = "pending", now, None
    # the give-up clock starts again: an administrator asked for it
    delivery.created_at = now
    return delivery


def delivery_log(
    session: Session, actor: Actor, subscription_id: int, *, limit: int = 50
) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    """Return a subscription's newest deliveries, each with its attempts, oldest attempt first."""
    get_subscription(session, actor, subscription_id)
    deliveries = list(session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
        .order_by(WebhookDelivery.id.desc()).limit(limit)
    ))
    attempts: dict[int, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        for attempt in session.scalars(
            select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(list(attempts))).order_by(WebhookAttempt.id)
        ):
            attempts[attempt.delivery_id].append(attempt)
    return [(d, attempts[d.id]) for d in deliveries]


# ------------------------------------------------------------------------------------ fan-out


def _case_view(case: Case) -> dict[str, Any]:
    return {
        "id": case.id, "unit_id": case.unit_id, "workflow": case.workflow, "workflow_version": case.workflow_version,
        "state": case.state, "version": case.version, "data": case.data,
        "opened_at": _instant(case.opened_at), "closed_at": _instant(case.closed_at) if case.closed_at else None,
    }


def _instant(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def payload(event: Event, case: Case) -> str:
    """Return the JSON body of a delivery: the event's type, ids and data, and the case as it is now."""
    data = {"event_id": event.id, "case_id": event.case_id, "unit_id": event.unit_id, **event.data, "case": _case_view(case)}
    return json.dumps({"type": event.type, "timestamp": _instant(event.at), "data": data}, ensure_ascii=False, separators=(",", ":"))


def fan_out(db: Database, rt: Runtime, now: datetime, *, batch_size: int = 100, max_batches: int | None = 10) -> int:
    """Turn undispatched event rows into deliveries for the active subscriptions that see them; return how many events.

    Each batch is one transaction: the events (``SKIP LOCKED`` on PostgreSQL, so dispatchers share
    them), the active subscriptions and their users, one scope query per subscription, the cases,
    one insert of deliveries and one update of the events. A subscription hears of events written
    from its creation on; one whose user is deactivated hears of nothing.
    """
    done = batches = 0
    today = local_date(now)
    while max_batches is None or batches < max_batches:
        with db.write() as session:
            query = select(Event).where(Event.dispatched_at.is_(None)).order_by(Event.id).limit(batch_size)
            if not db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            batch = list(session.scalars(query))
            batches += 1
            if not batch:
                break
            rows: list[dict[str, Any]] = []
            subs = session.execute(
                select(WebhookSubscription, User).join(User, User.id == WebhookSubscription.user_id)
                .where(WebhookSubscription.status == "active", User.active.is_(True))
                .order_by(WebhookSubscription.id)
            ).tuples().all()
            cases: dict[int, Case] = {}
            for sub, user in subs:
                wanted = [e for e in batch if e.type in sub.event_types and e.at >= sub.created_at]
                if not wanted:
                    continue
                seen = set(session.scalars(
                    select(Event.id).join(Case, Case.id == Event.case_id)
                    .where(Event.id.in_([e.id for e in wanted]), scope_clause(Actor.of(user), today, Case.unit_id))
                ))
                missing = {e.case_id for e in wanted if e.id in seen} - set(cases)
                if missing:
                    cases.update((c.id, c) for c in session.scalars(select(Case).where(Case.id.in_(missing))))
                rows.extend(
                    {
                        "subscription_id": sub.id, "event_id": e.id, "message_id": f"msg_{e.id}_{sub.id}",
                        "body": payload(e, cases[e.case_id]), "created_at": now, "status": "pending", "attempts": 0,
                        "next_attempt_at": now,
                    }
                    for e in wanted if e.id in seen
                )
            if rows:
                session.execute(insert(cast(Table, WebhookDelivery.__table__)), rows)
            session.execute(
                update(cast(Table, Event.__table__)).where(Event.id.in_([e.id for e in batch])).values(dispatched_at=now)
            )
            done += len(batch)
        if len(batch) < batch_size:
            break
    return done


# ------------------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class _Claimed:
    delivery_id: int
    message_id: str
    body: str
    subscription_id: int
    url: str
    secrets: tuple[str, ...]


def signature_headers(message_id: str, at: datetime, body: str, signing: Sequence[str]) -> dict[str, str]:
    """Return the Standard Webhooks headers for ``body``, signed with each secret in ``signing``."""
    from standardwebhooks.webhooks import Webhook  # imported on first send: no cost to other commands

    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(Webhook(secret).sign(message_id, at, body) for secret in signing),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def send_due(
    db: Database, rt: Runtime, now: datetime, settings: WebhookSettings, *, transport: Transport = http_post,
    mail_sender: str = "", mail_domain: str = "localhost",
) -> tuple[int, int]:
    """Send every due delivery of an active subscription; return (delivered, failed). Outside any transaction.

    ``mail_sender`` empty: administrators are told of a disabled subscription in the admin log only.
    """
    delivered = failed = 0
    for _ in range(settings.batches_per_cycle):
        lease = now + timedelta(seconds=settings.lease_seconds)
        batch = _claim(db, now, lease, settings.batch_size)
        if not batch:
            break
        outcomes: list[tuple[_Claimed, int | None, str | None]] = []
        for item in batch:
            status: int | None = None
            error: str | None = None
            host = urlsplit(item.url).hostname or ""
            if not settings.allows(host):
                error = f"host {host} is no longer in webhooks.allowed_hosts"
            else:
                headers = signature_headers(item.message_id, rt.clock.now(), item.body, item.secrets)
                try:
                    status = transport(item.url, item.body.encode(), headers, settings.timeout_seconds)
                except (OSError, ValueError) as exc:  # refused, reset, timed out, unreachable
                    error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
                else:
                    if not 200 <= status < 300:
                        error = f"HTTP {status}"
            outcomes.append((item, status, error))
        _record(db, rt, now, lease, outcomes, settings, mail_sender, mail_domain)
        delivered += sum(1 for _, _, error in outcomes if error is None)
        failed += sum(1 for _, _, error in outcomes if error is not None)
        if len(batch) < settings.batch_size:
            break
    return delivered, failed


def _claim(db: Database, now: datetime, lease: datetime, batch_size: int) -> list[_Claimed]:
    """Lease a batch of due deliveries of active subscriptions and commit; return what sending needs."""
    with db.write() as session:
        query = (
            select(WebhookDelivery, WebhookSubscription)
            .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
            .where(
                WebhookSubscription.status == "active",
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= now,
                or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until <= now),
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(batch_size)
        )
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True, of=WebhookDelivery)
        claimed: list[_Claimed] = []
        for delivery, sub in session.execute(query).tuples():
            delivery.claimed_until = lease
            signing = [sub.secret]
            if sub.previous_secret and sub.previous_until is not None and sub.previous_until > now:
                signing.append(sub.previous_secret)
            claimed.append(_Claimed(delivery.id, delivery.message_id, delivery.body, sub.id, sub.url, tuple(signing)))
    return claimed


def _record(
    db: Database, rt: Runtime, now: datetime, lease: datetime, outcomes: list[tuple[_Claimed, int | None, str | None]],
    settings: WebhookSettings, mail_sender: str, mail_domain: str,
) -> None:
    """Record each try and its outcome, for the deliveries this dispatcher still holds the lease of."""
    if not outcomes:
        return
    with db.write() as session:
        held = {
            d.id: d for d in session.scalars(
                select(WebhookDelivery).where(
                    WebhookDelivery.id.in_([c.delivery_id for c, _, _ in outcomes]),
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.claimed_until == lease,
                )
            )
        }
        attempts: list[dict[str, Any]] = []
        for claimed, status, error in outcomes:
            delivery = held.get(claimed.delivery_id)
            if delivery is None:  # the lease ran out and another dispatcher took it over: its word counts
                continue
            attempts.append({"delivery_id": delivery.id, "at": now, "status": status, "error": error})
            delivery.attempts += 1
            delivery.claimed_until = None
            delivery.last_status, delivery.last_error = status, error
            if error is None:
                delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", now, None
            elif status == 410:
                delivery.status, delivery.next_attempt_at = "gone", None
                sub = session.get(WebhookSubscription, claimed.subscription_id)
                if sub is not None and sub.status == "active":
                    _set_status(session, rt, SYSTEM, sub, "unsubscribed", "the receiver answered 410 Gone", now)
                    log.warning("webhook %s unsubscribed: %s answered 410", sub.id, sub.url)
            elif now - delivery.created_at >= timedelta(hours=settings.give_up_hours):
                delivery.status, delivery.next_attempt_at = "failed", None
                sub = session.get(WebhookSubscription, claimed.subscription_id)
                if sub is not None and sub.status == "active":
                    reason = f"delivery {delivery.id} failed for {settings.give_up_hours} hours: {error}"
                    _set_status(session, rt, SYSTEM, sub, "disabled", reason, now)
                    _tell_administrators(session, sub, reason, now, mail_sender, mail_domain)
                    log.warning("webhook %s disabled: %s", sub.id, reason)
            else:
                delay = min(settings.retry_initial_seconds * 2 ** (delivery.attempts - 1), settings.retry_max_seconds)
                delivery.next_attempt_at = now + timedelta(seconds=delay)
        if attempts:
            session.execute(insert(cast(Table, WebhookAttempt.__table__)), attempts)


def _tell_administrators(session: Session, sub: WebhookSubscription, reason: str, now: datetime, sender: str, domain: str) -> None:
    """Queue an email to each active administrator with an address (sent by the scheduler's mail job)."""
    if not sender:
        return
    for admin in session.scalars(select(User).where(User.role == "admin", User.active.is_(True), User.email.is_not(None))):
        assert admin.email is not None
        session.add(EmailMessage(
            message_id=f"<qmsflow.webhook.{sub.id}.{int(now.timestamp())}.{admin.id}@{domain}>", notification_id=None,
            kind="webhook", to_address=admin.email.lower(), to_name=admin.full_name or admin.username,
            subject=f"qmsflow: webhook {sub.id} disabled / webhook {sub.id} đã bị tắt",
            body=f"{sub.url}\n\n{reason}\n\nqmsflow webhooks enable {sub.id}\n",
            created_at=now, status="pending", attempts=0, next_attempt_at=now,
        ))


def dispatch(
    db: Database, rt: Runtime, settings: WebhookSettings, *, transport: Transport = http_post,
    mail_sender: str = "", mail_domain: str = "localhost",
) -> tuple[int, int, int]:
    """One bounded wake-up of the dispatcher: fan out new events, send due deliveries; return (events, delivered, failed)."""
    now = rt.clock.now()
    events = fan_out(db, rt, now, batch_size=settings.batch_size, max_batches=settings.batches_per_cycle)
    delivered, failed = send_due(db, rt, now, settings, transport=transport, mail_sender=mail_sender, mail_domain=mail_domain)
    return events, delivered, failed


__all__ = [
    "Transport",
    "WebhookSettings",
    "check_event_types",
    "check_url",
    "delivery_log",
    "disable",
    "dispatch",
    "enable",
    "fan_out",
    "get_subscription",
    "http_post",
    "new_secret",
    "payload",
    "redeliver",
    "rotate_secret",
    "send_due",
    "signature_headers",
    "subscribe",
    "subscriptions",
]
