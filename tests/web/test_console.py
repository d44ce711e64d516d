"""The console's pages over FastAPI's TestClient: login, throttling, CSRF, roles, cookie flags,
escaping of hostile mail, the security headers, release by POST only, digest links once."""

from __future__ import annotations

import base64
from pathlib import Path

from fastapi.testclient import TestClient

from edgeward.config.schema import Config
from edgeward.quarantine.digest import release_tokens
from edgeward.queue.model import QueueState
from edgeward.queue.spool import Spool
from edgeward.web.app import create_app
from edgeward.web.security import CSP
from tests.web.conftest import ADMIN_PW, READER_PW, csrf_of, hold, login, make_config, message


def _spooled(config: Config) -> list[str]:
    return [r.id for r in Spool(config.resolve(Path("queue"))).list(QueueState.INCOMING)]


def test_login_sets_a_strict_session_cookie_and_logout_ends_it(client: TestClient) -> None:
    assert client.get("/quarantine", follow_redirects=False).headers["location"] == "/login"
    form = client.get("/login")
    r = client.post("/login", data={"name": "Admin", "password": ADMIN_PW, "csrf": csrf_of(form.text)},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and "ew_session" in v)
    assert cookie.startswith("__Host-ew_session=")
    flags = {f.strip().lower() for f in cookie.split(";")}
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= flags
    page = client.get("/quarantine")
    assert page.status_code == 200 and "admin (admin)" in page.text
    assert (
        client.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False).status_code == 303
    )
    assert client.get("/quarantine", follow_redirects=False).status_code == 303


def test_wrong_password_and_unknown_name_are_refused_alike(client: TestClient) -> None:
    for name in ("admin", "nobody"):
        form = client.get("/login")
        r = client.post("/login", data={"name": name, "password": "wrong", "csrf": csrf_of(form.text)})
        assert r.status_code == 401 and "wrong name or password" in r.text
    assert client.get("/quarantine", follow_redirects=False).status_code == 303


def test_login_without_the_form_token_is_refused(client: TestClient) -> None:
    client.get("/login")
    r = client.post("/login", data={"name": "admin", "password": ADMIN_PW, "csrf": "forged"})
    assert r.status_code == 403
    assert client.get("/quarantine", follow_redirects=False).status_code == 303


def test_five_failures_lock_the_account_even_for_the_right_password(client: TestClient) -> None:
    for _ in range(5):
        form = client.get("/login")
        assert client.post("/login", data={"name": "admin", "password": "x", "csrf": csrf_of(form.text)}
                           ).status_code == 401  # fmt: skip
    form = client.get("/login")
    r = client.post("/login", data={"name": "admin", "password": ADMIN_PW, "csrf": csrf_of(form.text)})
    assert r.status_code == 429 and "too many failed logins" in r.text
    # The same source is locked out for the other account too.
    form = client.get("/login")
    r = client.post("/login", data={"name": "reader", "password": READER_PW, "csrf": csrf_of(form.text)})
    assert r.status_code == 429


def test_the_lockout_ends_with_the_window(tmp_path: Path) -> None:
    from edgeward.web.auth import LoginRefused, WebAccounts

    clock = [1000.0]
    accounts = WebAccounts(tmp_path / "state", max_failures=2, window=60, now=lambda: clock[0])
    accounts.add("a", "pw-one", "admin")
    for _ in range(2):
        try:
            accounts.login("a", "bad", "192.0.2.1")
        except LoginRefused as exc:
            assert exc.reason == "bad-credentials"
    try:
        accounts.login("a", "pw-one", "192.0.2.9")
        raise AssertionError("not throttled")
    except LoginRefused as exc:
        assert exc.reason == "throttled"
    clock[0] += 61
    _cookie, session = accounts.login("a", "pw-one", "192.0.2.9")
    assert session.role == "admin"


def test_release_needs_post_csrf_and_the_admin_role(config: Config, client: TestClient) -> None:
    qid = hold(config, message())
    login(client, "reader", READER_PW)
    page = client.get(f"/quarantine/{qid}")
    assert page.status_code == 200 and "Release to the recipients" not in page.text
    csrf = csrf_of(page.text)
    assert client.get(f"/quarantine/{qid}/release").status_code == 405
    r = client.post(f"/quarantine/{qid}/release", data={"csrf": csrf, "to": ["u@example.test"]})
    assert r.status_code == 403 and "may look but not change" in r.text
    assert client.post(f"/quarantine/{qid}/delete", data={"csrf": csrf}).status_code == 403
    assert _spooled(config) == []

    client.cookies.clear()
    login(client, "admin", ADMIN_PW)
    page = client.get(f"/quarantine/{qid}")
    r = client.post(f"/quarantine/{qid}/release", data={"csrf": "not-the-token", "to": ["u@example.test"]})
    assert r.status_code == 403 and "Form refused" in r.text
    assert _spooled(config) == []
    r = client.post(f"/quarantine/{qid}/release", data={"csrf": csrf_of(page.text), "to": ["u@example.test"]})
    assert r.status_code == 200 and "Released" in r.text
    assert len(_spooled(config)) == 1
    assert client.get(f"/quarantine/{qid}").status_code == 404


def test_release_to_some_recipients_keeps_the_others(config: Config, client: TestClient) -> None:
    qid = hold(config, message(), rcpts=("a@example.test", "b@example.test"))
    login(client, "admin", ADMIN_PW)
    csrf = csrf_of(client.get(f"/quarantine/{qid}").text)
    r = client.post(f"/quarantine/{qid}/release", data={"csrf": csrf, "to": ["b@example.test"]})
    assert "still held for a@example.test" in r.text
    r = client.post(f"/quarantine/{qid}/release", data={"csrf": csrf, "to": ["z@example.test"]})
    assert r.status_code == 400 and "not a recipient" in r.text
    r = client.post(f"/quarantine/{qid}/delete", data={"csrf": csrf})
    assert r.status_code == 200
    assert client.get("/quarantine").text.count("/quarantine/") == 0


PAYLOADS = ["<script>alert(1)</script>", '<svg onload="alert(2)">', "\u202eexe.fdp"]


def test_hostile_subject_name_and_file_names_are_escaped(config: Config, client: TestClient) -> None:
    subject = PAYLOADS[0] + " " + PAYLOADS[2]
    qid = hold(config, message(subject=subject, from_name=PAYLOADS[1], filename=PAYLOADS[0] + PAYLOADS[2]),
               subject=subject)  # fmt: skip
    login(client, "admin", ADMIN_PW)
    for page in (client.get("/quarantine").text, client.get(f"/quarantine/{qid}").text):
        for payload in PAYLOADS:
            assert payload not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "\\u202eexe.fdp" in page  # the bidi override shown, not obeyed
        assert "<script" not in page
    shown = client.get(f"/quarantine/{qid}").text
    assert "&lt;svg onload=&#34;alert(2)&#34;&gt;" in shown  # the From display name
    assert 'class="filename">&lt;script&gt;alert(1)&lt;/script&gt;\\u202eexe.fdp<' in shown
    assert "The body &lt;b&gt;bold&lt;/b&gt;" in shown  # text shown as text


def test_every_answer_carries_the_security_headers(client: TestClient) -> None:
    for path in ("/login", "/quarantine", "/api/v1/quarantine", "/static/console.css", "/nowhere"):
        r = client.get(path, follow_redirects=False)
        assert r.headers["content-security-policy"] == CSP
        assert "script-src 'none'" in CSP and "frame-ancestors 'none'" in CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    assert "<script" not in client.get("/login").text


def test_a_digest_link_releases_once(config: Config, client: TestClient) -> None:
    qid = hold(config, message(subject="a newsletter"), subject="a newsletter")
    token = release_tokens(config).issue(qid, "u@example.test", 3600)
    page = client.get(f"/release/{token}")
    assert page.status_code == 200 and "a newsletter" in page.text and "u@example.test" in page.text
    assert client.get(f"/release/{token}").status_code == 200  # looking does not use it up
    first = client.post(f"/release/{token}")
    assert first.status_code == 200 and "released to u@example.test" in first.text
    assert len(_spooled(config)) == 1
    second = client.post(f"/release/{token}")
    assert second.status_code == 410 and "cannot be used" in second.text
    assert len(_spooled(config)) == 1
    assert client.post(f"/release/{token[:-2]}xx").status_code == 400  # altered


def test_an_encoded_subject_is_shown_decoded_and_escaped(config: Config, client: TestClient) -> None:
    subject = "=?utf-8?b?" + base64.b64encode("<b>Re\u202eport</b>".encode()).decode() + "?="
    qid = hold(config, message(subject=subject), subject=subject)
    login(client, "reader", READER_PW)
    for page in (client.get("/quarantine").text, client.get(f"/quarantine/{qid}").text):
        assert "&lt;b&gt;Re\\u202eport&lt;/b&gt;" in page and "=?utf-8?" not in page
    token = release_tokens(config).issue(qid, "u@example.test", 3600)
    assert "&lt;b&gt;Re\\u202eport&lt;/b&gt;" in client.get(f"/release/{token}").text


def test_the_digest_form_of_a_link_shows_the_same_page(config: Config, client: TestClient) -> None:
    qid = hold(config, message(subject="a newsletter"), subject="a newsletter")
    token = release_tokens(config).issue(qid, "u@example.test", 3600)
    page = client.get("/release", params={"token": token})  # release_link_base?token=...
    assert page.status_code == 200 and "a newsletter" in page.text
    assert f'action="/release/{token}"' in page.text
    assert client.get("/release").status_code == 400  # no token: a page saying so


def test_an_unreadable_tracking_log_is_a_503_page_not_a_500(config: Config, client: TestClient) -> None:
    (config.resolve(Path("log")) / "tracking.log").mkdir(parents=True)  # opening it fails, even as root
    login(client, "reader", READER_PW)
    for path in ("/tracking?sender=a@remote.test", "/tracking/why/01ABC"):
        r = client.get(path)
        assert r.status_code == 503 and "tracking log cannot be read (tracking.log" in r.text, r.text


def test_tracking_search_and_why(config: Config, client: TestClient) -> None:
    from edgeward.logs.tracking import TrackingLog
    from edgeward.types import Finding

    folder = config.resolve(config.logging.dir)
    folder.mkdir(parents=True)
    log = TrackingLog(folder, config.logging)
    log.event("QUARANTINE", msg_id="q1", sender="<script>@x.test", recipients=["u@example.test"],
              findings=[Finding("SPAM_WORDS", "content-filter", "free money", 8.0)],
              decided_by="threshold quarantine 7 (total 8)")  # fmt: skip
    log.event("RECEIVE", msg_id="r2", sender="ok@x.test", recipients=["v@example.test"])
    log.close()
    login(client, "reader", READER_PW)
    page = client.get("/tracking", params={"recipient": "u@example.test"})
    assert page.status_code == 200 and "q1" in page.text and "r2" not in page.text
    assert "&lt;script&gt;@x.test" in page.text and "<script>@" not in page.text
    why = client.get("/tracking/why/q1").text
    assert "SPAM_WORDS" in why and "threshold quarantine 7" in why
    assert client.get("/tracking", params={"since": "yesterday-ish"}).status_code == 400
    assert "unknown event" in client.get("/tracking", params={"event": "BOGUS"}).text


def test_pages_are_capped(tmp_path: Path) -> None:
    config = make_config(tmp_path, page_size_max=2)
    from edgeward.web.auth import WebAccounts

    WebAccounts(config.resolve(Path("state"))).add("admin", ADMIN_PW, "admin")
    for n in range(5):
        hold(config, message(), subject=f"n{n}")
    with TestClient(create_app(config), base_url="https://testserver") as client:
        login(client, "admin", ADMIN_PW)
        page = client.get("/quarantine")
        assert "5 message(s), page 1 of 3" in page.text and page.text.count('href="/quarantine/') == 2


def test_hostile_message_id_and_link_page_are_escaped(config: Config, client: TestClient) -> None:
    data = message().replace(b"<m1@remote.test>", b'<"><script>alert(3)</script>@x>')
    subject = '<img src=x onerror="alert(4)">\u2066'
    qid = hold(config, data, subject=subject)
    login(client, "admin", ADMIN_PW)
    shown = client.get(f"/quarantine/{qid}").text
    assert (
        "<script>alert(3)" not in shown
        and "&lt;&#34;&gt;&lt;script&gt;alert(3)&lt;/script&gt;@x&gt;" in shown
    )
    token = release_tokens(config).issue(qid, "u@example.test", 3600)
    page = client.get(f"/release/{token}").text
    assert "<img" not in page and "\u2066" not in page
    assert "&lt;img src=x onerror=&#34;alert(4)&#34;&gt;\\u2066" in page


def test_the_queue_viewer_lists_released_mail_escaped(config: Config, client: TestClient) -> None:
    qid = hold(config, message(), rcpts=("<svg onload=x>@example.test",))
    login(client, "admin", ADMIN_PW)
    csrf = csrf_of(client.get(f"/quarantine/{qid}").text)
    client.post(f"/quarantine/{qid}/release", data={"csrf": csrf, "to": ["<svg onload=x>@example.test"]})
    page = client.get("/queue")
    assert page.status_code == 200 and "1 message(s)" in page.text
    assert "<svg" not in page.text and "&lt;svg onload=x&gt;@example.test" in page.text
    assert "0 message(s)" in client.get("/queue", params={"state": "hold"}).text
    assert client.get("/queue", params={"state": "nowhere"}).status_code == 400
