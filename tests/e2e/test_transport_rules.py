"""Transport rules in a running gateway, delivering to Postfix's smtp-sink: a disclaimer on
outbound mail, a refusal with the rule's text, a blind copy and a redirect in the envelope."""

from __future__ import annotations

import email
import email.policy
import smtplib
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from edgeward.logs.tracking import search
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e

DISCLAIMER = "This message is confidential. Ünïcode for the ISO-8859-1 part."
RULES: list[dict[str, Any]] = [
    {"name": "no-invoices", "priority": 1, "conditions": {"subject_contains": ["invoice"]},
     "actions": {"reject": {"code": 550, "enhanced": "5.7.1", "text": "Invoices go to the portal"}}},
    {"name": "disclaimer", "priority": 2, "conditions": {"direction": "outbound"},
     "actions": {"disclaimer": {"text": DISCLAIMER}, "prepend_subject": "[OUT]"}},
    {"name": "copy-legal", "priority": 3, "conditions": {"to": ["ceo@example.test"]},
     "actions": {"bcc": ["legal@example.test"]}},
    {"name": "to-helpdesk", "priority": 4, "conditions": {"to": ["support@example.test"]},
     "actions": {"redirect_to": ["helpdesk@example.test"]}},
]  # fmt: skip


def _message(subject: str, to: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "alice@example.test"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Bonjour, café à midi ?\n", charset="iso-8859-1")
    msg.add_alternative("<html><body><p>Bonjour, caf&eacute;</p></body></html>\n", subtype="html")
    return msg.as_bytes(policy=email.policy.SMTP)


def _send(port: int, source: str, sender: str, rcpt: str, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30) as c:
        c.ehlo("client.test")
        c.mail(sender)
        code, text = c.rcpt(rcpt)
        assert code == 250, text
        return c.data(data)


def _rcpts(dump: bytes) -> list[str]:
    return [line.split(b":", 1)[1].strip().decode() for line in dump.split(b"\n")
            if line.startswith(b"X-Rcpt-Args:")]  # fmt: skip


def test_rules_over_smtp(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    config = gateway_config(workdir, port=port, sink_port=sink.port, rules=RULES,
                            agents={"content_filter": {"enabled": False}})  # fmt: skip
    with InProcessGateway(config):
        # 127.0.0.1 reaches the relay connector: outbound, so it gets the disclaimer.
        outbound = _message("hello", "bob@remote.test")
        code, text = _send(port, "127.0.0.1", "alice@example.test", "bob@remote.test", outbound)
        assert code == 250, text
        [out] = sink.wait_for(1)
        # Refused with the rule's own reply, from either side.
        code, text = _send(port, "127.0.0.2", "eve@remote.test", "user@example.test",
                           _message("Your invoice", "user@example.test"))  # fmt: skip
        assert (code, text) == (550, b"5.7.1 Invoices go to the portal")
        code, _ = _send(port, "127.0.0.2", "eve@remote.test", "ceo@example.test",
                        _message("hi", "ceo@example.test"))  # fmt: skip
        assert code == 250
        code, _ = _send(port, "127.0.0.2", "eve@remote.test", "support@example.test",
                        _message("help", "support@example.test"))  # fmt: skip
        assert code == 250
        dumps = sink.wait_for(3)
    body = out.split(b"\n\n", 1)[1] if out.startswith(b"X-") else out
    parsed = email.message_from_bytes(out.replace(b"\n", b"\r\n"), policy=email.policy.default)
    assert parsed["Subject"] == "[OUT] hello"
    assert parsed["X-Edgeward-Disclaimer"] == "disclaimer"
    texts = {p.get_content_type(): p for p in parsed.walk() if p.get_content_maintype() == "text"}
    assert set(texts) == {"text/plain", "text/html"}
    for part in texts.values():
        assert DISCLAIMER.split(".")[0] in part.get_content()
    assert texts["text/plain"].get_content_charset() == "iso-8859-1"  # the text fits Latin-1
    assert body
    by_rcpts = sorted(_rcpts(d) for d in dumps if b"[OUT]" not in d)
    assert ["<ceo@example.test>", "<legal@example.test>"] in by_rcpts
    assert ["<helpdesk@example.test>"] in by_rcpts
    refused = list(search(workdir / "log", event="REJECT"))
    assert any("transport-rules" in str(e.get("decided_by")) for e in refused)
    received = [e for e in search(workdir / "log", event="RECEIVE")
                if "helpdesk@example.test" in e["recipients"]]  # fmt: skip
    assert received and received[0]["recipients"] == ["helpdesk@example.test"]


def test_log_event_text_and_copy_to_over_smtp(workdir: Path, sink: SmtpSink) -> None:
    actions = {"log_event_text": "A contract was mailed", "copy_to": ["records@example.test"]}
    audit = [{"name": "audit", "conditions": {"subject_contains": ["contract"]}, "actions": actions}]
    port = free_port()
    config = gateway_config(workdir, port=port, sink_port=sink.port, rules=audit,
                            agents={"content_filter": {"enabled": False}})  # fmt: skip
    with InProcessGateway(config):
        code, _ = _send(port, "127.0.0.2", "eve@remote.test", "user@example.test",
                        _message("The contract", "user@example.test"))  # fmt: skip
        assert code == 250
        [dump] = sink.wait_for(1)
    assert sorted(_rcpts(dump)) == ["<records@example.test>", "<user@example.test>"]
    parsed = email.message_from_bytes(dump.replace(b"\n", b"\r\n"), policy=email.policy.default)
    assert [a.addr_spec for a in parsed["Cc"].addresses] == ["records@example.test"]
    [received] = list(search(workdir / "log", event="RECEIVE"))
    assert received["recipients"] == ["user@example.test", "records@example.test"]
    details = {(f["name"], f["detail"]) for f in received["findings"]}
    assert ("RULE_LOG_EVENT", "audit: A contract was mailed") in details
    assert ("RULE_COPY_TO", "audit: records@example.test") in details
