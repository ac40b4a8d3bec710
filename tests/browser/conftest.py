"""The browser suite: Debian's headless Chromium driven by Playwright, against the app served by waitress.

The demo province is built once per run into a SQLite file (browser suites run on SQLite only);
each test copies it and serves it on a free loopback port. Without Playwright or ``/usr/bin/chromium``
(``apt-get install chromium``; ``.ci/run`` installs it) the suite is skipped and named under
"suites skipped"; with QMSFLOW_REQUIRE_ALL_SUITES=1 that fails the run.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from qmsflow.bootstrap import build_runtime, upgrade
from qmsflow.config import Settings, load_settings
from qmsflow.demo import DEMO_PASSWORD, PRESENT, build_demo, catch_up
from qmsflow.engine import FixedClock, calendar_store
from qmsflow.engine.db import Database, make_engine
from qmsflow.engine.notifications import MailSettings
from qmsflow.web import create_app
from tests.conftest import RAN_SUITES, REQUIRE_ALL, SKIPPED_SUITES, local

CHROMIUM = Path("/usr/bin/chromium")
AXE = next((Path(__file__).parent / "vendor").glob("axe-core-*/axe.min.js"), None)
LOAD_DAY: date = PRESENT


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} missing (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the run."""
    reason = _missing()
    if reason:
        SKIPPED_SUITES["browser"] = reason
        if REQUIRE_ALL:
            pytest.fail(f"browser suite required but unavailable: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"])
        RAN_SUITES.add("browser")
        yield chromium
        chromium.close()


def _settings(instance: Path) -> Settings:
    return replace(load_settings({}, {"instance_path": str(instance)}), secret_key="browser-" * 4, history_key="browser-history-key")


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo province, loaded as of ``LOAD_DAY`` into a SQLite file once per run."""
    folder = tmp_path_factory.mktemp("demo")
    path = folder / "demo.sqlite3"
    db = Database(make_engine(f"sqlite:///{path}"))
    upgrade(db)
    rt = build_runtime(_settings(folder), FixedClock(local(LOAD_DAY, 9)))
    with db.write() as session:
        calendar_store.store(session, rt.calendar)  # as `qmsflow demo` does: the stored calendar plans the deadlines
        build_demo(session, rt, load_day=LOAD_DAY)
    catch_up(db, rt, MailSettings(), LOAD_DAY)
    db.dispose()
    return path


@dataclass
class Server:
    """The app served on loopback, with its database and clock."""

    url: str
    db: Database
    clock: FixedClock
    password: str = DEMO_PASSWORD
    settings: Settings | None = None  # where the served app keeps its evidence files, among others


@pytest.fixture
def server(browser: Any, demo_template: Path, tmp_path: Path) -> Iterator[Server]:
    """A copy of the demo served by waitress (as ``qmsflow serve`` does) on a free port."""
    from waitress.server import create_server

    path = tmp_path / "qmsflow.sqlite3"
    shutil.copy(demo_template, path)
    db = Database(make_engine(f"sqlite:///{path}"))
    clock = FixedClock(local(LOAD_DAY, 9))
    settings = _settings(tmp_path / "instance")
    app = create_app(settings=settings, db=db, runtime=build_runtime(settings, clock))
    wsgi = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=wsgi.run, daemon=True)
    thread.start()
    yield Server(f"http://127.0.0.1:{wsgi.effective_port}", db, clock, settings=settings)
    wsgi.close()
    db.dispose()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page in a fresh context with the CSP enforced; any CSP violation or script error fails the test."""
    context = browser.new_context(locale="vi-VN")
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: Any) -> None:
        # A refused form answers 400 or 409 with its page: the browser logs the document's status, which
        # is the answer the test expects, not a fault. A subresource's failure still counts.
        refused_document = message.text.startswith("Failed to load resource") and message.location.get("url") == page.url
        if (message.type == "error" and not refused_document) or "Content Security Policy" in message.text:
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda e: problems.append(str(e)))
    yield page
    context.close()
    assert not problems, f"console errors (a CSP violation?): {problems}"


@pytest.fixture
def axe_page(browser: Any) -> Iterator[Any]:
    """A page whose context bypasses the CSP, so the test may inject axe-core (only ever for that)."""
    context = browser.new_context(bypass_csp=True, locale="vi-VN")
    yield context.new_page()
    context.close()


def sign_in(page: Any, server: Server, username: str) -> None:
    """Sign in through the form, as a person does."""
    page.goto(f"{server.url}/sign-in")
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(server.password)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_load_state()


def run_axe(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page."""
    assert AXE is not None, "tests/browser/vendor/axe-core-*/axe.min.js missing: run scripts/vendor"
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result["violations"] if v["impact"] in ("serious", "critical")
    ]
