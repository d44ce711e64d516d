"""Gateways sharing one Redis policy store over SMTP: a rate limit counted across two ``edgeward
serve`` processes, and a Redis outage that tempfails and heals without a restart."""

from __future__ import annotations

import os
import pwd
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    NO_OUTSIDE_DNS,
    GatewayProcess,
    InProcessGateway,
    SmtpSink,
    free_port,
    gateway_config,
)
from tests.redisserver import REDIS_SERVER, RedisServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed (install-test-deps.sh)"),
]

PASSWORD = "shared-by-both-gateways"


@pytest.fixture
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir, password=PASSWORD).start()
    yield server
    server.stop()


def _password_file(folder: Path) -> Path:
    path = folder / "redis.pw"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    if os.geteuid() == 0:  # serve drops to the service user before it reads the file
        service = pwd.getpwnam("edgeward")
        os.chown(path, service.pw_uid, service.pw_gid)
    return path


def _serve_config(workdir: Path, name: str, port: int, redis: RedisServer) -> Path:
    folder = workdir / name
    out = subprocess.run(
        [
            sys.executable, "-m", "edgeward", "init", "--dir", str(folder),
            "--hostname", f"{name}.example.test", "--listen", f"127.0.0.1:{port}",
            "--accept-domain", "example.test", "--relay-from", "127.0.0.1/32",
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    folder.chmod(0o755)
    config = folder / "edgeward.toml"
    secret = _password_file(folder)
    config.write_text(
        config.read_text()
        + NO_OUTSIDE_DNS
        + f'\n[policy_store]\nbackend = "redis"\nurl = "{redis.url}"\npassword_file = "{secret}"\n'
        + 'prefix = "site-a:"\n\n[agents.rate_limits]\nmessages_per_sender_domain = 3\n'
    )
    return config


def _mail(port: int, sender: str) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
        c.ehlo("client.remote.test")
        code, text = c.mail(sender)
        return code, text.decode()


def test_a_rate_limit_is_counted_across_two_gateway_processes(
    workdir: Path, redis_server: RedisServer
) -> None:
    ports = free_port(), free_port()
    gateways = [
        GatewayProcess(_serve_config(workdir, f"gw{n}", port, redis_server), port).start()
        for n, port in enumerate(ports)
    ]
    try:
        # Three messages a minute per sender domain, wherever they arrive: gw0, gw1, gw0 take
        # one each and gw1 refuses the fourth, which it alone has never counted past one.
        replies = [_mail(ports[n % 2], f"user{n}@bulk.test") for n in range(4)]
        assert [code for code, _ in replies] == [250, 250, 250, 450]
        assert replies[3][1].startswith(
            "4.7.1 Rate limit exceeded: 3 messages per minute per sender-domain bulk.test"
        )
        assert _mail(ports[0], "user@other.test")[0] == 250
        with redis_server.client() as raw:
            assert raw.hget("site-a:k:rate:messages:sender-domain:bulk.test", "v") == b"4"
    finally:
        for gw in gateways:
            gw.stop()


def _send(port: int, subject: str) -> tuple[int, str]:
    """A whole message; the first refusal's code and enhanced text."""
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30) as c:
        c.ehlo("client.remote.test")
        code, text = c.mail("friend@remote.test")
        if code != 250:
            return code, text.decode()
        code, text = c.rcpt("user@example.test")
        if code != 250:
            return code, text.decode()
        code, text = c.data(f"From: friend@remote.test\r\nSubject: {subject}\r\n\r\nhello\r\n".encode())
        return code, text.decode()


def test_a_redis_outage_tempfails_and_heals_without_a_restart(
    workdir: Path, sink: SmtpSink, redis_server: RedisServer
) -> None:
    port = free_port()
    secret = _password_file(workdir)
    store = {"backend": "redis", "url": redis_server.url, "password_file": str(secret), "timeout": 1}
    config = gateway_config(
        workdir,
        port=port,
        sink_port=sink.port,
        policy_store=store,
        agents={"rate_limits": {"messages_per_ip": 100}},
    )
    with InProcessGateway(config):
        assert _send(port, "before")[0] == 250
        redis_server.stop()
        # The sender block list cannot be read: 451 4.3.0, never a 250 for unchecked mail, and
        # the gateway keeps answering (the rate counter fails open with RATE_TEMPERROR).
        for _ in range(2):
            code, text = _send(port, "during")
            assert (code, text.split()[0]) == (451, "4.3.0")
        redis_server.start()
        assert _send(port, "after")[0] == 250
        subjects = [m.split(b"Subject: ")[1].split(b"\n")[0] for m in sink.wait_for(2)]
        assert sorted(subjects) == [b"after", b"before"]
    with redis_server.client() as raw:
        # Counted again from the restart (nothing persisted): the store is in use, not bypassed.
        assert raw.hget("edgeward:k:rate:messages:ip:127.0.0.2", "v") == b"1"


def test_a_retry_to_another_gateway_passes_the_greylisting_the_first_one_began(
    workdir: Path, sink: SmtpSink, redis_server: RedisServer
) -> None:
    # Behind one MX name a client retries wherever DNS sends it: the triplet one gateway
    # deferred must be known to the other, or greylisting would defer it at every gateway.
    secret = _password_file(workdir)
    store = {"backend": "redis", "url": redis_server.url, "password_file": str(secret)}
    agents = {"content_filter": {"enabled": False}, "greylist": {"enabled": True, "min_delay": 1}}
    ports = free_port(), free_port()
    configs = []
    for name, port in zip(("a", "b"), ports, strict=True):
        (workdir / name).mkdir()
        configs.append(
            gateway_config(workdir / name, port=port, sink_port=sink.port, policy_store=store, agents=agents)
        )
    with InProcessGateway(configs[0]), InProcessGateway(configs[1]):
        code, text = _send(ports[0], "greylisted")
        assert (code, text) == (451, "4.7.1 Greylisted, please try again later")
        time.sleep(1.5)  # the retry a real server makes later; the 1 s minimum has passed
        assert _send(ports[1], "greylisted")[0] == 250
        [message] = sink.wait_for(1)
    assert b"Subject: greylisted" in message
