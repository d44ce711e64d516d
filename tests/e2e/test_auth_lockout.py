"""AUTH throttling through the real gateway: per account across sources, per source apart."""

from __future__ import annotations

import base64
import smtplib
from pathlib import Path
from typing import Any

import pytest

from edgeward.auth.users import UserStore
from edgeward.state.sqlite import StateStore, default_db_path
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config, insecure_context

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"


AUTH = {"auth_mechanisms": ["PLAIN"], "auth_tarpit_interval": 0}


def _add_users(workdir: Path) -> None:
    state = StateStore(default_db_path(workdir))
    state.connect()
    try:
        for name in ("alice", "bob"):
            UserStore(state).add(name, PASSWORD)
    finally:
        state.close()


def _config(workdir: Path, port: int, sink: SmtpSink, **connector: Any) -> Any:
    _add_users(workdir)
    settings = {**AUTH, "permission_groups": ["anonymous", "users"], **connector}
    return gateway_config(workdir, port=port, sink_port=sink.port, connector=settings)


def _auth(port: int, source: str, name: str, password: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30) as c:
        c.starttls(context=insecure_context())
        c.ehlo("client.test")
        plain = base64.b64encode(f"\0{name}\0{password}".encode()).decode()
        return c.docmd("AUTH", "PLAIN " + plain)


def test_guesses_spread_over_sources_lock_the_account_everywhere(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink)):  # defaults: 5 per account, 10 per source
        wrong = [_auth(port, f"127.0.0.{i}", "alice", f"guess{i}") for i in range(10, 15)]
        assert {w[0] for w in wrong} == {535}
        # The account is locked from every address, and the right password gets the very reply
        # of a wrong one: nothing tells a guesser that the account exists or is locked.
        locked = _auth(port, "127.0.0.20", "alice", PASSWORD)
        assert locked == wrong[0]
        assert _auth(port, "127.0.0.20", "ALICE", PASSWORD) == wrong[0]
        # Other accounts, and the sources that guessed, are not locked.
        assert _auth(port, "127.0.0.10", "bob", PASSWORD)[0] == 235


def test_users_behind_one_address_do_not_lock_each_other_out(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink)):
        nat = "127.0.0.30"
        assert [_auth(port, nat, "alice", f"typo{i}")[0] for i in range(5)] == [535] * 5
        assert _auth(port, nat, "bob", PASSWORD)[0] == 235  # bob shares the address and still logs in
        assert _auth(port, nat, "alice", PASSWORD)[0] == 535  # only alice is locked


def test_the_source_limit_still_closes_and_locks_a_guessing_address(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink, max_logon_failures=4)):
        source = "127.0.0.40"
        codes = [_auth(port, source, f"user{i}", "x")[0] for i in range(4)]
        assert codes == [535, 535, 535, 421]
        assert _auth(port, source, "bob", PASSWORD)[0] == 454  # locked out before any exchange
        assert _auth(port, "127.0.0.41", "bob", PASSWORD)[0] == 235


def test_the_account_limit_holds_across_connectors(workdir: Path, sink: SmtpSink) -> None:
    port = free_port()
    # 127.0.0.1 reaches the "relay" connector, other addresses the "internet" one: same port,
    # separate connectors, one count per account.
    _add_users(workdir)
    config = gateway_config(
        workdir, port=port, sink_port=sink.port, relay={**AUTH, "permission_groups": ["users"]},
        connector={**AUTH, "permission_groups": ["anonymous", "users"]},
    )  # fmt: skip
    with InProcessGateway(config):
        assert [_auth(port, "127.0.0.1", "alice", f"g{i}")[0] for i in range(3)] == [535] * 3
        assert [_auth(port, "127.0.0.50", "alice", f"h{i}")[0] for i in range(2)] == [535] * 2
        assert _auth(port, "127.0.0.1", "alice", PASSWORD)[0] == 535
        assert _auth(port, "127.0.0.51", "alice", PASSWORD)[0] == 535
        assert _auth(port, "127.0.0.1", "bob", PASSWORD)[0] == 235
