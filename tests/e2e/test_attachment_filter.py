"""The attachment filter in a running gateway: strip and deliver, true type, reject, delete, archives.

The content filter is left out of these gateways: what the classifier thinks of the short test
messages (with ATTACH_TYPE_MISMATCH's weight it may reject them) is not what is under test.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import subprocess
import sys
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from edgeward.config.schema import Config
from edgeward.logs.tracking import search
from edgeward.quarantine.store import QuarantineStore
from edgeward.queue import RecipientRecord, Spool
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config
from tests.scanning.builders import EXE, message, overlapping_zip, zip_bytes

pytestmark = pytest.mark.e2e

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"


def _config(workdir: Path, port: int, sink: SmtpSink, **attachments: Any) -> Config:
    return gateway_config(
        workdir, port=port, sink_port=sink.port, attachments=attachments,
        agents={"disabled": ["content-filter"]},
    )  # fmt: skip


def _send(port: int, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=60) as client:
        client.ehlo("client.remote.test")
        client.mail("alice@sender.test")
        client.rcpt("bob@example.test")
        return client.data(data)


def _leaves(raw: bytes) -> list[Message]:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return [p for p in parsed.walk() if not p.is_multipart()]


def _quarantined(workdir: Path) -> list[bytes]:
    store = QuarantineStore(workdir / "quarantine", fsync=False)
    return [store.get(entry.qid)[1] for entry in store.list()]


def test_an_exe_is_stripped_the_rest_delivered_and_the_original_quarantined(
    workdir: Path, sink: SmtpSink
) -> None:
    port = free_port()
    data = message(("report.pdf", PDF, "application/pdf"), ("setup.exe", EXE, "application/octet-stream"),
                   ("notes.txt", b"meeting at ten", "text/plain"))  # fmt: skip
    with InProcessGateway(_config(workdir, port, sink)):
        assert _send(port, data)[0] == 250
        [delivered] = sink.wait_for(1)
    leaves = _leaves(delivered)
    types = [p.get_content_type() for p in leaves]
    assert types == ["text/plain", "application/pdf", "text/plain", "text/plain"]
    assert leaves[1].get_content() == PDF and leaves[3].get_content().strip() == "meeting at ten"
    assert "Removed: setup.exe (FileName *.exe)" in leaves[2].get_content()
    assert b"X-Edgeward-Attachments: blocked 1: setup.exe (FileName *.exe)" in delivered
    [original] = _quarantined(workdir)
    assert [p.get_filename() for p in _leaves(original)][1:] == ["report.pdf", "setup.exe", "notes.txt"]
    assert any(p.get_content() == EXE for p in _leaves(original))
    [received] = search(workdir / "log", event="RECEIVE")
    assert "ATTACH_BLOCKED" in {f["name"] for f in received["findings"]}


def test_an_exe_renamed_pdf_and_an_exe_inside_a_zip_are_caught(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    renamed = message(("invoice.pdf", EXE, "application/pdf"))
    zipped = message(("invoice.zip", zip_bytes({"docs/invoice.exe": EXE}), "application/zip"))
    with InProcessGateway(_config(workdir, port, sink)):
        assert _send(port, renamed)[0] == 250
        assert _send(port, zipped)[0] == 250
        delivered = sink.wait_for(2)
    texts = {_leaves(m)[1].get_content() for m in delivered}
    assert any("Removed: invoice.pdf (TrueType application/" in t for t in texts)
    assert any("Removed: docs/invoice.exe (FileName *.exe)" in t for t in texts)
    assert not any(EXE in m for m in delivered)
    assert all(len(_leaves(m)) == 2 for m in delivered)
    assert len(_quarantined(workdir)) == 2


def test_a_program_in_a_message_past_the_inline_budget_is_stripped(workdir: Path, sink: SmtpSink) -> None:
    """The walk reads the spool file in pieces; the strip transform reads it whole once."""
    port = free_port()
    big = PDF + bytes(range(256)) * 4000  # 1 MB: the message goes to a spool file as it arrives
    data = message(("report.pdf", big, "application/pdf"), ("invoice.pdf", EXE, "application/pdf"))
    assert len(data) > 1024 * 1024
    with InProcessGateway(_config(workdir, port, sink)):
        assert _send(port, data)[0] == 250
        [delivered] = sink.wait_for(1)
    leaves = _leaves(delivered)
    assert leaves[1].get_content() == big
    assert "Removed: invoice.pdf (TrueType application/" in leaves[2].get_content()
    assert EXE not in delivered
    assert len(_quarantined(workdir)) == 1


def test_reject_mode_answers_550_naming_rule_and_file(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    data = message(("setup.exe", EXE, "application/octet-stream"))
    with InProcessGateway(_config(workdir, port, sink, action="reject")):
        code, text = _send(port, data)
    assert code == 550
    assert text == b"5.7.1 Message rejected due to unacceptable attachments (FileName *.exe: setup.exe)"
    assert sink.messages() == []
    [rejected] = search(workdir / "log", event="REJECT")
    assert rejected["detail"] == "at EOD by attachment-filter"


def test_silent_delete_accepts_and_drops(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink, action="silent_delete")):
        code, text = _send(port, message(("setup.exe", EXE, "application/octet-stream")))
        assert code == 250 and b"queued as" in text
        assert _send(port, message(("report.pdf", PDF, "application/pdf")))[0] == 250
        [delivered] = sink.wait_for(1)
    assert b"report.pdf" in delivered and EXE not in delivered
    [discarded] = search(workdir / "log", event="DISCARD")
    assert "attachment-filter" in discarded["detail"]


def test_a_zip_bomb_and_ten_thousand_nested_parts_are_refused(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    bomb = message(("bomb.zip", overlapping_zip(entries=40), "application/zip"))
    levels = 10_000
    head = "".join(f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n" for i in range(levels))
    tail = "".join(f"\r\n--b{i}--" for i in reversed(range(levels)))
    nested = ("From: alice@sender.test\r\nTo: bob@example.test\r\nSubject: deep\r\n" + head
              + "Content-Type: text/plain\r\n\r\nbottom" + tail + "\r\n").encode()  # fmt: skip
    with InProcessGateway(_config(workdir, port, sink)):
        assert _send(port, bomb)[0] == 554
        code, text = _send(port, nested)
    assert code == 554 and text.startswith(b"5.6.0")
    assert sink.messages() == []
    findings = {f["name"] for r in search(workdir / "log", event="REJECT") for f in r["findings"]}
    assert {"ARCHIVE_BOMB", "MIME_TOO_DEEP"} <= findings


def test_a_signed_message_is_quarantined_whole_rather_than_stripped(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    signed = (
        b"From: alice@sender.test\r\nTo: bob@example.test\r\nSubject: signed\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/signed; protocol="application/pgp-signature"; micalg=pgp-sha256;'
        b" boundary=S\r\n"
        b"\r\n--S\r\nContent-Type: multipart/mixed; boundary=M\r\n\r\n--M\r\nContent-Type: text/plain\r\n\r\n"
        b"signed text\r\n--M\r\nContent-Type: application/octet-stream; name=tool.exe\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAA==\r\n--M--\r\n"
        b"\r\n--S\r\nContent-Type: application/pgp-signature; name=signature.asc\r\n\r\n"
        b"-----BEGIN PGP SIGNATURE-----\r\n-----END PGP SIGNATURE-----\r\n--S--\r\n"
    )
    with InProcessGateway(_config(workdir, port, sink)):
        assert _send(port, signed)[0] == 250
    assert sink.messages() == []
    [kept] = _quarantined(workdir)
    assert kept.endswith(signed)  # under our stamps, byte for byte: the signature still verifies


def test_a_stripped_original_is_released_as_it_arrived(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config_path = workdir / "edgeward.toml"
    config_path.write_text(
        "accepted_domains = ['example.test']\n[server]\nhostname = 'mx.example.test'\n"
        f"data_dir = '{workdir}'\n[queue]\nfsync = false\n"
        "[[send_connectors]]\nname = 'inbound'\naddress_spaces = ['*']\n"
        f"smart_hosts = ['127.0.0.1:{sink.port}']\n"
    )  # fmt: skip
    data = message(("report.pdf", PDF, "application/pdf"), ("setup.exe", EXE, "application/octet-stream"))
    with InProcessGateway(_config(workdir, port, sink)):
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=60) as client:
            client.ehlo("client.remote.test")
            client.mail("alice@sender.test", ["RET=HDRS", "ENVID=env-7"])
            client.rcpt("bob@example.test", ["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;bob@example.test"])
            client.rcpt("carol@example.test", ["NOTIFY=NEVER"])
            assert client.data(data)[0] == 250
        [stripped] = sink.wait_for(1)
    assert not any(p.get_content() == EXE for p in _leaves(stripped))
    [entry] = QuarantineStore(workdir / "quarantine", fsync=False).list()
    assert entry.reason == "attachment-filter (stripped)"
    # Released while the gateway is down, so the queued record can be read before delivery.
    released = subprocess.run(
        [sys.executable, "-m", "edgeward", "quarantine", "release", entry.qid, "--no-learn",
         "-c", str(config_path)], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert released.returncode == 0, released.stderr
    msg_id = released.stdout.split()[-1]
    record = Spool(workdir / "queue", fsync=False).load(msg_id)
    client = (record.connector, record.client_ip, record.client_helo)
    assert client == ("internet", "127.0.0.2", "client.remote.test")
    assert (record.mail_from, record.envid, record.ret) == ("alice@sender.test", "env-7", "HDRS")
    assert record.recipients == (
        RecipientRecord("bob@example.test", notify=("FAILURE", "DELAY"), orcpt="rfc822;bob@example.test"),
        RecipientRecord("carol@example.test", notify=("NEVER",)),
    )
    with InProcessGateway(_config(workdir, port, sink)):
        delivered = sink.wait_for(2)
    [original] = [m for m in delivered if m != stripped]
    assert any(p.get_content() == EXE for p in _leaves(original))
    assert [p.get_filename() for p in _leaves(original)][1:] == ["report.pdf", "setup.exe"]
    # smtp-sink writes the envelope it was given as X- lines: both recipients, with their NOTIFY.
    envelope = original.split(b"\n\n", 1)[0].split(b"\n")
    assert b"X-Mail-Args: <alice@sender.test>" in envelope
    assert b"X-Rcpt-Args: <bob@example.test> NOTIFY=FAILURE,DELAY" in envelope
    assert b"X-Rcpt-Args: <carol@example.test> NOTIFY=NEVER" in envelope
