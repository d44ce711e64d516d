"""The policy layer in a running gateway: thresholds from [policy], the IP allow list, track why."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from edgeward.logs.tracking import search
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parents[1] / "content" / "data"


def _message(name: str) -> bytes:
    return (DATA / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _send(port: int, data: bytes, source: str = "127.0.0.2") -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30) as c:
        c.ehlo("client.remote.test")
        c.mail("sender@remote.test")
        c.rcpt("user@example.test")
        return c.data(data)


def _head(message: bytes) -> dict[str, str]:
    head = message.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "replace")
    fields: dict[str, str] = {}
    for line in head.replace("\n\t", " ").replace("\n ", " ").split("\n"):
        name, _, value = line.partition(":")
        fields.setdefault(name, value.strip())
    return fields


def test_the_stamp_threshold_flags_and_track_why_explains(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config = gateway_config(workdir, port=port, sink_port=sink.port, policy={"stamp": 0})
    with InProcessGateway(config):
        code, text = _send(port, _message("ham.eml"))
        assert code == 250
        [message] = sink.wait_for(1)
    head = _head(message)
    assert head["X-Edgeward-Spam-Flag"] == "YES"
    scl = head["X-Edgeward-SCL"]
    report = head["X-Edgeward-Antispam-Report"]
    assert (
        report.startswith(f"SCL:{scl};PCL:")
        and f";TOTAL:{scl};RULE:threshold stamp 0 (total {scl});" in report
    )
    # The phishing level is its own finding (weight 0) and its own stamp.
    pcl = head["X-Edgeward-PCL"]
    assert f";PCL:{pcl};" in report
    assert report.endswith((f"S:SCL_{scl}@eod={scl}", f"S:SCL_{scl}@eod={scl},PCL_{pcl}@eod=0"))
    msg_id = text.decode().rsplit(" ", 1)[-1]
    [receive] = search(workdir / "log", msg_id=msg_id, event="RECEIVE")
    assert receive["decided_by"] == f"threshold stamp 0 (total {scl})"
    config_path = workdir / "edgeward.toml"
    config_path.write_text(f"[server]\ndata_dir = '{workdir}'\n")
    why = subprocess.run(
        [sys.executable, "-m", "edgeward", "track", "why", msg_id, "-c", str(config_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert why.returncode == 0, why.stderr
    lines = why.stdout.splitlines()
    assert f"RECEIVE {msg_id} from <sender@remote.test> to user@example.test" in lines[0]
    assert lines[2].split()[:4] == ["eod", "content-filter", f"SCL_{scl}", scl]
    assert lines[-1] == f"  total {scl}; decided by: threshold stamp 0 (total {scl})"


def test_a_client_on_the_ip_allow_list_skips_anti_spam_but_not_relay_control(
    workdir: Path, sink: SmtpSink
) -> None:
    port = free_port()
    config = gateway_config(workdir, port=port, sink_port=sink.port, policy={"ip_allow": ["127.0.0.2/32"]})
    with InProcessGateway(config):
        assert _send(port, _message("gtube.eml"))[0] == 250
        [message] = sink.wait_for(1)
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
            c.ehlo("client.remote.test")
            c.mail("sender@remote.test")
            assert c.rcpt("x@elsewhere.test")[0] == 550
    head = _head(message)
    assert head["X-Edgeward-SCL"] == "-1"
    assert "RULE:exempt: client on the IP allow list" in head["X-Edgeward-Antispam-Report"]


def test_a_policy_reject_threshold_replaces_the_content_filters(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config = gateway_config(
        workdir, port=port, sink_port=sink.port,
        policy={"reject": "off", "quarantine": 7}, agents={"content_filter": {"reject_threshold": 3}},
    )  # fmt: skip
    with InProcessGateway(config):
        code, _ = _send(port, _message("gtube.eml"))
    assert code == 250  # quarantined, not rejected: [policy] took over from the content filter
    [held] = search(workdir / "log", event="QUARANTINE")
    assert held["decided_by"] == "threshold quarantine 7 (total 9)"
    assert [f["name"] for f in held["findings"]] == ["SCL_9", "PCL_1"]
    assert sink.messages() == []
