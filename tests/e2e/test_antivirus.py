"""The anti-virus agent in a running gateway, over SMTP, against a real clamd.

clamd (Debian ``clamav-daemon``) runs on a private socket with the database the tests build
(``tests/scanning/clamd.py``). EICAR is refused in every wrapping clamd unpacks; clean mail is
delivered; a clamd that is killed or frozen during a load gives ``451 4.7.0`` and loses nothing,
and mail flows again once clamd is back, without restarting the gateway.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import smtplib
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path

import pytest

from edgeward.config.schema import Config
from edgeward.quarantine.reasons import plain_reason
from edgeward.quarantine.store import QuarantineStore
from tests.e2e.harness import (
    NO_OUTSIDE_DNS,
    GatewayProcess,
    InProcessGateway,
    SmtpSink,
    free_port,
    gateway_config,
    shared_tmpdir,
)
from tests.scanning.clamd import CLAMD, EICAR, STREAM_MAX, Clamd, start_clamd

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def clamd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    if CLAMD is None:
        pytest.skip("clamd is not installed (scripts/install-test-deps.sh)")
    server = start_clamd(tmp_path_factory.mktemp("clamd"))
    yield server
    server.stop()


@pytest.fixture
def clamd(clamd_server: Clamd) -> Iterator[Clamd]:
    """The module's clamd, running and thawed at the start and end of every test."""
    if clamd_server.proc is None:
        clamd_server.start()
    yield clamd_server
    if clamd_server.proc is None:
        clamd_server.start()
    else:
        clamd_server.thaw()


def _config(workdir: Path, port: int, sink: SmtpSink, clamd: Clamd, **av: object) -> Config:
    antivirus = {
        "enabled": True,
        "clamd": {"socket": str(clamd.socket), "timeout": 3, "max_stream": STREAM_MAX, "chunk_size": 8192},
        # Off unless a test is about it: the others expect clamd back the moment it is.
        "retry_after": 0,
        **av,
    }
    return gateway_config(workdir, port=port, sink_port=sink.port, antivirus=antivirus)


def _message(subject: str, body: str = "Hello.\n") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@remote.test"
    msg["To"] = "user@example.test"
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def _zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


def _plain() -> bytes:
    # EICAR as the whole text body, 7bit, as a careless forwarder would send it.
    head = b"From: sender@remote.test\r\nTo: user@example.test\r\nSubject: plain\r\n\r\n"
    return head + EICAR + b"\r\n"


def _attached(subject: str, data: bytes, filename: str, maintype: str, subtype: str) -> bytes:
    msg = _message(subject)
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)  # base64
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _forwarded() -> bytes:
    inner = _message("inner")
    inner.add_attachment(EICAR, maintype="application", subtype="octet-stream", filename="eicar.com")
    outer = _message("forwarded")
    outer.add_attachment(inner)  # message/rfc822
    return outer.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


INFECTED = {
    "plain": _plain,
    "base64": lambda: _attached("b64", EICAR, "eicar.com", "application", "octet-stream"),
    "zipped": lambda: _attached("zip", _zip("eicar.com", EICAR), "eicar.zip", "application", "zip"),
    "zipped twice": lambda: _attached(
        "zip2", _zip("inner.zip", _zip("eicar.com", EICAR)), "outer.zip", "application", "zip"
    ),
    "message/rfc822": _forwarded,
}


def _clean(n: int = 0) -> bytes:
    return _message(f"clean {n}", f"Quarterly figures, part {n}.\n").as_bytes().replace(b"\n", b"\r\n")


def _send(port: int, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=60) as c:
        c.ehlo("client.remote.test")
        c.mail("sender@remote.test")
        c.rcpt("user@example.test")
        try:
            return c.data(data)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error


@pytest.mark.parametrize("kind", list(INFECTED))
def test_eicar_is_refused_in_every_wrapping(
    kind: str, workdir: Path, sink: SmtpSink, clamd: Clamd
) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink, clamd)):
        code, text = _send(port, INFECTED[kind]())
    assert code == 550
    assert text.startswith(b"5.7.1 Virus found: Edgeward-Eicar-"), text
    assert sink.messages() == []


def test_eicar_in_a_message_past_the_inline_budget_is_refused(
    workdir: Path, sink: SmtpSink, clamd: Clamd
) -> None:
    """The message goes to a spool file as it arrives; clamd reads the file, and a large clean
    message is delivered whole. (Under the test clamd's 1 MiB stream limit.)"""
    filler = bytes(range(256)) * 2400  # 600 KB, base64 800 KB: past the 512 KiB inline budget
    infected = _message("big")
    infected.add_attachment(filler, maintype="application", subtype="pdf", filename="report.pdf")
    infected.add_attachment(_zip("eicar.com", EICAR), maintype="application", subtype="zip", filename="x.zip")
    clean = _message("big clean")
    clean.add_attachment(filler, maintype="application", subtype="pdf", filename="report.pdf")
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink, clamd)):
        code, text = _send(port, infected.as_bytes().replace(b"\n", b"\r\n"))
        assert code == 550 and text.startswith(b"5.7.1 Virus found: Edgeward-Eicar-"), text
        assert _send(port, clean.as_bytes().replace(b"\n", b"\r\n"))[0] == 250
        [delivered] = sink.wait_for(1)
    assert base64.b64encode(filler)[:76] in delivered


def test_clean_mail_is_delivered_and_refusals_tracked(workdir: Path, sink: SmtpSink, clamd: Clamd) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink, clamd)):
        assert _send(port, _clean())[0] == 250
        assert _send(port, INFECTED["zipped"]())[0] == 550
        [delivered] = sink.wait_for(1)
    assert b"Quarterly figures" in delivered
    tracking = "".join(p.read_text() for p in (workdir / "log").rglob("*track*"))
    assert "AV_INFECTED" in tracking and "engine=clamd" in tracking


def test_quarantine_action_holds_the_infected_message(workdir: Path, sink: SmtpSink, clamd: Clamd) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink, clamd, action="quarantine")):
        assert _send(port, INFECTED["base64"]())[0] == 250
    [entry] = QuarantineStore(workdir / "quarantine").list()
    assert entry.reason == "antivirus" and "AV_INFECTED" in entry.findings
    assert entry.recipients == ("user@example.test",)
    assert sink.messages() == []
    [engine] = [r for r in entry.engines if r.finding == "AV_INFECTED"]
    assert engine.engine == "clamd" and "Eicar" in engine.signature
    assert plain_reason(entry) == f"contains a virus ({engine.signature})"


def test_clamd_killed_during_a_load_defers_and_loses_nothing(
    workdir: Path, sink: SmtpSink, clamd: Clamd
) -> None:
    port = free_port()
    results: list[tuple[str, int]] = []
    lock = threading.Lock()
    killed = threading.Event()

    def one(n: int) -> None:
        kind = "infected" if n % 3 == 0 else "clean"
        data = INFECTED["zipped"]() if kind == "infected" else _clean(n)
        code, _ = _send(port, data)
        with lock:
            results.append((kind, code))
            if len(results) == 6 and not killed.is_set():
                clamd.kill()
                killed.set()

    with InProcessGateway(_config(workdir, port, sink, clamd)):
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, range(24)))
        assert killed.is_set()
        after = _send(port, _clean(99))  # clamd is certainly gone now
        accepted = sum(1 for kind, code in results if code == 250)
        delivered = sink.wait_for(accepted) if accepted else []
    assert after[0] == 451 and after[1].startswith(b"4.7.0 Virus scanner unavailable")
    assert {code for _, code in results} <= {250, 451, 550}
    # Nothing infected got through, whether clamd was up (550) or down (451).
    assert all(code in (451, 550) for kind, code in results if kind == "infected")
    # Every 250 was delivered (nothing lost), and only clean mail was.
    assert len(delivered) == accepted
    assert all(b"Quarterly figures" in m for m in delivered)


def test_clamd_frozen_times_out_with_451_and_recovers(workdir: Path, sink: SmtpSink, clamd: Clamd) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink, clamd)):
        assert _send(port, _clean(1))[0] == 250
        clamd.freeze()
        code, text = _send(port, _clean(2))
        assert (code, text) == (451, b"4.7.0 Virus scanner unavailable, try again later")
        code, _ = _send(port, INFECTED["base64"]())
        assert code == 451
        clamd.thaw()
        assert _send(port, _clean(3))[0] == 250
        assert _send(port, INFECTED["base64"]())[0] == 550
        delivered = sink.wait_for(2)
    assert len(delivered) == 2


def test_clamd_frozen_is_paused_so_mail_is_deferred_at_once_then_probed_again(
    workdir: Path, sink: SmtpSink, clamd: Clamd
) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink, clamd, retry_after=1)):
        clamd.freeze()
        assert _send(port, _clean(1))[0] == 451  # after clamd's time limit
        assert _send(port, INFECTED["plain"]())[0] == 451  # paused: clamd is not asked
        logs = "".join(p.read_text() for p in (workdir / "log").rglob("*.log"))
        assert "not asked again" in logs
        clamd.thaw()
        for _ in range(20):  # the pause ends; the next scan probes clamd and closes the breaker
            if _send(port, _clean(2))[0] == 250:
                break
            time.sleep(0.25)
        assert _send(port, INFECTED["plain"]())[0] == 550
        [delivered] = sink.wait_for(1)
    assert b"part 2" in delivered


def test_clamd_restarted_brings_mail_back_without_a_gateway_restart(
    workdir: Path, sink: SmtpSink, clamd: Clamd
) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink, clamd)):
        clamd.kill()
        assert _send(port, _clean(1))[0] == 451
        clamd.start()
        assert _send(port, _clean(2))[0] == 250
        assert _send(port, INFECTED["plain"]())[0] == 550
        [delivered] = sink.wait_for(1)
    assert b"part 2" in delivered


def test_base64_is_decoded_not_matched_raw(clamd: Clamd) -> None:
    # Guard for the wrapping tests: the base64 form does not contain EICAR's bytes.
    assert EICAR not in INFECTED["base64"]() and base64.b64encode(EICAR)[:20] in INFECTED["base64"]()


def test_serve_as_the_service_user_scans_through_clamds_socket(workdir: Path, sink: SmtpSink) -> None:
    # The real deployment: `edgeward serve` drops to its service user, who must reach clamd's socket.
    if CLAMD is None:
        pytest.skip("clamd is not installed (scripts/install-test-deps.sh)")
    server = start_clamd(shared_tmpdir("edgeward-clamd-"), shared=True)
    try:
        port = free_port()
        config = _init(workdir, port, sink)
        config.write_text(
            config.read_text()
            + f"\n[antivirus]\nenabled = true\n\n[antivirus.clamd]\nsocket = '{server.socket}'\n"
            + f"max_stream = {STREAM_MAX}\n"
        )
        gateway = GatewayProcess(config, port).start()
        try:
            code, text = _send(port, INFECTED["zipped twice"]())
            assert code == 550 and text.startswith(b"5.7.1 Virus found: Edgeward-Eicar-"), text
            assert _send(port, _clean(7))[0] == 250
            [delivered] = sink.wait_for(1)
        finally:
            gateway.stop()
        assert b"part 7" in delivered
        code, out = _av_status(config)
        assert code == 0 and json.loads(out)["engines"][0]["healthy"] is True
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def _init(workdir: Path, port: int, sink: SmtpSink) -> Path:
    args = ["init", "--dir", str(workdir / "gw"), "--hostname", "mx.example.test", "--listen",
            f"127.0.0.1:{port}", "--accept-domain", "example.test",
            "--smart-host", f"127.0.0.1:{sink.port}"]  # fmt: skip
    command = [sys.executable, "-m", "edgeward", *args]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    (workdir / "gw").chmod(0o755)
    config = workdir / "gw" / "edgeward.toml"
    config.write_text(config.read_text() + NO_OUTSIDE_DNS)
    return config


def _av_status(config: Path) -> tuple[int, str]:
    out = subprocess.run([sys.executable, "-m", "edgeward", "av", "status", "-c", str(config), "--json"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    return out.returncode, out.stdout


@pytest.mark.parametrize("require", ["any", "all"])
def test_the_bias_over_clamd_and_a_hash_list(
    require: str, workdir: Path, sink: SmtpSink, clamd: Clamd
) -> None:
    # Two real engines: clamd and the SHA-256 list. With clamd down, "any" is met by the list
    # alone (a listed file is still refused), "all" is not (451 for everything).
    listed = b"a file only the hash list knows\n"
    hashes = workdir / "hashes.txt"
    hashes.write_text(f"{hashlib.sha256(listed).hexdigest()} Edgeward-Listed-File\n")
    port = free_port()
    config = _config(workdir, port, sink, clamd, require=require, hashes={"file": str(hashes)},
                     office={"enabled": False})  # fmt: skip
    attachment = _attached("listed", listed, "a.bin", "application", "octet-stream")
    with InProcessGateway(config):
        code, text = _send(port, attachment)
        assert (code, text) == (550, b"5.7.1 Virus found: Edgeward-Listed-File (2/a.bin)")
        clamd.kill()
        clean_reply = _send(port, _clean(5))
        listed_reply = _send(port, attachment)
        delivered = sink.wait_for(1) if require == "any" else []
    if require == "any":
        assert clean_reply[0] == 250 and listed_reply[0] == 550
        assert b"part 5" in delivered[0]
    else:
        assert clean_reply[0] == 451 and listed_reply[0] == 550  # a hit is refused even so
        assert sink.messages() == []
