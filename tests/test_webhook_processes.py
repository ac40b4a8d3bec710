"""A real ``qmsflow scheduler`` process runs the webhook dispatcher from the ``[webhooks]`` settings.

One process, one short wake-up: it fans the case event out and posts it to a real HTTP receiver in
a thread; the signature verifies with ``standardwebhooks``. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from qmsflow.engine import Database, FixedClock, Runtime, open_case
from qmsflow.engine.models import WebhookDelivery
from tests.conftest import Province
from tests.engine.test_webhooks import SETTINGS, Receiver, _subscribe, near_now, receiver  # noqa: F401 (fixtures)
from tests.test_scheduler_processes import HANG_GUARD_SECONDS, QMSFLOW, qmsflow_env


def test_a_scheduler_process_delivers_a_case_event_signed_to_a_real_receiver(
    db: Database, rt: Runtime, near_now: FixedClock, province: Province, receiver: Receiver, tmp_path: Path  # noqa: F811
) -> None:
    receiver.start()
    _, secret = _subscribe(db, rt, receiver.url, "lead", ["case.opened"])
    with db.write() as session:
        case_id = open_case(session, rt, province.actors["lead"], session.merge(province.units["THPT-TNH"]), "qms_lifecycle").id
    env = qmsflow_env(db, tmp_path / "instance", QMSFLOW_WEBHOOKS_ALLOWED_HOSTS=",".join(SETTINGS.allowed_hosts))
    done = subprocess.run(
        [str(QMSFLOW), "scheduler", "--exit-when-idle", "--interval", "1"],
        env=env, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [(headers, body)] = receiver.received
    message = Webhook(secret).verify(body, headers)
    assert (message["type"], message["data"]["case_id"]) == ("case.opened", case_id)
    with db.read() as session:
        assert [(d.status, d.attempts) for d in session.scalars(select(WebhookDelivery))] == [("delivered", 1)]

