"""The audit log: a line for every administrative action (logins that worked and that did not,
logout, release, delete, queue actions and account, token and TOTP changes from the CLI), with
who, from where and when; the /audit page (admin only, escaped, searched, paged), GET
/api/v1/audit, and ``edgeward web audit --json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.config.load import load_config
from edgeward.config.schema import Config
from edgeward.logs.adminlog import track_admin
from edgeward.logs.audit import Actor, AuditQuery, acting, audit, read_audit
from edgeward.quarantine.digest import release_tokens
from edgeward.web.app import create_app
from edgeward.web.auth import WebAccounts
from tests.web.conftest import ADMIN_PW, READER_PW, csrf_of, hold, login, make_config, message

HOSTILE = '<script>alert("x")</script>\u202e'


def _lines(config: Config, **query: Any) -> list[dict[str, Any]]:
    return read_audit(config, AuditQuery(**query))[0]


def test_console_actions_are_audited_with_who_and_where(config: Config, client: TestClient) -> None:
    form = client.get("/login")
    client.post("/login", data={"name": HOSTILE, "password": "x", "csrf": csrf_of(form.text)})
    login(client, "admin", ADMIN_PW)
    one = hold(config, message(), rcpts=("a@example.test", "b@example.test"))
    two = hold(config, message())
    csrf = csrf_of(client.get(f"/quarantine/{one}").text)
    assert client.post(f"/quarantine/{one}/release", data={"csrf": csrf, "to": ["b@example.test"]}
                       ).status_code == 200  # fmt: skip
    assert client.post(f"/quarantine/{two}/delete", data={"csrf": csrf}).status_code == 200
    client.post("/logout", data={"csrf": csrf})
    lines = list(reversed(_lines(config)))
    assert [e["action"] for e in lines] == ["login.failed", "login", "message.release", "message.remove",
                                            "logout"]  # fmt: skip
    assert lines[0]["actor"] == HOSTILE and lines[0]["detail"] == "bad-credentials"
    assert {e["source"] for e in lines} == {"testclient"} and {e["via"] for e in lines} == {"web"}
    assert all(e["actor"] == "admin" for e in lines[1:])
    assert lines[2]["target"] != one  # the release's new queue id, with the quarantine id in the detail
    assert one in lines[2]["detail"] and "to b@example.test" in lines[2]["detail"]
    assert lines[3]["target"] == two and all(e["time"].endswith("+00:00") for e in lines)


def test_the_page_is_for_admins_escaped_searched_and_paged(tmp_path: Path) -> None:
    config = make_config(tmp_path, page_size_max=2)
    accounts = WebAccounts(config.resolve(Path("state")))
    accounts.add("admin", ADMIN_PW, "admin")
    accounts.add("reader", READER_PW, "readonly")
    for n in range(3):
        audit(config, "token.add", target=f"t{n}", actor=Actor(HOSTILE, "cli", "local"))
    with TestClient(create_app(config), base_url="https://testserver") as client:
        assert login(client, "reader", READER_PW).get("/audit").status_code == 403
        client.cookies.clear()
        login(client, "admin", ADMIN_PW)
        page = client.get("/audit", params={"action": "token"})
        assert page.status_code == 200 and "3 entries, page 1 of 2" in page.text
        assert "<script>" not in page.text and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
        assert "\u202e" not in page.text  # the bidi override shown as text, not obeyed
        assert "t2" in page.text and "t0" not in page.text  # newest first
        assert "t0" in client.get("/audit", params={"action": "token", "page": 2}).text
        logins = client.get("/audit", params={"actor": "ADM", "action": "login"}).text
        assert "1 entry" in logins
        assert client.get("/audit", params={"since": "yesterday"}).status_code == 400
        assert "0 entries" in client.get("/audit", params={"until": "1d", "action": "token"}).text


def test_the_api_needs_an_admin_token(config: Config, client: TestClient) -> None:
    accounts = WebAccounts(config.resolve(Path("state")))
    admin = {"Authorization": f"Bearer {accounts.add_token('script', 'admin')}"}
    reader = {"Authorization": f"Bearer {accounts.add_token('dash', 'readonly')}"}
    audit(config, "account.add", target="x", actor=Actor("ops", "cli", "local"))
    assert client.get("/api/v1/audit").status_code == 401
    assert client.get("/api/v1/audit", headers=reader).status_code == 403
    body = client.get("/api/v1/audit", headers=admin, params={"actor": "op"}).json()
    assert body["total"] == 1 and body["entries"][0]["action"] == "account.add"
    r = client.get("/api/v1/audit", headers=admin, params={"since": "soon"})
    assert r.status_code == 400 and "since" in r.json()["detail"]


def test_api_changes_are_audited_as_the_token(config: Config, client: TestClient) -> None:
    secret = WebAccounts(config.resolve(Path("state"))).add_token("script", "admin")
    qid = hold(config, message())
    assert client.delete(f"/api/v1/quarantine/{qid}", headers={"Authorization": f"Bearer {secret}"}
                         ).status_code == 200  # fmt: skip
    [line] = _lines(config)
    assert line["actor"] == "API token script" and line["via"] == "api" and line["target"] == qid


def test_a_digest_link_release_is_audited_as_the_link(config: Config, client: TestClient) -> None:
    qid = hold(config, message())
    token = release_tokens(config).issue(qid, "u@example.test", 3600)
    assert client.post(f"/release/{token}").status_code == 200
    [line] = _lines(config)
    assert line["actor"] == "digest link" and line["action"] == "message.release"
    assert "to u@example.test" in line["detail"] and line["source"] == "testclient"


def test_message_actions_name_the_actor_set_else_the_cli_user(config: Config) -> None:
    track_admin(config, "HOLD", msg_id="q1", detail="by administrator")
    with acting(Actor("ops", "web", "192.0.2.1")):
        track_admin(config, "RELEASE", msg_id="q2", recipients=iter(["r@example.test"]))
    track_admin(config, "EXPIRE", msg_id="q3")  # done by the software: no audit line
    hold_line, release_line = reversed(_lines(config))
    assert hold_line["via"] == "cli" and hold_line["source"] == "local" and hold_line["actor"]
    assert release_line["actor"] == "ops" and release_line["detail"] == "; to r@example.test"


def test_cli_changes_are_audited_and_listed_as_json(tmp_path: Path) -> None:
    path = tmp_path / "edgeward.toml"
    path.write_text(f'accepted_domains = ["example.org"]\n[server]\nhostname = "mx.example.org"\n'
                    f'data_dir = "{tmp_path}"\n')  # fmt: skip
    c = str(path)
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None) -> str:
        result = runner.invoke(app, list(args), input=stdin)
        assert result.exit_code == 0, result.stderr
        return result.stdout

    run("web", "user", "add", "ops", "-c", c, "--role", "admin", "--password-stdin", stdin="pw one\n")
    run("web", "user", "add", "al", "-c", c, "--role", "user", "--address", "Al@Example.org",
        "--password-stdin", stdin="pw two\n")  # fmt: skip
    enabled = run("web", "user", "totp", "enable", "ops", "-c", c)
    assert enabled.startswith("otpauth://totp/Edgeward%20mx.example.org%3Aops?secret=")
    run("web", "user", "totp", "disable", "ops", "-c", c)
    run("web", "token", "add", "mine", "-c", c, "--role", "user", "--account", "al")
    run("web", "token", "remove", "mine", "-c", c)
    run("web", "user", "remove", "al", "-c", c)
    lines = json.loads(run("web", "audit", "-c", c, "--json"))
    assert [e["action"] for e in reversed(lines)] == [
        "account.add", "account.add", "totp.enable", "totp.disable", "token.add", "token.remove",
        "account.remove",
    ]  # fmt: skip
    assert lines[-2]["detail"] == "user al@example.org" and {e["via"] for e in lines} == {"cli"}
    only = json.loads(run("web", "audit", "-c", c, "--json", "--action", "totp", "--since", "1h"))
    assert [e["action"] for e in only] == ["totp.disable", "totp.enable"]
    assert "totp.enable" in run("web", "audit", "-c", c)
    bad = runner.invoke(app, ["web", "audit", "-c", c, "--since", "later"])
    assert bad.exit_code == 2 and "since" in bad.stderr
    bad = runner.invoke(app, ["web", "user", "add", "x", "-c", c, "--role", "user", "--password-stdin"],
                        input="pw\n")  # fmt: skip
    assert bad.exit_code == 2 and "--address" in bad.stderr
    cfg = load_config(path)
    assert (cfg.resolve(cfg.logging.dir) / "audit.log").stat().st_mode & 0o777 == 0o600


def test_cli_quarantine_actions_are_audited(tmp_path: Path) -> None:
    path = tmp_path / "edgeward.toml"
    path.write_text(f'accepted_domains = ["example.test"]\n[server]\nhostname = "mx.example.test"\n'
                    f'data_dir = "{tmp_path}"\n')  # fmt: skip
    config = load_config(path)
    qid = hold(config, message(), rcpts=("a@example.test", "b@example.test"))
    runner = CliRunner()
    for args in (["export", qid, "-o", str(tmp_path / "x.eml")], ["release", qid, "--to", "a@example.test"],
                 ["delete", qid]):  # fmt: skip
        done = runner.invoke(app, ["quarantine", args[0], "-c", str(path), *args[1:]])
        assert done.exit_code == 0, done.stderr
    lines = list(reversed(_lines(config)))
    assert [e["action"] for e in lines] == ["message.export", "message.release", "message.remove"]
    assert lines[0]["target"] == qid and lines[0]["detail"].endswith("x.eml")
    assert all(e["via"] == "cli" for e in lines) and "to a@example.test" in lines[1]["detail"]


def test_searches_find_names_json_escapes(config: Config) -> None:
    for name in ('back\\slash "quoted"', "Zoë", "plain"):
        audit(config, "login", actor=Actor(name, "web", "192.0.2.1"))
    for needle in ("back\\slash", '"quoted"', "zoë", "ZOË", "lain"):
        assert len(_lines(config, actor=needle)) == 1, needle
    assert len(_lines(config, actor="plain", action="logout")) == 0
