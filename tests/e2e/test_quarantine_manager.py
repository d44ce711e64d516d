"""The quarantine manager end to end: spam held by a running gateway, found with ``quarantine
search``, released to one recipient (delivered to Postfix's smtp-sink, tracked as RELEASE), and
the users' digests queued through the gateway's own spool, delivered to the sink, read back
with Python's email package, their release links verified once and never again."""

from __future__ import annotations

import email
import email.policy
import json
import re
import smtplib
import time
from email.message import EmailMessage
from html import escape as html_escape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from edgeward.cli.quarantine import quarantine_app, service
from edgeward.config.load import load_config
from edgeward.logs.tracking import search
from edgeward.quarantine.digest import release_by_token, verify_release_token
from edgeward.quarantine.reasons import plain_reason
from edgeward.quarantine.service import open_store
from edgeward.quarantine.tokens import ReleaseTokens, TokenError
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parents[1] / "content" / "data"
SPAM = (DATA / "spam.eml").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
HOSTILE = b"Subject: <script>alert(1)</script> =?utf-8?q?CR=0D=0ALF?= FREE MONEY"
LINKS = "https://quarantine.example.test/release"
runner = CliRunner()


def _send(port: int, data: bytes, rcpts: list[str]) -> int:
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
        c.ehlo("client.remote.test")
        c.mail("deals4you@cheap-offers.biz")
        for r in rcpts:
            c.rcpt(r)
        code, text = c.data(data)
        assert code == 250, text
        return code


def _setup(workdir: Path, sink: SmtpSink, *, encrypt: bool = False) -> tuple[int, Path, InProcessGateway]:
    port = free_port()
    content = {
        "reject_enabled": False,
        "quarantine_enabled": True,
        "quarantine_threshold": 7,
        "learning": False,
    }
    quarantine = {
        "release_link_base": LINKS,
        **({"encryption_key_file": "keys/quarantine.key"} if encrypt else {}),
    }
    config = gateway_config(workdir, port=port, sink_port=sink.port, agents={"content_filter": content},
                            quarantine=quarantine)  # fmt: skip
    path = workdir / "edgeward.toml"
    path.write_text(
        "accepted_domains = ['example.test']\n[server]\nhostname = 'mx.example.test'\n"
        f"data_dir = '{workdir}'\n"
        "[agents.content_filter]\nlearning = false\n"
        f"[quarantine]\nrelease_link_base = '{LINKS}'\n"
        + ("encryption_key_file = 'keys/quarantine.key'\n" if encrypt else "")
    )
    return port, path, InProcessGateway(config)


def _cli(*args: str) -> str:
    result = runner.invoke(quarantine_app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_held_spam_is_found_released_to_one_recipient_and_tracked(workdir: Path, sink: SmtpSink) -> None:
    port, path, gateway = _setup(workdir, sink, encrypt=True)
    with gateway:
        assert _send(port, SPAM, ["alice@example.test", "bob@example.test"]) == 250
        [on_disk] = (workdir / "quarantine").glob("*.eml")
        assert b"MAKE $5000" not in on_disk.read_bytes()  # sealed at rest
        [entry] = json.loads(_cli("search", "-c", str(path), "--subject", "free money", "--json"))
        assert "quarantine" in entry["reason"] and entry["scl"] >= 7 and entry["details"]
        assert entry["recipients"] == ["alice@example.test", "bob@example.test"]
        assert json.loads(_cli("search", "-c", str(path), "--sender", "nobody@", "--json")) == []
        shown = json.loads(_cli("show", entry["qid"], "-c", str(path), "--json"))
        assert shown["texts"][0]["content_type"] == "text/html" and "MAKE $5000" in shown["texts"][0]["text"]
        out = _cli("release", entry["qid"], "-c", str(path), "--to", "bob@example.test", "--no-learn")
        msg_id = re.search(r"queue id (\S+)", out).group(1)  # type: ignore[union-attr]
        assert "still held for alice@example.test" in out
        [message] = sink.wait_for(1)
    assert b"MAKE $5000 A WEEK" in message
    [release] = search(workdir / "log", event="RELEASE")
    assert release["msg_id"] == msg_id and release["recipients"] == ["bob@example.test"]
    assert entry["qid"] in release["detail"]
    [left] = json.loads(_cli("list", "-c", str(path), "--json"))
    assert left["recipients"] == ["alice@example.test"]


def _digests(sink: SmtpSink, count: int) -> dict[str, EmailMessage]:
    out = {}
    for raw in sink.wait_for(count):
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        if str(msg["Subject"]).startswith("Quarantine digest"):
            out[str(msg["To"])] = msg
    return out


def _tokens(msg: EmailMessage) -> list[str]:
    plain = msg.get_body(("plain",))
    assert plain is not None
    links = re.findall(r"Release: (\S+)", plain.get_content())
    return [parse_qs(urlsplit(link).query)["token"][0] for link in links]


def test_digests_for_two_recipients_with_links_that_work_once(workdir: Path, sink: SmtpSink) -> None:
    port, path, gateway = _setup(workdir, sink)
    hostile = re.sub(rb"^Subject: [^\r\n]*", HOSTILE, SPAM, count=1, flags=re.MULTILINE)
    with gateway:
        assert _send(port, SPAM, ["alice@example.test", "bob@example.test"]) == 250
        assert _send(port, hostile, ["alice@example.test"]) == 250
        dry = _cli("digest", "-c", str(path), "--dry-run")
        assert "2 digest(s) would be sent" in dry
        assert "2 digest(s) queued" in _cli("digest", "-c", str(path), "--send")
        digests = _digests(sink, 2)
        _check_digests(path, digests)
        config = load_config(path)
        first, second = _tokens(digests["alice@example.test"])
        [bobs] = _tokens(digests["bob@example.test"])
        # Bob follows his link: released to him alone, delivered, tracked; the link is spent.
        done = gateway.call(release_by_token(config, service(config), bobs))
        assert done.recipients == ("bob@example.test",) and done.remaining == ("alice@example.test",)
        delivered = [m for m in sink.wait_for(3) if b"Quarantine digest" not in m]
        assert len(delivered) == 1 and b"MAKE $5000" in delivered[0]
    [release] = search(workdir / "log", event="RELEASE")
    assert release["msg_id"] == done.msg_id and "digest link" in release["detail"]
    with pytest.raises(TokenError) as used:
        verify_release_token(config, bobs)
    assert used.value.reason == "used"
    payload, mac = first.split(".")
    tampered = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + mac
    with pytest.raises(TokenError) as bad:
        verify_release_token(config, tampered)
    assert bad.value.reason == "bad-signature"
    later = ReleaseTokens(workdir / "state", open_store(config), now=lambda: time.time() + 15 * 86400)
    with pytest.raises(TokenError) as expired:
        later.verify(second)
    assert expired.value.reason == "expired"
    qid, rcpt = verify_release_token(config, first)  # untouched by the failures
    assert rcpt == "alice@example.test" and qid in {e.qid for e in open_store(config).list()}


def _check_digests(path: Path, digests: dict[str, EmailMessage]) -> None:
    assert sorted(digests) == ["alice@example.test", "bob@example.test"]
    alice = digests["alice@example.test"]
    assert alice["Auto-Submitted"] == "auto-generated" and alice.get_content_type() == "multipart/alternative"
    html = alice.get_body(("html",))
    assert html is not None
    page = html.get_content()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert page.count(LINKS) == 2
    held = open_store(load_config(path)).list()
    assert len(held) == 2 and all(html_escape(plain_reason(e)) in page for e in held)
    plain = alice.get_body(("plain",))
    assert plain is not None and r"\x0d\x0aLF" in plain.get_content()  # the subject's CR LF, escaped
