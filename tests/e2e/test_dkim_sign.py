"""DKIM signing in a running gateway: an outbound message gets the transport rules' disclaimer
and subject tag, then our signature, and what Postfix's smtp-sink received verifies with
dkimpy against the TXT record ``edgeward dkim keygen`` printed; the internal server's
signature the disclaimer broke is gone."""

from __future__ import annotations

import email
import email.policy
import json
import smtplib
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e

RULES = [{"name": "disclaimer", "conditions": {"direction": "outbound"},
          "actions": {"disclaimer": {"text": "Confidential: for the addressee only."},
                      "prepend_subject": "[EXT]"}}]  # fmt: skip


def _message() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.test>"
    msg["To"] = "bob@remote.test"
    msg["Subject"] = "the offer"
    msg["Message-ID"] = "<offer-1@example.test>"
    msg.set_content("Hello Bob,\nthe offer stands.\n")
    msg.add_alternative("<html><body><p>Hello Bob,</p></body></html>\n", subtype="html")
    return msg.as_bytes(policy=email.policy.SMTP)


def test_outbound_mail_is_signed_after_the_disclaimer(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    signing = {"enabled": True, "selector": "gw", "domains": ["example.test"], "key_file": "dkim/gw.key"}
    config = gateway_config(workdir, port=port, sink_port=sink.port, rules=RULES, dkim_sign=signing,
                            agents={"content_filter": {"enabled": False}})  # fmt: skip
    toml = workdir / "edgeward.toml"
    toml.write_text(
        f'accepted_domains = ["example.test"]\n[server]\ndata_dir = "{workdir}"\n'
        '[dkim_sign]\nselector = "gw"\ndomains = ["example.test"]\nkey_file = "dkim/gw.key"\n'
    )
    result = CliRunner().invoke(app, ["dkim", "keygen", "-c", str(toml), "--json"])
    assert result.exit_code == 0, result.output
    [record] = json.loads(result.output)
    assert record["name"] == "gw._domainkey.example.test."
    assert config.resolve(config.dkim_sign.key_file).is_file()
    internal_key = (workdir / "dkim" / "gw.key").read_bytes()  # any key: the internal server's
    original = _message()
    internal = dkim.sign(
        original, b"mail", b"example.test", internal_key, canonicalize=(b"relaxed", b"relaxed")
    )
    with InProcessGateway(config):
        with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.1", 0), timeout=30) as c:
            c.ehlo("client.test")
            assert c.sendmail("alice@example.test", ["bob@remote.test"], internal + original) == {}
        [dump] = sink.wait_for(1)
    # smtp-sink prefixes its own X- lines (unsigned, so they change nothing) and writes LF.
    delivered = dump.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    parsed = email.message_from_bytes(delivered, policy=email.policy.default)
    assert parsed["Subject"] == "[EXT] the offer"
    assert all("Confidential" in p.get_content() for p in parsed.walk() if p.get_content_maintype() == "text")
    signatures = parsed.get_all("DKIM-Signature")
    assert len(signatures) == 1 and "s=gw" in signatures[0] and "s=mail" not in str(signatures)
    txt = "".join(record["strings"]).encode()

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return txt if name == b"gw._domainkey.example.test." else b""

    assert dkim.verify(delivered, dnsfunc=dnsfunc)
