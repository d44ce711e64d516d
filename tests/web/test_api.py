"""The REST API and /metrics over TestClient: tokens and roles, paging caps, JSON 4xx for bad
input, the OpenAPI document, and the metrics' sources and access rule."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from fastapi.testclient import TestClient

from edgeward.config.schema import Config
from edgeward.logs.tracking import TrackingLog
from edgeward.tls.store import CertificateStore
from edgeward.web.app import create_app
from edgeward.web.auth import WebAccounts
from tests.web.conftest import hold, make_config, message


def _tokens(config: Config) -> tuple[dict[str, str], dict[str, str]]:
    accounts = WebAccounts(config.resolve(Path("state")))
    admin = accounts.add_token("script", "admin")
    reader = accounts.add_token("dashboard", "readonly")
    return {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {reader}"}


def test_api_needs_a_token_and_an_admin_one_to_release(config: Config, client: TestClient) -> None:
    admin, reader = _tokens(config)
    qid = hold(config, message(), subject="<b>hi</b>", rcpts=("a@example.test", "b@example.test"))
    r = client.get("/api/v1/quarantine")
    assert r.status_code == 401 and r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/v1/quarantine", headers={"Authorization": "Bearer ew_wrong"}).status_code == 401
    found = client.get("/api/v1/quarantine", headers=reader, params={"subject": "<b>"}).json()
    assert found["total"] == 1 and found["entries"][0]["qid"] == qid
    assert "queue_record" not in found["entries"][0]
    shown = client.get(f"/api/v1/quarantine/{qid}", headers=reader).json()
    assert shown["view"]["attachments"][0]["name"] == "report.pdf"
    r = client.post(f"/api/v1/quarantine/{qid}/release", headers=reader, json={})
    assert r.status_code == 403 and r.json() == {"detail": "this token is read-only"}
    assert client.get(f"/api/v1/quarantine/{qid}/release", headers=admin).status_code == 405
    r = client.post(
        f"/api/v1/quarantine/{qid}/release", headers=admin, json={"recipients": ["b@example.test"]}
    )
    assert r.status_code == 200 and r.json()["remaining"] == ["a@example.test"]
    r = client.post(f"/api/v1/quarantine/{qid}/release", headers=admin, json={"recipients": ["z@x.test"]})
    assert r.status_code == 400 and "not a recipient" in r.json()["detail"]
    r = client.post(f"/api/v1/quarantine/{qid}/release", headers=admin)  # no body: everyone left
    assert r.status_code == 200 and r.json()["recipients"] == ["a@example.test"]
    assert client.get(f"/api/v1/quarantine/{qid}", headers=reader).status_code == 404


def test_bad_input_is_a_json_4xx(config: Config, client: TestClient) -> None:
    _admin, reader = _tokens(config)
    for path, params in [
        ("/api/v1/quarantine", {"page": "0"}),
        ("/api/v1/quarantine", {"page_size": "abc"}),
        ("/api/v1/quarantine", {"since": "-5"}),
        ("/api/v1/quarantine", {"sender": "x" * 600}),
        ("/api/v1/quarantine/..%2F..%2Fetc%2Fpasswd", {}),
        ("/api/v1/quarantine/" + "z" * 300, {}),
        ("/api/v1/tracking", {"since": "the day before"}),
        ("/api/v1/tracking", {"event": "NOPE"}),
        ("/api/v1/tracking", {"limit": "0"}),
    ]:
        r = client.get(path, headers=reader, params=params)
        assert 400 <= r.status_code < 500, (path, params, r.status_code)
        assert "detail" in r.json()
    r = client.post("/api/v1/quarantine/abcdefgh12/release", headers=_admin, content=b"{not json")
    assert r.status_code == 422 and "detail" in r.json()


def test_page_size_is_capped(tmp_path: Path) -> None:
    config = make_config(tmp_path, page_size_max=3)
    _admin, reader = _tokens(config)
    for n in range(5):
        hold(config, message(), subject=f"n{n}")
    with TestClient(create_app(config), base_url="https://testserver") as client:
        page = client.get("/api/v1/quarantine", headers=reader, params={"page_size": 1000}).json()
        assert page["page_size"] == 3 and len(page["entries"]) == 3 and page["total"] == 5
        last = client.get("/api/v1/quarantine", headers=reader, params={"page": 2, "page_size": 1000}).json()
        assert len(last["entries"]) == 2


def test_tracking_api(config: Config, client: TestClient) -> None:
    _admin, reader = _tokens(config)
    folder = config.resolve(config.logging.dir)
    folder.mkdir(parents=True)
    log = TrackingLog(folder, config.logging)
    for n in range(3):
        log.event("RECEIVE", msg_id=f"m{n}", sender="s@remote.test", recipients=["u@example.test"])
    log.event("SEND", msg_id="m0", sender="s@remote.test", recipients=["u@example.test"], next_hop="sink")
    log.close()
    got = client.get("/api/v1/tracking", headers=reader, params={"event": "receive", "limit": 2}).json()
    assert [e["msg_id"] for e in got["entries"]] == ["m0", "m1"] and got["more"] is True
    got = client.get("/api/v1/tracking", headers=reader, params={"msg_id": "m0", "since": "1h"}).json()
    assert [e["event"] for e in got["entries"]] == ["RECEIVE", "SEND"]


def test_queue_api_pages_and_refuses_unknown_states(config: Config, client: TestClient) -> None:
    admin, reader = _tokens(config)
    for _ in range(2):
        qid = hold(config, message())
        assert client.post(f"/api/v1/quarantine/{qid}/release", headers=admin).status_code == 200
    got = client.get("/api/v1/queue", headers=reader, params={"state": "incoming", "page_size": 1}).json()
    assert got["total"] == 2 and len(got["entries"]) == 1 and got["entries"][0]["state"] == "incoming"
    assert got["entries"][0]["recipients"][0]["address"] == "u@example.test"
    r = client.get("/api/v1/queue", headers=reader, params={"state": "nowhere"})
    assert r.status_code == 400 and "unknown queue state" in r.json()["detail"]
    assert client.get("/api/v1/queue").status_code == 401


def test_openapi_document_lists_the_api_only(client: TestClient) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    base = "/api/v1/quarantine"
    queue = "/api/v1/queue/{msg_id}"
    assert set(doc["paths"]) == {
        base, base + "/{qid}", base + "/{qid}/release", base + "/{qid}/export", "/api/v1/tracking",
        "/api/v1/queue", queue, queue + "/retry", queue + "/hold", queue + "/release", "/api/v1/config",
        "/api/v1/config/check", "/api/v1/certificates", "/api/v1/agents", "/api/v1/stats", "/api/v1/audit",
    }  # fmt: skip
    assert "post" in doc["paths"]["/api/v1/quarantine/{qid}/release"]
    assert client.get("/docs").status_code == 404  # the interactive docs would load script from a CDN


def test_metrics_count_what_is_on_disk_and_only_for_allowed_sources(config: Config, tmp_path: Path) -> None:
    folder = config.resolve(config.logging.dir)
    folder.mkdir(parents=True)
    log = TrackingLog(folder, config.logging)
    for n in range(3):
        log.event("RECEIVE", msg_id=f"m{n}")
    log.event("REJECT", msg_id="")
    log.close()
    hold(config, message())
    hold(config, message())
    CertificateStore(config.resolve(config.tls.store)).ensure_default("mx.example.test", days=30)
    # TestClient's peer is "testclient": not an address, so not allowed by the loopback default.
    with TestClient(create_app(config), base_url="https://testserver") as client:
        r = client.get("/metrics")
        assert r.status_code == 403 and "detail" in r.json()
    open_config = make_config(tmp_path, metrics_allow=["0.0.0.0/0", "::/0"])
    with TestClient(
        create_app(open_config), base_url="https://testserver", client=("192.0.2.1", 5000)
    ) as client:
        text = client.get("/metrics").text
    assert 'edgeward_tracking_events_total{event="RECEIVE"} 3.0' in text
    assert 'edgeward_tracking_events_total{event="REJECT"} 1.0' in text
    assert 'edgeward_tracking_events_total{event="SEND"} 0.0' in text
    assert "edgeward_quarantine_entries 2.0" in text
    assert 'edgeward_queue_messages{state="incoming"} 0.0' in text
    [days] = [line for line in text.splitlines() if line.startswith("edgeward_certificate_expiry_days{")]
    assert 29 < float(days.rsplit(" ", 1)[1]) <= 30


NASTY = ["", "0", "-1", "NaN", "1e309", "x" * 2000, "\x00", "../../etc/passwd", "%", "' OR 1=1 --", "\u202e",
         "<script>", "2h", "9" * 40]  # fmt: skip


def test_no_5xx_for_any_parameter_the_openapi_document_names(config: Config, client: TestClient) -> None:
    admin, _reader = _tokens(config)
    hold(config, message())
    doc = client.get("/api/v1/openapi.json").json()
    tried = 0
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            params = op.get("parameters", [])
            for param in params:
                for value in NASTY:
                    url, query = path, {}
                    if param["in"] == "path":
                        encoded = urllib.parse.quote(value, safe="") or "x"
                        url = path.replace("{" + param["name"] + "}", encoded)
                    else:
                        query = {param["name"]: value}
                    url = url.replace("{qid}", "abcdefgh12")
                    r = client.request(method, url, params=query, headers=admin)
                    assert r.status_code < 500, (method, url, query, r.status_code, r.text)
                    tried += 1
    for body in ([], {"recipients": "x"}, {"recipients": [1]}, {"recipients": ["a" * 400]}, "null", {"x": 1}):
        r = client.post("/api/v1/quarantine/abcdefgh12/release", json=body, headers=admin)
        assert 400 <= r.status_code < 500 and "detail" in r.json()
    assert tried > 200


def test_an_unreadable_tracking_log_is_a_503(config: Config, client: TestClient) -> None:
    _admin, reader = _tokens(config)
    (config.resolve(Path("log")) / "tracking.log").mkdir(parents=True)
    r = client.get("/api/v1/tracking", headers=reader)
    assert r.status_code == 503 and "cannot be read" in r.json()["detail"]
