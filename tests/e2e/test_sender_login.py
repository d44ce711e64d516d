"""Authenticated senders through the real gateway: each login sends only as its own addresses."""

from __future__ import annotations

import smtplib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edgeward.cli.user import user_app
from edgeward.logs.tracking import search
from edgeward.state.sqlite import default_db_path
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config, insecure_context

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"


def _user(workdir: Path, name: str, *addresses: str) -> None:
    args = ["add", name, "--password-stdin", "--state", str(default_db_path(workdir))]
    for address in addresses:
        args += ["--address", address]
    result = CliRunner().invoke(user_app, args, input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output


def _config(workdir: Path, port: int, sink: SmtpSink, **connector: Any) -> Any:
    settings = {
        "auth_mechanisms": ["PLAIN"], "permission_groups": ["anonymous", "users"],
        "auth_tarpit_interval": 0, **connector,
    }  # fmt: skip
    return gateway_config(workdir, port=port, sink_port=sink.port, connector=settings)


def _login(port: int, name: str) -> smtplib.SMTP:
    c = smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30)
    c.starttls(context=insecure_context())
    c.login(name, PASSWORD)
    return c


def _send(c: smtplib.SMTP, sender: str) -> dict[str, tuple[int, bytes]]:
    message = f"From: {sender}\r\nSubject: from {sender}\r\n\r\nhello\r\n".encode()
    return c.sendmail(sender, ["x@elsewhere.test"], message)


def test_a_login_may_not_send_as_someone_else(workdir: Path, sink: SmtpSink) -> None:
    _user(workdir, "alice", "alice@example.test", "@sales.example.test")
    _user(workdir, "bob@example.test")
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink)):
        with _login(port, "alice") as c:
            code, text = c.mail("ceo@example.test")
            assert (code, text[:5]) == (553, b"5.7.1") and b"not owned by user alice" in text
            assert c.mail("")[0] == 553  # the null sender
            assert c.mail("bob@example.test")[0] == 553
            c.rset()
            assert _send(c, "Alice@Example.test") == {}
            assert _send(c, "desk@sales.example.test") == {}
        with _login(port, "bob@example.test") as c:  # a login that is an address owns it
            assert _send(c, "bob@example.test") == {}
        assert len(sink.wait_for(3)) == 3
    refused = list(search(workdir / "log", event="REJECT"))
    assert [r["sender"] for r in refused] == ["ceo@example.test", "", "bob@example.test"]
    assert all(str(r["reply"]).startswith("553 5.7.1") for r in refused)


def test_a_connector_can_relax_the_check_and_allow_the_null_sender(workdir: Path, sink: SmtpSink) -> None:
    _user(workdir, "app")
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink, sender_login_match=False)), _login(port, "app") as c:
        assert _send(c, "ceo@example.test") == {}
        assert len(sink.wait_for(1)) == 1
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink, auth_null_sender=True)), _login(port, "app") as c:
        assert c.mail("")[0] == 250
        assert c.rset()[0] == 250
        assert c.mail("ceo@example.test")[0] == 553  # only the null sender was allowed
