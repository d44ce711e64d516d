"""TOTP: the RFC 4226 and RFC 6238 test vectors, and the two-step login over TestClient (right
code, wrong code, replayed code, drift, the throttle, the partial login that is no session, and
``require_totp_for_admins``)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi.testclient import TestClient

from edgeward.config.schema import Config
from edgeward.web.app import create_app
from edgeward.web.auth import WebAccounts
from edgeward.web.totp import STEP, hotp, otpauth_uri, totp_at, verify_step
from tests.web.conftest import ADMIN_PW, READER_PW, csrf_of, make_config

RFC_KEY = b"12345678901234567890"


def test_rfc4226_hotp_vectors() -> None:
    expected = ["755224", "287082", "359152", "969429", "338314",
                "254676", "287922", "162583", "399871", "520489"]  # fmt: skip
    assert [hotp(RFC_KEY, i) for i in range(10)] == expected


@pytest.mark.parametrize(
    ("when", "sha1", "sha256", "sha512"),
    [
        (59, "94287082", "46119246", "90693936"),
        (1111111109, "07081804", "68084774", "25091201"),
        (1111111111, "14050471", "67062674", "99943326"),
        (1234567890, "89005924", "91819424", "93441116"),
        (2000000000, "69279037", "90698825", "38618901"),
        (20000000000, "65353130", "77737706", "47863826"),
    ],
)
def test_rfc6238_vectors(when: int, sha1: str, sha256: str, sha512: str) -> None:
    assert totp_at(RFC_KEY, when, 8, "sha1") == sha1
    assert totp_at(RFC_KEY + RFC_KEY[:12], when, 8, "sha256") == sha256  # the RFC's 32-byte seed
    assert totp_at(RFC_KEY * 3 + RFC_KEY[:4], when, 8, "sha512") == sha512  # and its 64-byte one


def test_one_step_of_drift_either_way_and_only_later_steps() -> None:
    now = 1_700_000_000.0
    step = int(now // STEP)
    for delta in (-1, 0, 1):
        assert verify_step(RFC_KEY, hotp(RFC_KEY, step + delta), now, after=-1) == step + delta
    for delta in (-2, 2):
        assert verify_step(RFC_KEY, hotp(RFC_KEY, step + delta), now, after=-1) is None
    assert verify_step(RFC_KEY, hotp(RFC_KEY, step), now, after=step) is None  # used already
    assert verify_step(RFC_KEY, "12345", now, after=-1) is None
    assert verify_step(RFC_KEY, "abcdef", now, after=-1) is None


def test_the_otpauth_uri_carries_the_secret_and_issuer() -> None:
    uri = urlparse(otpauth_uri("JBSWY3DPEHPK3PXP", "ops", "Edgeward mx.example.test"))
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert uri.path == "/Edgeward%20mx.example.test%3Aops"
    query = parse_qs(uri.query)
    assert query["secret"] == ["JBSWY3DPEHPK3PXP"] and query["period"] == ["30"]


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_015.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _key(accounts: WebAccounts, name: str) -> bytes:
    secret = accounts.totp.enable(name)
    return base64.b32decode(secret + "=" * (-len(secret) % 8))


@pytest.fixture
def enrolled(config: Config, clock: Clock) -> bytes:
    return _key(WebAccounts(config.resolve(Path("state")), now=clock), "admin")


@pytest.fixture
def tclient(config: Config, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(config, now=clock), base_url="https://testserver") as c:
        yield c


def _password(client: TestClient, name: str, password: str) -> tuple[int, str]:
    form = client.get("/login")
    r = client.post("/login", data={"name": name, "password": password, "csrf": csrf_of(form.text)},
                    follow_redirects=False)  # fmt: skip
    return r.status_code, r.text


def _code(client: TestClient, page: str, code: str) -> int:
    r = client.post("/login/code", data={"code": code, "csrf": csrf_of(page)}, follow_redirects=False)
    return int(r.status_code)


def _logout(client: TestClient) -> None:
    page = client.get("/quarantine")
    client.post("/logout", data={"csrf": csrf_of(page.text)})


def test_the_right_code_after_the_password_opens_a_session(
    tclient: TestClient, enrolled: bytes, clock: Clock
) -> None:
    status, page = _password(tclient, "admin", ADMIN_PW)
    assert status == 200 and 'action="/login/code"' in page
    assert not any("ew_session" in c for c in tclient.cookies)
    # The pending login is no session: no page opens with it.
    assert tclient.get("/quarantine", follow_redirects=False).headers["location"] == "/login"
    assert _code(tclient, page, totp_at(enrolled, clock.t)) == 303
    assert "admin (admin)" in tclient.get("/quarantine").text


def test_a_wrong_code_is_refused_and_counts_toward_the_throttle(
    tclient: TestClient, enrolled: bytes, clock: Clock
) -> None:
    right = totp_at(enrolled, clock.t)
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    _status, page = _password(tclient, "admin", ADMIN_PW)
    r = tclient.post("/login/code", data={"code": wrong, "csrf": csrf_of(page)})
    assert r.status_code == 401 and "wrong or already used code" in r.text
    assert tclient.get("/quarantine", follow_redirects=False).status_code == 303
    for _ in range(4):  # five failures in all lock the account, the right code too
        assert _code(tclient, page, wrong) == 401
    assert _code(tclient, page, right) == 429
    assert _password(tclient, "admin", ADMIN_PW)[0] == 429


def test_a_code_works_once_even_within_its_window(tclient: TestClient, enrolled: bytes, clock: Clock) -> None:
    code = totp_at(enrolled, clock.t)
    _status, page = _password(tclient, "admin", ADMIN_PW)
    assert _code(tclient, page, code) == 303
    _logout(tclient)
    clock.t += 5  # same step
    _status, page = _password(tclient, "admin", ADMIN_PW)
    assert _code(tclient, page, code) == 401
    # An older step's code is refused too once a later one was used ...
    assert _code(tclient, page, hotp(enrolled, int(clock.t // STEP) - 1)) == 401
    # ... and the next step's code is taken.
    clock.t += STEP
    assert _code(tclient, page, totp_at(enrolled, clock.t)) == 303


def test_codes_one_step_off_are_accepted_two_are_not(
    tclient: TestClient, enrolled: bytes, clock: Clock
) -> None:
    step = int(clock.t // STEP)
    _status, page = _password(tclient, "admin", ADMIN_PW)
    assert _code(tclient, page, hotp(enrolled, step - 2)) == 401
    assert _code(tclient, page, hotp(enrolled, step + 2)) == 401
    assert _code(tclient, page, hotp(enrolled, step - 1)) == 303  # a phone a little behind
    _logout(tclient)
    _status, page = _password(tclient, "admin", ADMIN_PW)
    assert _code(tclient, page, hotp(enrolled, step + 1)) == 303  # and one a little ahead


def test_a_pending_login_expires_and_is_used_once(tclient: TestClient, enrolled: bytes, clock: Clock) -> None:
    _status, page = _password(tclient, "admin", ADMIN_PW)
    clock.t += 301
    r = tclient.post("/login/code", data={"code": totp_at(enrolled, clock.t), "csrf": csrf_of(page)})
    assert r.status_code == 403 and "start again" in r.text


def test_a_wrong_password_never_reaches_the_code_form(tclient: TestClient, enrolled: bytes) -> None:
    status, page = _password(tclient, "admin", "wrong")
    assert status == 401 and "/login/code" not in page


def test_require_totp_refuses_admins_without_it(tmp_path: Path, clock: Clock) -> None:
    config = make_config(tmp_path, require_totp_for_admins=True)
    accounts = WebAccounts(config.resolve(Path("state")), now=clock)
    accounts.add("admin", ADMIN_PW, "admin")
    accounts.add("boss", ADMIN_PW, "admin")
    accounts.add("reader", READER_PW, "readonly")
    key = _key(accounts, "boss")
    with TestClient(create_app(config, now=clock), base_url="https://testserver") as client:
        status, page = _password(client, "admin", ADMIN_PW)
        assert status == 403 and "TOTP" in page
        assert client.get("/quarantine", follow_redirects=False).status_code == 303
        status, page = _password(client, "boss", ADMIN_PW)
        assert status == 200 and _code(client, page, totp_at(key, clock.t)) == 303
        _logout(client)
        assert _password(client, "reader", READER_PW)[0] == 303  # the rule is for administrators


def test_the_accounts_database_is_private(config: Config) -> None:
    path = WebAccounts(config.resolve(Path("state"))).path
    assert path.stat().st_mode & 0o777 == 0o600
    assert re.fullmatch(r"web\.db", path.name)
