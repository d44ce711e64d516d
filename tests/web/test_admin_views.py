"""The administrators' pages over TestClient with a real spool and real queued messages: one
message shown with hostile headers escaped, each queue action behind its confirmation page and
tracked with the console user as actor, CSRF and role refusals, unknown ids and wrong states,
a selection, the quarantine export's headers, and the configuration, certificates and agents
views."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from fastapi.testclient import TestClient

from edgeward.config.schema import Config
from edgeward.logs.tracking import ADMIN_LOG_NAME, search
from edgeward.queue.model import MessageRecord, QueueState, RecipientRecord
from edgeward.queue.spool import Spool
from edgeward.tls.store import CertificateStore
from tests.web.conftest import ADMIN_PW, READER_PW, csrf_of, hold, login, message

HOSTILE_SUBJECT = "<script>alert(1)</script> \u202eexe.pdf"


def spool_of(config: Config) -> Spool:
    return Spool(config.resolve(Path("queue")))


def enqueue(config: Config, *, subject: str = "queued", sender: str = "s@remote.test") -> str:
    """A message accepted into the spool the way the gateway queues one."""
    data = (
        f'From: "Evil \u202eName" <{sender}>\r\nTo: u@example.test\r\nSubject: {subject}\r\n'
        "X-Probe: <img src=x onerror=alert(2)>\r\nMessage-ID: <q1@remote.test>\r\n\r\nbody\r\n"
    ).encode()
    record = MessageRecord(
        id="", mail_from=sender, recipients=(RecipientRecord("u@example.test"),), received_at=time.time(),
        size=len(data), client_ip="192.0.2.9", client_helo="remote.test", connector="internet",
        message_id="<q1@remote.test>",
    )  # fmt: skip
    return asyncio.run(spool_of(config).accept(record, data))


def state_of(config: Config, msg_id: str) -> QueueState | None:
    try:
        return spool_of(config).load(msg_id).state
    except KeyError:
        return None


def admin_events(config: Config, msg_id: str) -> list[tuple[str, str]]:
    entries = search(config.resolve(config.logging.dir), msg_id=msg_id, name=ADMIN_LOG_NAME)
    return [(str(e["event"]), str(e.get("detail", ""))) for e in entries]


def confirm_and_post(client: TestClient, msg_id: str, action: str, **form: str) -> tuple[str, int, str]:
    page = client.get(f"/queue/{msg_id}/{action}")
    assert page.status_code == 200, page.text
    r = client.post(f"/queue/{msg_id}/{action}", data={"csrf": csrf_of(page.text), **form})
    return page.text, r.status_code, r.text


def test_one_queued_message_is_shown_with_hostile_headers_escaped(config: Config, client: TestClient) -> None:
    msg_id = enqueue(config, subject=HOSTILE_SUBJECT)
    login(client, "reader", READER_PW)
    page = client.get(f"/queue/{msg_id}")
    assert page.status_code == 200
    text = page.text
    assert "<script>alert(1)" not in text and "<img src=x" not in text and "\u202e" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "\\u202eexe.pdf" in text
    assert "&lt;img src=x onerror=alert(2)&gt;" in text
    assert "s@remote.test" in text and "192.0.2.9" in text and "incoming" in text
    # A reader sees no action links; the queue list links each id to this page.
    assert f"/queue/{msg_id}/hold" not in text
    assert f'href="/queue/{msg_id}"' in client.get("/queue").text


def test_each_action_is_confirmed_then_done_and_tracked_with_the_user(
    config: Config, client: TestClient
) -> None:
    msg_id = enqueue(config)
    login(client, "admin", ADMIN_PW)
    assert f'href="/queue/{msg_id}/hold"' in client.get(f"/queue/{msg_id}").text

    confirm, status, _ = confirm_and_post(client, msg_id, "hold", reason="looks odd")
    assert f"Really hold message {msg_id}?" in confirm and 'method="post"' in confirm
    assert status == 200 and state_of(config, msg_id) is QueueState.HOLD
    assert "looks odd" in client.get(f"/queue/{msg_id}").text

    _, status, _ = confirm_and_post(client, msg_id, "release")
    assert status == 200 and state_of(config, msg_id) is QueueState.DEFERRED
    _, status, _ = confirm_and_post(client, msg_id, "retry")
    assert status == 200 and state_of(config, msg_id) is QueueState.INCOMING
    confirm, status, _ = confirm_and_post(client, msg_id, "remove")
    assert "deleted for good" in confirm
    assert status == 200 and state_of(config, msg_id) is None

    assert admin_events(config, msg_id) == [
        ("HOLD", "by admin (web console): looks odd"),
        ("RELEASE", "by admin (web console)"),
        ("RETRY", "by admin (web console)"),
        ("REMOVE", "by admin (web console), no report"),
    ]


def test_the_confirmation_page_changes_nothing_and_a_post_needs_the_csrf_token(
    config: Config, client: TestClient
) -> None:
    msg_id = enqueue(config)
    login(client, "admin", ADMIN_PW)
    for action in ("hold", "remove"):
        assert client.get(f"/queue/{msg_id}/{action}").status_code == 200
        for form in ({}, {"csrf": "forged"}):
            r = client.post(f"/queue/{msg_id}/{action}", data=form)
            assert r.status_code == 403 and "did not come from this console" in r.text
    r = client.post("/queue/bulk", data={"action": "remove", "id": [msg_id]})
    assert r.status_code == 403
    assert state_of(config, msg_id) is QueueState.INCOMING and admin_events(config, msg_id) == []


def test_the_read_only_role_may_look_but_every_action_is_403(config: Config, client: TestClient) -> None:
    msg_id = enqueue(config)
    qid = hold(config, message())
    login(client, "reader", READER_PW)
    csrf = csrf_of(client.get("/queue").text)
    for action in ("retry", "hold", "release", "remove"):
        assert client.get(f"/queue/{msg_id}/{action}").status_code == 403
        assert client.post(f"/queue/{msg_id}/{action}", data={"csrf": csrf}).status_code == 403
    r = client.post("/queue/bulk", data={"csrf": csrf, "action": "remove", "id": [msg_id]})
    assert r.status_code == 403
    assert client.get(f"/quarantine/{qid}/export").status_code == 403
    assert state_of(config, msg_id) is QueueState.INCOMING
    for page in ("/config", "/certificates", "/agents", f"/queue/{msg_id}"):
        assert client.get(page).status_code == 200, page


def test_unknown_ids_actions_and_wrong_states_are_answered_not_failed(
    config: Config, client: TestClient
) -> None:
    msg_id = enqueue(config)
    login(client, "admin", ADMIN_PW)
    csrf = csrf_of(client.get("/queue").text)
    for bad in ("NOSUCHID", "not%20an%20id", "..%2F..%2Fetc"):
        assert client.get(f"/queue/{bad}").status_code == 404
        assert client.get(f"/queue/{bad}/hold").status_code == 404
        assert client.post(f"/queue/{bad}/remove", data={"csrf": csrf}).status_code == 404
    assert client.get(f"/queue/{msg_id}/explode").status_code == 404
    assert client.post(f"/queue/{msg_id}/explode", data={"csrf": csrf}).status_code == 404
    # Incoming: not deferred, so no retry; not held, so no release.
    for action in ("retry", "release"):
        assert client.get(f"/queue/{msg_id}/{action}").status_code == 409
        r = client.post(f"/queue/{msg_id}/{action}", data={"csrf": csrf})
        assert r.status_code == 409 and "incoming" in r.text
    # Being delivered: neither held nor removed under the delivery's feet.
    spool_of(config).claim(msg_id)
    for action in ("hold", "remove"):
        assert client.post(f"/queue/{msg_id}/{action}", data={"csrf": csrf}).status_code == 409
    assert state_of(config, msg_id) is QueueState.ACTIVE


def test_a_selection_is_confirmed_then_acted_on_one_by_one(config: Config, client: TestClient) -> None:
    ids = [enqueue(config), enqueue(config)]
    login(client, "admin", ADMIN_PW)
    listing = client.get("/queue").text
    assert 'action="/queue/bulk"' in listing and f'name="id" value="{ids[0]}"' in listing
    confirm = client.get("/queue/bulk", params={"action": "hold", "id": [*ids, "GONEAWAY"]})
    assert confirm.status_code == 200 and "Really hold 2 messages?" in confirm.text
    assert all(state_of(config, i) is QueueState.INCOMING for i in ids)
    r = client.post(
        "/queue/bulk", data={"csrf": csrf_of(confirm.text), "action": "hold", "id": [*ids, "GONEAWAY"]}
    )
    assert r.status_code == 200 and "2 of 3 done" in r.text and "No such message" in r.text
    assert all(state_of(config, i) is QueueState.HOLD for i in ids)
    assert client.get("/queue/bulk", params={"action": "hold"}).status_code == 400
    assert client.get("/queue/bulk", params={"action": "nuke", "id": ids}).status_code == 404


def test_quarantine_export_is_a_download_never_a_page(config: Config, client: TestClient) -> None:
    data = message(subject=HOSTILE_SUBJECT, filename='"><script>x</script>.html')
    qid = hold(config, data, subject=HOSTILE_SUBJECT)
    login(client, "admin", ADMIN_PW)
    assert f"/quarantine/{qid}/export" in client.get(f"/quarantine/{qid}").text
    r = client.get(f"/quarantine/{qid}/export")
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == f'attachment; filename="{qid}.eml"'
    assert r.headers["x-content-type-options"] == "nosniff"
    assert client.get("/quarantine/abcdefgh12/export").status_code == 404
    assert client.get("/quarantine/..%2Fstate/export").status_code == 404
    [(event, detail)] = admin_events(config, qid)
    assert event == "EXPORT" and detail == "exported from quarantine by admin (web console)"
    assert client.get(f"/quarantine/{qid}").status_code == 200  # an export leaves the entry held


def test_config_view_shows_check_findings_and_no_secret_is_on_any_page(
    tmp_path: Path, client: TestClient
) -> None:
    # A console over a configuration with secrets in it, beside the fixture's plain one.
    from edgeward.web.app import create_app
    from edgeward.web.auth import WebAccounts

    secret_token = "T0KEN-s3cr3t-value"
    key_bytes = "HMAC-key-contents-never-shown-0123456789"
    key = tmp_path / "webhook.key"
    key.write_text(key_bytes)
    key.chmod(0o600)
    risky = Config.model_validate({
        "server": {"data_dir": str(tmp_path / "other"), "hostname": "mx.example.test"},
        "accepted_domains": ["example.test"],
        "queue": {"fsync": False},
        "notify": {"webhook": {"url": f"https://hooks.example.test/s/{secret_token}", "key_file": str(key)}},
        "antivirus": {"updates": {"custom_urls": [f"https://user:{secret_token}@sigs.example.test/x.ndb"]}},
    })  # fmt: skip
    accounts = WebAccounts(risky.resolve(Path("state")))
    accounts.add("reader", READER_PW, "readonly")
    api = {"Authorization": f"Bearer {accounts.add_token('reader', 'readonly')}"}
    with TestClient(create_app(risky), base_url="https://testserver") as other:
        login(other, "reader", READER_PW)
        page = other.get("/config")
        answers = [other.get(p) for p in ("/config", "/agents", "/certificates", "/queue", "/quarantine")]
        answers += [other.get(f"/api/v1/{p}", headers=api) for p in ("config", "config/check", "agents",
                                                                      "certificates")]  # fmt: skip
    assert page.status_code == 200
    assert secret_token not in page.text and "(redacted)" in page.text
    assert "warning" in page.text and "queue.fsync" in page.text and "power failure" in page.text
    assert "[notify]" in page.text and str(key) in page.text  # where the key is, not what it is
    for answer in answers:
        assert answer.status_code == 200, answer.url
        assert secret_token not in answer.text and key_bytes not in answer.text, answer.url
    login(client, "reader", READER_PW)
    assert "mx.example.test" in client.get("/config").text


def test_certificates_view_lists_the_store(config: Config, client: TestClient) -> None:
    CertificateStore(config.resolve(config.tls.store)).ensure_default("mx.example.test", days=30)
    login(client, "reader", READER_PW)
    page = client.get("/certificates")
    assert page.status_code == 200
    assert "CN=mx.example.test" in page.text and "self-signed" in page.text and "smtp" in page.text
    assert ">29<" in page.text or ">30<" in page.text  # days left
    assert "1 certificate(s)" in page.text


def test_agents_view_lists_the_pipeline_thresholds_and_scores(config: Config, client: TestClient) -> None:
    from edgeward.config.scores import SCORE_TABLE

    login(client, "reader", READER_PW)
    page = client.get("/agents")
    assert page.status_code == 200
    for name in ("relay-control", "content-filter"):
        assert f"<td>{name}</td>" in page.text
    assert "anti-spam" in page.text and "hard" in page.text and "enforcing" in page.text
    assert all(f"<td>{name}</td>" in page.text for name in SCORE_TABLE)
