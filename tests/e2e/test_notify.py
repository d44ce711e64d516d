"""Administrators' notices end to end: EICAR through a running gateway and a real clamd, the
notice delivered by the gateway's own queue to Postfix's smtp-sink.

One infection gives one notice; a burst of 20 gives a bounded number (one at once, the rest in
one digest) whose counts add up to 20; clamd going down and coming back gives one notice each,
not one per deferred message.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edgeward.config.schema import Config
from tests.e2e.harness import InProcessGateway, SmtpSink, free_port, gateway_config
from tests.e2e.test_antivirus import INFECTED, _clean, _send
from tests.scanning.clamd import CLAMD, STREAM_MAX, Clamd, start_clamd

pytestmark = pytest.mark.e2e

ADMIN = "admin@example.test"


@pytest.fixture
def clamd(tmp_path: Path) -> Iterator[Clamd]:
    if CLAMD is None:
        pytest.skip("clamd is not installed (scripts/install-test-deps.sh)")
    server = start_clamd(tmp_path / "clamd")
    yield server
    server.stop()


def _config(workdir: Path, port: int, sink: SmtpSink, clamd: Clamd) -> Config:
    antivirus = {
        "enabled": True,
        "clamd": {"socket": str(clamd.socket), "timeout": 3, "max_stream": STREAM_MAX, "chunk_size": 8192},
        "retry_after": 0,  # clamd is asked again the moment it is back
    }
    notify = {"admin_addresses": [ADMIN], "interval": "10m"}
    return gateway_config(workdir, port=port, sink_port=sink.port, antivirus=antivirus, notify=notify)


def _notices(sink: SmtpSink) -> list[email.message.EmailMessage]:
    out = []
    for raw in sink.messages():
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        if msg.get("Auto-Submitted") == "auto-generated":
            out.append(msg)  # type: ignore[arg-type]
    return out


def _subject(msg: email.message.EmailMessage) -> str:
    # Python folds a long Subject right after the colon; unfolding leaves that one space.
    return str(msg["Subject"]).strip()


def _count(msg: email.message.EmailMessage) -> int:
    body = msg.get_body(("plain",))
    assert body is not None
    m = re.search(r"^Events:\s+(\d+)$", body.get_content(), re.M)
    assert m, body.get_content()
    return int(m.group(1))


def test_one_infection_gives_one_notice(workdir: Path, sink: SmtpSink, clamd: Clamd) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink, clamd)):
        code, _ = _send(port, INFECTED["zipped"]())
        assert code == 550
        sink.wait_for(1)
    [notice] = _notices(sink)
    assert len(sink.messages()) == 1
    assert notice["To"] == ADMIN and notice["From"] == "Edgeward <postmaster@example.test>"
    assert _subject(notice).startswith("[Edgeward mx.example.test] Virus found: Edgeward-Eicar-")
    assert "(and" not in _subject(notice)
    text = notice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Sender:    sender@remote.test" in text and "Action:    reject" in text
    assert _count(notice) == 1


def test_a_burst_of_infections_gives_a_bounded_number_of_notices_with_the_count(
    workdir: Path, sink: SmtpSink, clamd: Clamd
) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink, clamd)) as gw:
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _n: _send(port, INFECTED["base64"]())[0], range(20)))
        assert codes == [550] * 20
        sink.wait_for(1)  # the first infection's notice, at once
        # The other 19 wait for the end of the 10-minute window; a flush sends the digest now.
        assert gw.gateway is not None and gw.gateway.notifier is not None
        gw.call(gw.gateway.notifier.flush())
        sink.wait_for(2)
    notices = _notices(sink)
    assert len(notices) == 2 == len(sink.messages())
    assert sorted(_count(n) for n in notices) == [1, 19]
    digest = next(n for n in notices if _count(n) == 19)
    assert _subject(digest).endswith("(and 18 more)")
    assert "... and 14 more event(s)" in digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_clamd_down_and_back_gives_one_notice_each(workdir: Path, sink: SmtpSink, clamd: Clamd) -> None:
    port = free_port()
    with InProcessGateway(_config(workdir, port, sink, clamd)):
        clamd.kill()
        assert [_send(port, _clean(n))[0] for n in range(3)] == [451, 451, 451]
        sink.wait_for(1)
        clamd.start()
        assert _send(port, _clean(9))[0] == 250
        sink.wait_for(3)  # the engine_up notice and the clean message
    subjects = sorted(_subject(n) for n in _notices(sink))
    assert subjects == [
        "[Edgeward mx.example.test] Scan engine clamd is answering again",
        "[Edgeward mx.example.test] Scan engine clamd is unavailable",
    ]
    assert len(sink.messages()) == 3


def test_a_reload_during_an_outage_does_not_announce_it_again(workdir: Path, sink: SmtpSink) -> None:
    from edgeward.filters.agents.antivirus import Antivirus
    from edgeward.runtime import Gateway

    config = gateway_config(
        workdir, port=free_port(), sink_port=sink.port,
        antivirus={"enabled": True, "clamd": {"socket": str(workdir / "none.sock")}},
        notify={"admin_addresses": [ADMIN]},
    )  # fmt: skip
    gw = Gateway(config)
    assert gw.receiving is not None
    [old] = [a for a in gw.receiving.env[0].policy.pipeline.agents if isinstance(a, Antivirus)]
    old.policy.down["clamd"] = "connection refused"
    old.policy.paused["clamd"] = (123.0, "connection refused")
    env = gw.receiving.build_env(config)
    gw.receiving._carry_engine_state(env)
    [new] = [a for a in env[0].policy.pipeline.agents if isinstance(a, Antivirus)]
    assert new is not old and new.policy.down == {"clamd": "connection refused"}
    assert new.policy.paused == {"clamd": (123.0, "connection refused")}
    assert new.notifier is gw.notifier is not None
