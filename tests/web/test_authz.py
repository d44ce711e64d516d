"""Who may do what, over HTTP: every page and API route asked by an anonymous visitor, a
read-only and an admin account (session cookie, or API token), a made-up token or cookie, and
a session that has expired; each must get its own answer. The clock is the app's own, moved
past ``session_lifetime``, so expiry is exact, not waited for."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edgeward.config.schema import Config
from edgeward.web.app import SESSION_COOKIE, create_app
from edgeward.web.auth import WebAccounts
from tests.web.conftest import ADMIN_PW, READER_PW, csrf_of, hold, login, message

LOGIN = "login"  # a redirect to /login: the page needs a session
WHO = ("anonymous", "bad", "expired", "readonly", "admin")


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {qid}: a held message, a fresh one for each change
    expect: dict[str, int | str]  # by WHO


PAGE = {"anonymous": LOGIN, "bad": LOGIN, "expired": LOGIN, "readonly": 200, "admin": 200}
CHANGE = {"anonymous": LOGIN, "bad": LOGIN, "expired": LOGIN, "readonly": 403, "admin": 200}
PUBLIC = dict.fromkeys(WHO, 200)
READ = {"anonymous": 401, "bad": 401, "expired": 401, "readonly": 200, "admin": 200}
WRITE = {"anonymous": 401, "bad": 401, "expired": 401, "readonly": 403, "admin": 200}
ROUTES = [
    Route("GET", "/", {**PAGE, "readonly": 303, "admin": 303}),  # to /quarantine
    Route("GET", "/login", PUBLIC),
    Route("GET", "/quarantine", PAGE),
    Route("GET", "/quarantine/{qid}", PAGE),
    Route("POST", "/quarantine/{qid}/release", CHANGE),
    Route("POST", "/quarantine/{qid}/delete", CHANGE),
    Route("GET", "/queue", PAGE),
    Route("GET", "/tracking", PAGE),
    Route("GET", "/tracking/why/01ABC", PAGE),
    Route("GET", "/api/v1/quarantine", READ),
    Route("GET", "/api/v1/quarantine/{qid}", READ),
    Route("POST", "/api/v1/quarantine/{qid}/release", WRITE),
    Route("DELETE", "/api/v1/quarantine/{qid}", WRITE),
    Route("GET", "/api/v1/tracking", READ),
    Route("GET", "/api/v1/queue", READ),
]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app_client(config: Config, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(config, now=clock), base_url="https://testserver") as c:
        yield c


def _as(who: str, config: Config, client: TestClient, clock: Clock) -> tuple[dict[str, str], str]:
    """Headers and CSRF token of one kind of caller; the client's cookies are set to match."""
    client.cookies.clear()
    if who == "bad":
        client.cookies.set(SESSION_COOKIE, "made-up", domain="testserver")
        return {"Authorization": "Bearer ew_made-up"}, "made-up"
    if who == "anonymous":
        return {}, ""
    if who == "expired":
        login(client, "reader", READER_PW)
        csrf = csrf_of(client.get("/quarantine").text)
        clock.now += config.web.session_lifetime + 1
        # Nor may the dead session's cookie pass for an API token.
        return {"Authorization": f"Bearer {client.cookies.get(SESSION_COOKIE)}"}, csrf
    login(client, who if who == "admin" else "reader", ADMIN_PW if who == "admin" else READER_PW)
    csrf = csrf_of(client.get("/quarantine").text)
    token = WebAccounts(config.resolve(Path("state"))).add_token(f"{who}{clock.now}", who)
    return {"Authorization": f"Bearer {token}"}, csrf


@pytest.mark.parametrize("who", WHO)
def test_every_route_answers_each_kind_of_caller(
    who: str, config: Config, app_client: TestClient, clock: Clock
) -> None:
    headers, csrf = _as(who, config, app_client, clock)
    wrong = []
    for route in ROUTES:
        qid = hold(config, message(), rcpts=("u@example.test",))
        path = route.path.replace("{qid}", qid)
        form = {"csrf": csrf, "to": ["u@example.test"]} if route.method == "POST" and not path.startswith(
            "/api/"
        ) else None  # fmt: skip
        r = app_client.request(route.method, path, headers=headers, data=form, follow_redirects=False)
        expected = route.expect[who]
        got: int | str = r.status_code
        if expected == LOGIN and r.status_code == 303 and r.headers["location"] == "/login":
            got = LOGIN
        if got != expected:
            wrong.append(f"{route.method} {route.path}: {got}, not {expected}")
    assert not wrong, "\n".join(wrong)
