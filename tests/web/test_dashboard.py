"""The dashboard page and /api/v1/stats over TestClient, on tracking lines written by the
project's TrackingLog with a clock shared by the writer and the console."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edgeward.config.schema import Config
from edgeward.logs.tracking import DELIVERY_LOG_NAME, TrackingLog
from edgeward.testing.clock import FakeClock
from edgeward.tls.store import CertificateStore
from edgeward.types import Finding
from edgeward.web.app import create_app
from edgeward.web.auth import WebAccounts
from edgeward.web.charts import area_chart, histogram
from tests.web.conftest import ADMIN_PW, READER_PW, login, make_config

# Half a minute into the current minute: certificates are made at the real time, so the
# console's clock stays near it; the events are placed relative to it.
T0 = time.time() // 60 * 60 + 30
AV = Finding("AV_INFECTED", "antivirus", "engine=clamd signature=Eicar-Test-Signature path=/1/eicar.com")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def app_client(config: Config, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(config, now=clock.now), base_url="https://testserver") as c:
        yield c


def _log(config: Config, clock: FakeClock, name: str = "tracking") -> TrackingLog:
    return TrackingLog(config.resolve(config.logging.dir), config.logging, clock=clock, name=name)


def _known_traffic(config: Config, clock: FakeClock) -> None:
    """Received in three different minutes of the last hour, delivered in one, and a refusal."""
    gateway, delivery = _log(config, clock), _log(config, clock, DELIVERY_LOG_NAME)
    for back in (40 * 60, 10 * 60, 0, 0):
        clock.set(T0 - back)
        gateway.event("RECEIVE", msg_id="m", sender="a@remote.test", client_ip="192.0.2.1",
                      findings=[Finding("SCL_2", "content", "", 2)], decided_by="no threshold")  # fmt: skip
    delivery.event("SEND", msg_id="m", sender="a@remote.test", client_ip="192.0.2.1")
    gateway.event("REJECT", msg_id="m2", sender="v@virus.test", client_ip="203.0.113.5", findings=[AV],
                  decided_by="agent antivirus")  # fmt: skip
    gateway.close()
    delivery.close()


def _chart(html: str, series: str) -> int:
    m = re.search(rf'<svg class="chart" data-series="{re.escape(series)}" data-points="(\d+)"', html)
    assert m, f"no chart {series}"
    return int(m.group(1))


def test_the_page_draws_each_series_with_its_points(
    config: Config, clock: FakeClock, app_client: TestClient
) -> None:
    _known_traffic(config, clock)
    CertificateStore(config.resolve(config.tls.store)).ensure_default("mx.example.test", days=20)
    page = login(app_client, "admin", ADMIN_PW).get("/dashboard")
    assert page.status_code == 200
    html = page.text
    assert _chart(html, "received") == 3 and _chart(html, "delivered") == 1 and _chart(html, "rejected") == 1
    assert _chart(html, "quarantined") == 0 and _chart(html, "deferred") == 0 and _chart(html, "bounced") == 0
    assert _chart(html, "scl") == 1 and _chart(html, "av") == 1 and _chart(html, "top-ips") == 2
    assert _chart(html, "rejected-by-agent") == 1 and _chart(html, "queue") == 0
    assert html.count('<svg class="chart"') == 13
    # Each chart has its title and a table; the received table has 60 rows, two of them at 1 and one at 2.
    assert html.count("<title id=") == 13
    received = html.split('<table class="chart-table" data-series="received">')[1].split("</table>")[0]
    assert received.count("<tr><td>") == 60 and received.count("<td>2</td>") == 1
    assert "Eicar-Test-Signature" in html and "agent antivirus" in html
    assert 'class="expiring"' in html  # 20 days left
    week = app_client.get("/dashboard", params={"window": "week"}).text
    assert _chart(week, "received") == 1  # one 168-minute bucket holds them all
    assert 'aria-current="page" class="current">Last week' in week


def test_labels_from_mail_are_escaped_in_the_svg(
    config: Config, clock: FakeClock, app_client: TestClient
) -> None:
    log = _log(config, clock)
    log.event("REJECT", msg_id="", sender="x@<svg onload=alert(1)>.test",
              client_ip="<img src=x onerror=alert(2)>", findings=[Finding("EVIL\u202eTXT.EXE", "rules", "")],
              decided_by="<script>alert(3)</script>")  # fmt: skip
    log.close()
    html = login(app_client, "reader", READER_PW).get("/dashboard").text
    for raw in ("<script>alert", "<svg onload", "<img src=x", "\u202e"):
        assert raw not in html
    svg = html.split('data-series="rejected-by-agent"')[1].split("</svg>")[0]
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in svg
    assert "EVIL\\u202eTXT.EXE" in html.split('data-series="rejected-by-finding"')[1].split("</svg>")[0]
    assert "&lt;svg onload=alert(1)&gt;.test" in html
    assert "script-src 'none'" in app_client.get("/dashboard").headers["content-security-policy"]


def test_login_lands_on_the_dashboard_and_both_roles_see_it(config: Config, app_client: TestClient) -> None:
    assert app_client.get("/dashboard", follow_redirects=False).headers["location"] == "/login"
    assert app_client.get("/", follow_redirects=False).headers["location"] == "/login"
    for name, password in (("reader", READER_PW), ("admin", ADMIN_PW)):
        form = app_client.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf
        r = app_client.post("/login", data={"name": name, "password": password, "csrf": csrf.group(1)},
                            follow_redirects=False)  # fmt: skip
        assert r.headers["location"] == "/dashboard"
        assert app_client.get("/", follow_redirects=False).headers["location"] == "/dashboard"
        page = app_client.get("/dashboard")
        assert page.status_code == 200 and f"{name} (" in page.text and '<a href="/dashboard">' in page.text
    bad = app_client.get("/dashboard", params={"window": "<month>"})
    assert bad.status_code == 400 and "hour, day, week" in bad.text and "<month>" not in bad.text


def _token(config: Config, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {WebAccounts(config.resolve(Path('state'))).add_token(role, role)}"}


def test_the_api_answers_the_same_figures(config: Config, clock: FakeClock, app_client: TestClient) -> None:
    _known_traffic(config, clock)
    reader = _token(config, "readonly")
    got = app_client.get("/api/v1/stats", headers=reader, params={"window": "day"})
    assert got.status_code == 200
    body = got.json()
    assert body["window"] == "day" and body["bucket_seconds"] == 1440 and len(body["times"]) == 60
    assert set(body["series"]) == {"received", "delivered", "rejected", "quarantined", "deferred", "bounced"}
    assert body["totals"]["received"] == 4 and sum(body["series"]["received"]) == 4
    assert body["scl"][2] == 4 and len(body["scl"]) == 10
    assert body["av"] == [{"finding": "AV_INFECTED", "signature": "Eicar-Test-Signature", "count": 1}]
    assert body["top_ips"][0] == {"name": "192.0.2.1", "count": 4}
    assert body["rejected_by_agent"] == [{"name": "agent antivirus", "count": 1}]
    assert body["queue"] == {"incoming": 0, "active": 0, "deferred": 0, "hold": 0, "corrupt": 0}
    assert body["certificates"] == [] and body["damaged_lines"] == 0
    assert app_client.get("/api/v1/stats", headers=reader).json()["window"] == "hour"

    bad = app_client.get("/api/v1/stats", headers=reader, params={"window": "month"})
    assert bad.status_code == 400 and "unknown window" in bad.json()["detail"]
    assert app_client.get("/api/v1/stats").status_code == 401
    doc = app_client.get("/api/v1/openapi.json").json()["paths"]["/api/v1/stats"]["get"]
    assert "400" in doc["responses"] and "window" in {p["name"] for p in doc["parameters"]}


def test_new_lines_are_counted_once_by_page_api_and_metrics(
    config: Config, clock: FakeClock, tmp_path: Path
) -> None:
    open_config = make_config(tmp_path, metrics_allow=["0.0.0.0/0"])
    _known_traffic(open_config, clock)
    reader = _token(open_config, "readonly")
    app = create_app(open_config, now=clock.now)
    with TestClient(app, base_url="https://testserver", client=("192.0.2.1", 5000)) as client:
        assert 'edgeward_tracking_events_total{event="RECEIVE"} 4.0' in client.get("/metrics").text
        log = _log(open_config, clock)
        log.event("RECEIVE", msg_id="n", client_ip="192.0.2.1")
        log.close()
        assert client.get("/api/v1/stats", headers=reader).json()["totals"]["received"] == 5
        assert 'edgeward_tracking_events_total{event="RECEIVE"} 5.0' in client.get("/metrics").text
    stats = app.state.console.stats
    assert stats.bytes_read == sum(p.stat().st_size for p in (tmp_path / "log").iterdir())


def test_chart_geometry() -> None:
    times = [float(n * 60) for n in range(60)]
    chart = area_chart("received", times, [0] * 58 + [5, 10], 60)
    assert chart.points == 2 and chart.total == 15 and chart.y_ticks[-1].label == "10"
    assert len(chart.line.split()) == 60 and len(chart.rows) == 60
    last_x, last_y = map(float, chart.line.split()[-1].split(","))
    assert last_x == chart.right and last_y == 10.0  # the peak touches the top of the plot
    scl = histogram("scl", "SCL", [str(n) for n in range(10)], [0, 5, 0, 0, 0, 0, 0, 0, 0, 10], "SCL")
    assert scl.points == 2 and scl.bars[9].h == 2 * scl.bars[1].h and scl.bars[0].h == 0
