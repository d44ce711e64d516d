"""The administrators' /api/v1 calls over TestClient with a real spool: queue show and actions
by token role, 404/409 JSON errors, tracking with the token as actor, the export's headers, and
the configuration, check, certificates and agents documents (the last equal to the CLI's)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from edgeward.cli.main import app as cli
from edgeward.config.schema import Config
from edgeward.queue.model import QueueState
from edgeward.tls.store import CertificateStore
from edgeward.web.app import create_app
from edgeward.web.auth import WebAccounts
from tests.web.conftest import hold, message
from tests.web.test_admin_views import HOSTILE_SUBJECT, admin_events, enqueue, spool_of, state_of


def _tokens(config: Config) -> tuple[dict[str, str], dict[str, str]]:
    accounts = WebAccounts(config.resolve(Path("state")))
    admin = accounts.add_token("script", "admin")
    reader = accounts.add_token("dashboard", "readonly")
    return {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {reader}"}


def test_queue_show_takes_any_token_and_escapes_the_headers(config: Config, client: TestClient) -> None:
    admin, reader = _tokens(config)
    msg_id = enqueue(config, subject=HOSTILE_SUBJECT)
    assert client.get(f"/api/v1/queue/{msg_id}").status_code == 401
    got = client.get(f"/api/v1/queue/{msg_id}", headers=reader).json()
    assert got["id"] == msg_id and got["state"] == "incoming" and got["mail_from"] == "s@remote.test"
    assert got["recipients"][0]["address"] == "u@example.test" and got["attempts"] == 0
    assert got["actions"] == ["hold", "remove"]
    subject = next(h for h in got["headers"] if h.startswith("Subject:"))
    assert "\u202e" not in subject and "\\u202eexe.pdf" in subject
    r = client.get("/api/v1/queue/NOSUCHID", headers=admin)
    assert r.status_code == 404 and r.json() == {"detail": "no such message in the queue"}


def test_actions_need_an_admin_token_and_are_tracked_with_its_name(
    config: Config, client: TestClient
) -> None:
    admin, reader = _tokens(config)
    msg_id = enqueue(config)
    for method, url in (("POST", "/hold"), ("POST", "/release"), ("POST", "/retry"), ("DELETE", "")):
        r = client.request(method, f"/api/v1/queue/{msg_id}{url}", headers=reader)
        assert r.status_code == 403 and r.json() == {"detail": "this token is read-only"}
        assert client.request(method, f"/api/v1/queue/{msg_id}{url}").status_code == 401
    assert state_of(config, msg_id) is QueueState.INCOMING

    r = client.post(f"/api/v1/queue/{msg_id}/hold", headers=admin, json={"reason": "checking"})
    assert r.status_code == 200 and r.json()["message"]["state"] == "hold"
    assert r.json()["message"]["hold_reason"] == "checking"
    r = client.post(f"/api/v1/queue/{msg_id}/hold", headers=admin)
    assert r.status_code == 409 and r.json()["detail"] == f"message {msg_id} is held already (checking)"
    assert (
        client.post(f"/api/v1/queue/{msg_id}/release", headers=admin).json()["message"]["state"] == "deferred"
    )
    assert client.post(f"/api/v1/queue/{msg_id}/release", headers=admin).status_code == 409
    assert (
        client.post(f"/api/v1/queue/{msg_id}/retry", headers=admin).json()["message"]["state"] == "incoming"
    )
    r = client.post(f"/api/v1/queue/{msg_id}/retry", headers=admin)
    assert r.status_code == 409 and r.json()["detail"] == f"message {msg_id} is incoming, not deferred"
    assert client.delete(f"/api/v1/queue/{msg_id}", headers=admin).status_code == 200
    assert state_of(config, msg_id) is None
    r = client.delete(f"/api/v1/queue/{msg_id}", headers=admin)
    assert r.status_code == 404 and r.json()["detail"]
    assert admin_events(config, msg_id) == [
        ("HOLD", "by API token script: checking"),
        ("RELEASE", "by API token script"),
        ("RETRY", "by API token script"),
        ("REMOVE", "by API token script, no report"),
    ]


def test_a_message_being_delivered_is_a_409_and_bad_bodies_are_422(
    config: Config, client: TestClient
) -> None:
    admin, _ = _tokens(config)
    msg_id = enqueue(config)
    spool_of(config).claim(msg_id)
    for method, url in (("POST", "/hold"), ("DELETE", "")):
        r = client.request(method, f"/api/v1/queue/{msg_id}{url}", headers=admin)
        assert r.status_code == 409 and "being delivered" in r.json()["detail"]
    for body in ({"reason": ""}, {"reason": "x" * 201}, {"reason": 5}, []):
        r = client.post(f"/api/v1/queue/{msg_id}/hold", headers=admin, json=body)
        assert r.status_code == 422 and "detail" in r.json()
    assert state_of(config, msg_id) is QueueState.ACTIVE


def test_export_is_an_admin_download_with_a_safe_name(config: Config, client: TestClient) -> None:
    admin, reader = _tokens(config)
    data = message(subject=HOSTILE_SUBJECT)
    qid = hold(config, data)
    assert client.get(f"/api/v1/quarantine/{qid}/export", headers=reader).status_code == 403
    r = client.get(f"/api/v1/quarantine/{qid}/export", headers=admin)
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == f'attachment; filename="{qid}.eml"'
    r = client.get("/api/v1/quarantine/abcdefgh12/export", headers=admin)
    assert r.status_code == 404 and r.json()["detail"]
    assert admin_events(config, qid) == [("EXPORT", "exported from quarantine by API token script")]


def test_config_and_check_documents_hold_no_secret(tmp_path: Path) -> None:
    secret = "hunter2-webhook-capability"
    key = tmp_path / "hook.key"
    key.write_bytes(b"k" * 32)
    key.chmod(0o600)
    config = Config.model_validate({
        "server": {"data_dir": str(tmp_path / "data"), "hostname": "mx.example.test"},
        "accepted_domains": ["example.test"], "queue": {"fsync": False},
        "notify": {"webhook": {"url": f"https://hooks.example.test/{secret}", "key_file": str(key)}},
        "antivirus": {"updates": {"mirror": f"https://u:{secret}@db.example.test/?token={secret}"}},
    })  # fmt: skip
    _admin, reader = _tokens(config)
    with TestClient(create_app(config), base_url="https://testserver") as client:
        r = client.get("/api/v1/config", headers=reader)
        check = client.get("/api/v1/config/check", headers=reader).json()
    assert r.status_code == 200 and secret not in r.text
    doc = r.json()
    assert doc["notify"]["webhook"]["url"] == "(redacted)"
    assert doc["antivirus"]["updates"]["mirror"] == "https://(redacted)@db.example.test/?token=(redacted)"
    assert doc["server"]["hostname"] == "mx.example.test" and doc["queue"]["fsync"] is False
    assert set(doc) == set(config.model_dump(mode="json"))  # every section, as 'config show'
    assert check["ok"] is True and check["errors"] == 0 and check["warnings"] >= 1
    assert {"severity": "warning", "key": "queue.fsync",
            "text": "false: accepted mail can be lost in a power failure"} in check["findings"]  # fmt: skip


def test_certificates_document_is_the_store_list_with_days_left(config: Config, client: TestClient) -> None:
    _, reader = _tokens(config)
    assert client.get("/api/v1/certificates", headers=reader).json() == {"certificates": [], "pending": []}
    CertificateStore(config.resolve(config.tls.store)).ensure_default("mx.example.test", days=30)
    [cert] = client.get("/api/v1/certificates", headers=reader).json()["certificates"]
    assert cert["subject"] == "CN=mx.example.test" and "mx.example.test" in cert["sans"]
    assert cert["self_signed"] is True and cert["expired"] is False and 29 <= cert["days_left"] <= 30
    assert cert["bindings"] == [{"service": "smtp", "connector": None}]
    assert client.get("/api/v1/certificates").status_code == 401


def test_agents_document_is_what_the_cli_prints(tmp_path: Path) -> None:
    path = tmp_path / "edgeward.toml"
    path.write_text(
        f'accepted_domains = ["example.test"]\n[server]\ndata_dir = "{tmp_path / "data"}"\n'
        'hostname = "mx.example.test"\n[scores]\nSPF_FAIL = 4.5\n'
    )
    from edgeward.config.load import load_config

    config = load_config(path)
    _, reader = _tokens(config)
    printed = CliRunner().invoke(cli, ["agents", "list", "-c", str(path), "--json"])
    assert printed.exit_code == 0, printed.output
    with TestClient(create_app(config), base_url="https://testserver") as client:
        got = client.get("/api/v1/agents", headers=reader).json()
    assert got == json.loads(printed.output)
    assert got["scores"]["SPF_FAIL"]["weight"] == 4.5 and got["agents"][0]["stages"]
