"""End users over TestClient, pages and API: an account of a@example.test sees the entries held
for a@ only, never one for b@ only (404 exactly as for an id that does not exist), releases only
to a@ from an entry for both (b@ stays held), sees no other recipient, deletes nothing, and
reaches neither the queue, tracking nor the audit log."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import Depends, Request
from fastapi.testclient import TestClient

from edgeward.config.schema import Config
from edgeward.quarantine.service import open_store
from edgeward.queue.model import QueueState
from edgeward.queue.spool import Spool
from edgeward.web.api import token
from edgeward.web.app import console_of, create_app
from edgeward.web.auth import WebAccounts, WebAuthError
from tests.web.conftest import ADMIN_PW, csrf_of, hold, login, message

USER_PW = "my own mail only"
A, B = "a@example.test", "b@example.test"
MISSING = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def held(config: Config) -> dict[str, str]:
    accounts = WebAccounts(config.resolve(Path("state")))
    accounts.add("alice", USER_PW, "user")
    accounts.endusers.add_addresses("alice", [A.upper()])
    return {
        "b_only": hold(config, message(), subject="for bob", rcpts=(B,)),
        "both": hold(config, message(), subject="for both", rcpts=(B, A)),
        "a_only": hold(config, message(), subject="for alice", rcpts=(A,)),
    }


@pytest.fixture
def alice(client: TestClient, held: dict[str, str]) -> TestClient:
    return login(client, "alice", USER_PW)


def _released(config: Config) -> list[tuple[str, ...]]:
    records = Spool(config.resolve(Path("queue"))).list(QueueState.INCOMING)
    return [tuple(r.address for r in rec.recipients) for rec in records]


def test_the_list_holds_only_own_entries_and_own_recipients(alice: TestClient, held: dict[str, str]) -> None:
    page = alice.get("/quarantine").text
    assert "for both" in page and "for alice" in page and "for bob" not in page
    assert held["b_only"] not in page and B not in page  # not even as a co-recipient
    assert "2 message(s)" in page
    # Searching for another recipient does not tell whether they got one's message too.
    assert "0 message(s)" in alice.get("/quarantine", params={"recipient": "b@"}).text
    assert "1 message(s)" in alice.get("/quarantine", params={"subject": "for both"}).text


def test_another_users_entry_is_404_like_a_missing_one(alice: TestClient, held: dict[str, str]) -> None:
    other, missing = alice.get(f"/quarantine/{held['b_only']}"), alice.get(f"/quarantine/{MISSING}")
    assert other.status_code == missing.status_code == 404
    assert other.text == missing.text
    shown = alice.get(f"/quarantine/{held['both']}")
    assert shown.status_code == 200 and B not in shown.text
    csrf = csrf_of(shown.text)
    for qid in (held["b_only"], MISSING):
        r = alice.post(f"/quarantine/{qid}/release", data={"csrf": csrf, "to": [B]})
        assert r.status_code == 404


def test_release_goes_to_own_addresses_only(config: Config, alice: TestClient, held: dict[str, str]) -> None:
    shown = alice.get(f"/quarantine/{held['both']}")
    assert f'value="{A}"' in shown.text and "Delete for good" not in shown.text
    csrf = csrf_of(shown.text)
    for to in ([B], [A, B]):
        r = alice.post(f"/quarantine/{held['both']}/release", data={"csrf": csrf, "to": to})
        assert r.status_code == 400 and "your own addresses" in r.text
    assert _released(config) == []
    r = alice.post(f"/quarantine/{held['both']}/release", data={"csrf": csrf, "to": [A]})
    assert r.status_code == 200 and B not in r.text
    assert _released(config) == [(A,)]
    assert open_store(config).entry(held["both"]).recipients == (B,)  # bob's copy stays held
    assert alice.get(f"/quarantine/{held['both']}").status_code == 404  # and alice's is gone


def test_end_users_delete_nothing_and_reach_no_admin_page(
    config: Config, alice: TestClient, held: dict[str, str]
) -> None:
    csrf = csrf_of(alice.get("/quarantine").text)
    for qid in (held["a_only"], held["b_only"], MISSING):  # the same answer whatever the id
        r = alice.post(f"/quarantine/{qid}/delete", data={"csrf": csrf})
        assert r.status_code == 403
    assert len(open_store(config).list()) == 3
    for path in ("/queue", "/tracking", "/tracking/why/x", "/audit"):
        assert alice.get(path).status_code == 403, path
    home = alice.get("/", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == "/quarantine"
    nav = alice.get("/quarantine").text
    assert 'href="/queue"' not in nav and 'href="/audit"' not in nav


def _user_token(config: Config) -> dict[str, str]:
    secret = WebAccounts(config.resolve(Path("state"))).add_token("alice-script", "user", "alice")
    return {"Authorization": f"Bearer {secret}"}


def test_the_api_scopes_user_tokens_alike(config: Config, client: TestClient, held: dict[str, str]) -> None:
    auth = _user_token(config)
    found = client.get("/api/v1/quarantine", headers=auth).json()
    assert found["total"] == 2 and {e["qid"] for e in found["entries"]} == {held["both"], held["a_only"]}
    assert all(e["recipients"] == [A] for e in found["entries"])
    assert client.get("/api/v1/quarantine", headers=auth, params={"recipient": B}).json()["total"] == 0
    other = client.get(f"/api/v1/quarantine/{held['b_only']}", headers=auth)
    missing = client.get(f"/api/v1/quarantine/{MISSING}", headers=auth)
    assert other.status_code == missing.status_code == 404 and other.json() == missing.json()
    r = client.post(f"/api/v1/quarantine/{held['b_only']}/release", headers=auth, json={})
    assert r.status_code == 404
    r = client.post(f"/api/v1/quarantine/{held['both']}/release", headers=auth, json={"recipients": [B]})
    assert r.status_code == 400
    r = client.post(f"/api/v1/quarantine/{held['both']}/release", headers=auth)  # all: all of one's own
    assert r.status_code == 200 and r.json()["recipients"] == [A] and r.json()["remaining"] == []
    assert _released(config) == [(A,)]
    assert client.delete(f"/api/v1/quarantine/{held['a_only']}", headers=auth).status_code == 403
    for path in ("/api/v1/queue", "/api/v1/tracking", "/api/v1/audit"):
        assert client.get(path, headers=auth).status_code == 403, path


def test_a_user_token_needs_an_end_user_account(config: Config, held: dict[str, str]) -> None:
    accounts = WebAccounts(config.resolve(Path("state")))
    for account in (None, "admin", "nobody"):
        with pytest.raises(WebAuthError):
            accounts.add_token("t", "user", account)


def test_an_end_user_without_addresses_sees_nothing(config: Config, held: dict[str, str]) -> None:
    WebAccounts(config.resolve(Path("state"))).add("nobody", USER_PW, "user")
    with TestClient(create_app(config), base_url="https://testserver") as c:
        page = login(c, "nobody", USER_PW).get("/quarantine").text
        assert "0 message(s)" in page


def test_removing_an_account_forgets_its_addresses(config: Config, held: dict[str, str]) -> None:
    accounts = WebAccounts(config.resolve(Path("state")))
    accounts.remove("alice")
    accounts.add("alice", USER_PW, "user")
    assert accounts.endusers.addresses("alice") == ()


def test_a_page_added_later_is_closed_to_end_users_by_default(config: Config, held: dict[str, str]) -> None:
    app = create_app(config)

    @app.get("/settings")
    def settings(request: Request) -> dict[str, str]:
        return {"who": console_of(request).require(request).name}

    @app.get("/api/v1/settings", dependencies=[Depends(token)])
    def api_settings() -> dict[str, str]:
        return {"ok": "yes"}

    secret = WebAccounts(config.resolve(Path("state"))).add_token("alice-script", "user", "alice")
    with TestClient(app, base_url="https://testserver") as c:
        assert login(c, "alice", USER_PW).get("/settings").status_code == 403
        assert c.get("/api/v1/settings", headers={"Authorization": f"Bearer {secret}"}).status_code == 403
        c.cookies.clear()
        assert login(c, "admin", ADMIN_PW).get("/settings").json() == {"who": "admin"}
