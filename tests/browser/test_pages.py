"""In a real browser: sign in, switch the language and back, sign out, with the CSP enforced; every
HTML page of the route matrix fits 375 px and has no serious or critical axe-core violation."""

from __future__ import annotations

import string
from typing import Any

import pytest
from sqlalchemy import select

from qmsflow.engine.models import User
from tests.browser.case_ids import demo_case_ids
from tests.browser.conftest import Server, run_axe, sign_in
from tests.web.test_route_matrix import MATRIX

# The matrix's columns, as demo users (the matrix's own fixture users are the web tests' province).
DEMO_USER = {"anonymous": None, "tnh": "thcsmt.iso", "gddt": "gddt.minh", "lead": "tdc.lan", "viewer": "lanhdao", "admin": "admin"}


def _demo_ids(server: Server) -> dict[str, int]:
    """The ids the matrix's paths name, in the demo (``target``: a user the admin pages act on).

    The case pages' ids follow tests/web/cases_support.py: ``case`` is the case of the unit officer
    column (thcsmt.iso), brought to where start_applying may fire, with a file; ``other_case`` a case
    of another unit, with a file.
    """
    with server.db.read() as session:
        target = session.scalar(select(User.id).where(User.username == "lanhdao"))
    assert target is not None and server.settings is not None
    return {"target": target, **demo_case_ids(server)}


def _html_pages() -> list[tuple[str, str]]:
    """Every GET row of the matrix that some column sees as a page (200), with the first such column."""
    pages = []
    for rule, method, path, expected in MATRIX:
        if method != "GET" or rule.startswith(("/static", "/healthz", "/evidence/", "/units/export", "/api/")):  # not pages: files, JSON (the API's own tests: tests/web/test_api_*.py)
            continue
        column = next((c for c in DEMO_USER if expected.get(c) == 200), None)
        assert column is not None, f"{rule}: no column of {sorted(DEMO_USER)} sees it"
        pages.append((path, column))
    return pages


def test_an_officer_signs_in_switches_language_and_back_and_signs_out(page: Any, server: Server) -> None:
    page.goto(server.url + "/")
    assert page.url.endswith("/sign-in?next=/")
    sign_in(page, server, "thcsmt.iso")
    assert page.url == server.url + "/"
    assert page.locator("h1").inner_text() == "Việc của tôi"  # My work is the home page
    assert "Lâm Thị Thu" in page.locator(".qf-who").inner_text()
    assert "Trường THCS Mỹ Thới" in page.locator(".qf-who").inner_text()
    page.get_by_role("button", name="English").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("button", name="Sign out").is_visible()
    page.get_by_role("button", name="Tiếng Việt").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "vi"
    page.get_by_role("button", name="Đăng xuất").click()
    page.wait_for_load_state()
    assert page.url.endswith("/sign-in")
    assert "Bạn đã đăng xuất." in page.locator("main").inner_text()
    page.goto(server.url + "/admin/users/")
    assert "/sign-in" in page.url


def test_a_wrong_password_keeps_the_username_and_says_so(page: Any, server: Server) -> None:
    page.goto(server.url + "/sign-in")
    page.get_by_label("Tên đăng nhập").fill("thcsmt.iso")
    page.get_by_label("Mật khẩu").fill("not the password")
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_load_state()
    assert "Tên đăng nhập hoặc mật khẩu không đúng." in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Tên đăng nhập").input_value() == "thcsmt.iso"
    assert page.evaluate("document.activeElement.id") == "sign-in-error"  # announced to a screen reader


@pytest.mark.parametrize("width", [375])
def test_every_page_fits_a_phone_and_passes_axe(axe_page: Any, server: Server, width: int) -> None:
    axe_page.set_viewport_size({"width": width, "height": 800})
    ids = _demo_ids(server)
    problems: dict[str, Any] = {}
    signed_in_as: str | None = None
    for path, column in sorted(_html_pages(), key=lambda p: str(p[1])):
        fields = {name for _text, name, _spec, _conv in string.Formatter().parse(path) if name}
        unknown = fields - set(ids)
        assert not unknown, f"{path}: add the demo's id for {unknown} to _demo_ids"
        user = DEMO_USER[column]
        if user != signed_in_as:
            axe_page.context.clear_cookies()
            if user:
                sign_in(axe_page, server, user)
            signed_in_as = user
        response = axe_page.goto(server.url + path.format(**ids))
        assert response is not None and response.status == 200, f"{path} as {user}: {response.status if response else None}"
        assert axe_page.title().endswith("– qmsflow") and axe_page.locator("h1").count() == 1, path
        overflow = axe_page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        violations = run_axe(axe_page)
        if overflow > 0 or violations:
            problems[path] = {"overflow_px": overflow, "axe": violations}
    assert not problems, problems
