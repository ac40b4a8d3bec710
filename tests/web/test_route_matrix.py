"""Who gets what from every route: a matrix written out by hand, one row per rule and method.

Not derived from the code's permission table: each status is what the person in that column must
get. ``anonymous`` is not signed in; ``mustchange`` signed in with a one-time password and has not
changed it yet. A route added to the app without a row here fails ``test_every_route_has_a_row``.

POSTs carry a valid CSRF token and an empty or harmless form; the admin actions aim at ``target``,
a user no column signs in as. Rows run in the order written, sign-out last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from qmsflow.engine.db import Database
from qmsflow.engine.models import User
from tests.conftest import rows_committed
from tests.web.cases_support import World
from tests.web.conftest import post, token

ROLES = ("anonymous", "mustchange", "admin", "lead", "gddt", "tnh", "viewer")  # gddt: supervisor, tnh: unit officer

# (rule, method, concrete path): {column: status}. <user_id> is the target user.
A, M, AD, L, S, U, V = ROLES
ALL_SIGNED_IN = (M, AD, L, S, U, V)


def _row(default: int, **overrides: int) -> dict[str, int]:
    return {role: overrides.get(role, default) for role in ROLES}


def _unit_admins(status: int) -> dict[str, int]:
    """The register of units is the lead unit's work as well as the administrator's."""
    return {A: 302, M: 302, AD: status, L: status, S: 403, U: 403, V: 403}


def _admin_only(admin: int, anonymous: int = 302, mustchange: int = 302) -> dict[str, int]:
    return {A: anonymous, M: mustchange, AD: admin, L: 403, S: 403, U: 403, V: 403}


MATRIX: list[tuple[str, str, str, dict[str, int]]] = [
    ("/static/<path:filename>", "GET", "/static/css/qmsflow.css", _row(200)),
    ("/healthz", "GET", "/healthz", _row(200)),
    ("/sign-in", "GET", "/sign-in", _row(302, anonymous=200)),
    ("/sign-in", "POST", "/sign-in", _row(200)),  # an empty form is refused on the page
    ("/account/password", "GET", "/account/password", _row(200, anonymous=302)),
    ("/account/password", "POST", "/account/password", _row(400, anonymous=302)),  # empty: three field errors
    ("/language", "POST", "/language", _row(302)),
    ("/", "GET", "/", _row(200, anonymous=302, mustchange=302)),
    ("/admin/users/", "GET", "/admin/users/", _admin_only(200)),
    ("/admin/users/new", "GET", "/admin/users/new", _admin_only(200)),
    ("/admin/users/new", "POST", "/admin/users/new", _admin_only(400)),  # empty: field errors
    ("/admin/users/<int:user_id>", "GET", "/admin/users/{target}", _admin_only(200)),
    ("/admin/users/<int:user_id>", "POST", "/admin/users/{target}", _admin_only(400)),  # empty: no role
    ("/admin/users/<int:user_id>/unlock", "POST", "/admin/users/{target}/unlock", _admin_only(302)),
    ("/admin/users/<int:user_id>/password", "GET", "/admin/users/{target}/password", _admin_only(200)),
    ("/admin/users/<int:user_id>/password", "POST", "/admin/users/{target}/password", _admin_only(200)),  # shows it once
    ("/admin/users/<int:user_id>/deactivate", "GET", "/admin/users/{target}/deactivate", _admin_only(200)),
    ("/admin/users/<int:user_id>/deactivate", "POST", "/admin/users/{target}/deactivate", _admin_only(302)),
    ("/admin/log/", "GET", "/admin/log/", _admin_only(200)),
    # the import of units: an administrator or the lead unit; an empty POST names the missing file (400)
    ("/admin/units/import/", "GET", "/admin/units/import/", {**_admin_only(200), L: 200}),
    ("/admin/units/import/", "POST", "/admin/units/import/", {**_admin_only(400), L: 400}),
    # The case pages (web-cases). {case} is THPT-TNH's (tnh's unit, under gddt); {other_case} is THCS-MT's,
    # outside both: a case, a file or an event POST out of scope is a 404, never a 403 (tests/web/cases_support.py).
    ("/cases/<int:case_id>", "GET", "/cases/{case}", _row(200, anonymous=302, mustchange=302)),
    ("/cases/<int:case_id>", "GET", "/cases/{other_case}", _row(200, anonymous=302, mustchange=302, gddt=404, tnh=404)),
    ("/cases/<int:case_id>/print", "GET", "/cases/{case}/print", _row(200, anonymous=302, mustchange=302)),
    ("/cases/<int:case_id>/print", "GET", "/cases/{other_case}/print", _row(200, anonymous=302, mustchange=302, gddt=404, tnh=404)),
    # an empty form: the unit officer's lacks its version (400); a role that may not fire it, 403
    ("/cases/<int:case_id>/events/<event>", "POST", "/cases/{case}/events/establish_committee",
     _row(403, anonymous=302, mustchange=302, tnh=400)),
    ("/cases/<int:case_id>/events/<event>", "POST", "/cases/{other_case}/events/establish_committee",
     _row(403, anonymous=302, mustchange=302, gddt=404, tnh=404)),
    ("/cases/<int:case_id>/events/<event>/check", "POST", "/cases/{case}/events/withdraw/check",
     _row(403, anonymous=302, mustchange=302, lead=400)),
    ("/cases/<int:case_id>/events/<event>/check", "POST", "/cases/{other_case}/events/withdraw/check",
     _row(403, anonymous=302, mustchange=302, lead=400, gddt=404, tnh=404)),
    # start_applying has no fields: My work's button asks here first
    ("/cases/<int:case_id>/events/<event>/confirm", "GET", "/cases/{case}/events/start_applying/confirm",
     _row(403, anonymous=302, mustchange=302, tnh=200)),
    ("/evidence/<int:attachment_id>", "GET", "/evidence/{attachment}", _row(200, anonymous=302, mustchange=302)),
    ("/evidence/<int:attachment_id>", "GET", "/evidence/{other_attachment}", _row(200, anonymous=302, mustchange=302, gddt=404, tnh=404)),
    ("/inbox", "GET", "/inbox", _row(200, anonymous=302, mustchange=302)),
    ("/inbox/<int:item_id>/read", "POST", "/inbox/{item}/read", _row(404, anonymous=302, mustchange=302, tnh=302)),
    ("/inbox/read-all", "POST", "/inbox/read-all", _row(302)),
    ("/cases/new/corrective-action", "GET", "/cases/new/corrective-action", _row(403, anonymous=302, mustchange=302, admin=200, lead=200)),
    ("/cases/new/corrective-action", "POST", "/cases/new/corrective-action", _row(403, anonymous=302, mustchange=302, admin=400, lead=400)),
    ("/cases/new/lifecycle", "GET", "/cases/new/lifecycle", _row(403, anonymous=302, mustchange=302, admin=200, lead=200)),
    ("/cases/new/lifecycle", "POST", "/cases/new/lifecycle", _row(403, anonymous=302, mustchange=302, admin=400, lead=400)),
    # API tokens: everyone manages their own (an empty form makes one, shown once); someone else's is not found
    ("/tokens/", "GET", "/tokens/", _row(200, anonymous=302, mustchange=302)),
    ("/tokens/", "POST", "/tokens/", _row(200, anonymous=302, mustchange=302)),
    ("/tokens/<int:token_id>/revoke", "POST", "/tokens/999999/revoke", _row(404, anonymous=302, mustchange=302)),
    # The JSON API is bearer only: a signed-in browser's session cookie gets it nowhere (tests/web/test_api_matrix.py)
    ("/api/v1/units", "GET", "/api/v1/units", _row(401)),
    ("/api/v1/units", "POST", "/api/v1/units", _row(401)),
    ("/api/v1/units/<int:unit_id>", "GET", "/api/v1/units/1", _row(401)),
    ("/api/v1/units/<int:unit_id>", "PATCH", "/api/v1/units/1", _row(401)),
    ("/api/v1/cases", "GET", "/api/v1/cases", _row(401)),
    ("/api/v1/cases", "POST", "/api/v1/cases", _row(401)),
    ("/api/v1/cases/<int:case_id>", "GET", "/api/v1/cases/{case}", _row(401)),
    ("/api/v1/cases/<int:case_id>/events", "POST", "/api/v1/cases/{case}/events", _row(401)),
    ("/api/v1/cases/<int:case_id>/history", "GET", "/api/v1/cases/{case}/history", _row(401)),
    ("/api/v1/evidence", "POST", "/api/v1/evidence", _row(401)),
    ("/api/v1/evidence/<int:attachment_id>", "GET", "/api/v1/evidence/{attachment}", _row(401)),
    ("/api/v1/timers", "GET", "/api/v1/timers", _row(401)),
    ("/api/v1/escalations", "GET", "/api/v1/escalations", _row(401)),
    ("/api/v1/summary", "GET", "/api/v1/summary", _row(401)),
    ("/api/v1/notifications", "GET", "/api/v1/notifications", _row(401)),
    ("/api/v1/notifications/read", "POST", "/api/v1/notifications/read", _row(401)),
    ("/api/v1/openapi.json", "GET", "/api/v1/openapi.json", _row(200)),
    ("/api/v1/docs", "GET", "/api/v1/docs", _row(200)),
    # The province views (prov-dash): every signed-in reader sees its own scope (engine/province.py);
    # a bad filter (400, named on the page) is in tests/web/test_province_pages.py: every GET row here is opened in Chromium.
    ("/dashboard", "GET", "/dashboard", _row(200, anonymous=302, mustchange=302)),
    ("/dashboard", "GET", "/dashboard?as_of=2025-12-31", _row(200, anonymous=302, mustchange=302)),
    ("/units", "GET", "/units", _row(200, anonymous=302, mustchange=302)),
    ("/units", "GET", "/units?q=long+xuyen&late=1&as_of=2026-01-31", _row(200, anonymous=302, mustchange=302)),
    ("/units/export.csv", "GET", "/units/export.csv", _row(200, anonymous=302, mustchange=302)),
    ("/units/export.xlsx", "GET", "/units/export.xlsx", _row(200, anonymous=302, mustchange=302)),
    # The unit page (prov-admin): {unit} is THPT-TNH (tnh's, under gddt); {other_unit} THCS-MT, outside both: 404
    ("/units/<int:unit_id>", "GET", "/units/{unit}", _row(200, anonymous=302, mustchange=302)),
    ("/units/<int:unit_id>", "GET", "/units/{other_unit}", _row(200, anonymous=302, mustchange=302, gddt=404, tnh=404)),
    # Escalations: the lead (all), supervisors (theirs), administrators and viewers; not a unit officer's page
    ("/escalations", "GET", "/escalations", _row(200, anonymous=302, mustchange=302, tnh=403)),
    # Administering units (prov-admin): empty forms are refused on the page (400)
    ("/admin/units/new", "GET", "/admin/units/new", _unit_admins(200)),
    ("/admin/units/new", "POST", "/admin/units/new", _unit_admins(400)),
    ("/admin/units/<int:unit_id>", "GET", "/admin/units/{unit}", _unit_admins(200)),
    ("/admin/units/<int:unit_id>", "POST", "/admin/units/{unit}", _unit_admins(400)),
    ("/admin/units/<int:unit_id>/contacts/<role>", "POST", "/admin/units/{unit}/contacts/head", _unit_admins(400)),
    ("/admin/units/<int:unit_id>/parent", "GET", "/admin/units/{unit}/parent", _unit_admins(200)),
    ("/admin/units/<int:unit_id>/parent", "POST", "/admin/units/{unit}/parent", _unit_admins(400)),
    ("/admin/units/<int:unit_id>/end", "GET", "/admin/units/{unit}/end", _unit_admins(200)),
    ("/admin/units/<int:unit_id>/end", "POST", "/admin/units/{unit}/end", _unit_admins(400)),
    # Calendar overrides (prov-admin): the administrator's; an empty form is refused on the page (400)
    ("/admin/calendar/", "GET", "/admin/calendar/", _admin_only(200)),
    ("/admin/calendar/preview", "POST", "/admin/calendar/preview", _admin_only(400)),
    ("/admin/calendar/apply", "POST", "/admin/calendar/apply", _admin_only(400)),
    ("/sign-out", "POST", "/sign-out", _row(302)),
]


def _methods(app: Flask) -> set[tuple[str, str]]:
    return {(rule.rule, method) for rule in app.url_map.iter_rules() for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}


def test_every_route_has_a_row(app: Flask) -> None:
    written = {(rule, method) for rule, method, _path, _row in MATRIX}
    missing = _methods(app) - written
    assert not missing, f"routes without a row in the matrix: {sorted(missing)}"
    assert not written - _methods(app), f"rows for routes that no longer exist: {sorted(written - _methods(app))}"


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_the_status_its_column_says(
    role: str, signed_in: Callable[[str], FlaskClient], db: Database, world: World
) -> None:
    with db.read() as session:
        target = session.scalar(select(User.id).where(User.username == "target"))
    client = signed_in(role)
    got = {}
    for _rule, method, path, expected in MATRIX:
        url = path.format(target=target, **asdict(world))
        if method == "GET":
            response = client.get(url)
        elif method == "PATCH":
            response = client.patch(url, data={"csrf_token": token(client, "/sign-in")})
        else:
            response = client.post(url, data={"csrf_token": token(client, "/sign-in")})
        got[(method, url)] = (response.status_code, expected[role])
    wrong = {k: v for k, v in got.items() if v[0] != v[1]}
    assert not wrong, f"{role}: (got, expected) {wrong}"


def test_an_administrator_asking_for_a_user_that_does_not_exist_gets_404(signed_in: Callable[[str], FlaskClient]) -> None:
    admin = signed_in("admin")
    assert admin.get("/admin/users/999999").status_code == 404
    assert post(admin, "/admin/users/999999/deactivate").status_code == 404
    assert admin.get("/admin/users/?page=99").status_code == 404


def test_a_refused_admin_post_changes_nothing(signed_in: Callable[[str], FlaskClient], db: Database) -> None:
    lead = signed_in("lead")
    with db.read() as session:
        target = session.scalar(select(User.id).where(User.username == "target"))
    before = rows_committed(db)
    for path in (f"/admin/users/{target}/deactivate", f"/admin/users/{target}/password", f"/admin/users/{target}/unlock"):
        assert post(lead, path).status_code == 403
    assert post(lead, "/admin/users/new", {"username": "sneaky", "role": "admin"}).status_code == 403
    assert rows_committed(db) == before
