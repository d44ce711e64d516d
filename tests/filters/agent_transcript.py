"""Golden transcripts of each agent's decisions over a real gateway session.

A transcript (``tests/filters/transcripts/<agent>.<refused|passed>.txt``) names the agents it
runs and their setting, then plays the client's part against a ``Session`` on loopback whose
policy is built by ``runtime_policy.build_agents`` and ``build_policy``, exactly as the gateway
builds it, with the shipped fakes standing in for outside services (``FakeResolver``,
``MemoryPolicyStore``, ``FakeClock``). Every reply is compared byte for byte, enhanced codes
included; then every tracking event of the run is compared with the ``T:`` lines.

Format (one item per line; blank lines and lines starting with ``#`` are ignored)::

    @agents sender-filter spf        the agents kept (relay-control always runs, as in production)
    @config {"spf": {...}}           JSON merged into the configuration
    @connector {"message_rate_limit": 1}   JSON merged into the receive connector
    @dns remote.test TXT v=spf1 -all         a FakeResolver record (the value is the rest)
    @list ip-block 127.0.0.2/32     a member of a policy store list
    @set rep:block:127.0.0.2 srl 8   a policy store key (a day's TTL)
    @file recipients.txt user@example.test   a file in the data folder (one line)
    @user alice secret alice@remote.test     an account (AUTH) and the addresses it owns
    @client 127.0.0.3               the client's address for the connections after it
    C: HELO client.remote.test      client bytes, CRLF appended; consecutive C: lines are one write
    R: 31 Received: from a by b     a line repeated N times in the same write
    S: 250 2.1.0 Sender OK          one expected reply line ({ID} matches a queue id)
    !closed                         the server has closed the connection
    !connect                        a new connection (the previous one is closed first)
    !advance 600                    move the FakeClock on
    @virus EICAR-PATTERN Eicar-Test  a signature of the fake scan engine (``FakeScanner``), which
                                    stands in for ``[antivirus]``'s engines when the agent runs
    @engine-down                    the fake scan engine is unreachable
    B+ Removed: setup.exe           a line every queued message holds (after the transforms)
    B- TVqQAAMAAAAEAAAA             text no queued message holds
    Q+ / Q-                         the same over the quarantined messages
    T: REJECT | at MAIL | agent sender-filter | SENDER_BLOCKED
                                    the next tracking event: event | detail | decided_by | findings
                                    (``*`` matches anything: a model's SCL is not the agent's wiring)

Regenerating: ``EDGEWARD_REGEN_TRANSCRIPTS=1 .venv/bin/pytest tests/filters/test_agent_transcripts.py``
rewrites every ``S:`` and ``T:`` line that no longer matches with what the gateway now says (a
line that still matches is kept, with its ``{ID}`` or ``*``), and leaves everything else as it
was written. It cannot move the steps: when the server now closes earlier or later, or the
stored messages break a ``B``/``Q`` line, the test still fails and the file is edited by hand.
Read the diff before committing it: a regenerated transcript is a changed behaviour.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher, Type

from edgeward.auth.addresses import AccountAddresses
from edgeward.auth.users import UserStore
from edgeward.config.load import parse_config
from edgeward.config.schema import AGENT_NAMES, ALWAYS_ON_AGENTS
from edgeward.logs.tracking import TrackingLog, search
from edgeward.quarantine.store import QuarantineStore
from edgeward.queue.spool import Spool
from edgeward.runtime_policy import build_agents, build_policy
from edgeward.scanning.policy import Engine, MultiEnginePolicy
from edgeward.server.session import Session, SessionEnv
from edgeward.state.sqlite import StateStore
from edgeward.testing.clock import FakeClock
from edgeward.testing.dns import FakeResolver
from edgeward.testing.policystore import MemoryPolicyStore
from edgeward.testing.scanner import FakeScanner
from edgeward.types import Peer

HOSTNAME = "mx.test"
READ_TIMEOUT = 30.0
# Set to rewrite the S: and T: lines that no longer match (see the module docstring).
REGENERATE = os.environ.get("EDGEWARD_REGEN_TRANSCRIPTS", "") not in ("", "0")
_ID = re.escape("{ID}")


@dataclass
class Step:
    kind: str  # "write", "expect", "closed", "connect", "advance"
    data: bytes = b""
    seconds: float = 0.0
    client: str = "127.0.0.2"


@dataclass
class Script:
    path: Path
    agents: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    connector: dict[str, Any] = field(default_factory=dict)
    dns: list[tuple[str, str, str]] = field(default_factory=list)
    lists: list[tuple[str, str]] = field(default_factory=list)
    keys: list[tuple[str, str]] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)
    users: list[list[str]] = field(default_factory=list)
    signatures: dict[bytes, str] = field(default_factory=dict)
    engine_down: bool = False
    # (where, present, text): "queue" or "quarantine", and whether the line must be there.
    holds: list[tuple[str, bool, str]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    tracking: list[str] = field(default_factory=list)


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def parse(path: Path) -> Script:
    script = Script(path)
    client = "127.0.0.2"
    pending: list[bytes] = []

    def flush() -> None:
        if pending:
            script.steps.append(Step("write", b"".join(pending), client=client))
            pending.clear()

    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.rstrip("\n")
        if not line.strip() or line.startswith("#"):
            continue
        head, _, rest = line.partition(" ")
        if head == "C:":
            pending.append(rest.encode() + b"\r\n")
            continue
        if head == "R:":
            count, _, text = rest.partition(" ")
            pending.append((text.encode() + b"\r\n") * int(count))
            continue
        flush()
        if head == "S:":
            script.steps.append(Step("expect", rest.encode() + b"\r\n"))
        elif head == "T:":
            script.tracking.append(rest)
        elif head == "!closed":
            script.steps.append(Step("closed"))
        elif head == "!connect":
            script.steps.append(Step("connect", client=client))
        elif head == "!advance":
            script.steps.append(Step("advance", seconds=float(rest)))
        elif head == "@agents":
            script.agents += rest.split()
        elif head == "@config":
            _merge(script.config, json.loads(rest))
        elif head == "@connector":
            _merge(script.connector, json.loads(rest))
        elif head == "@dns":
            name, rdtype, value = rest.split(" ", 2)
            script.dns.append((name, rdtype, value))
        elif head == "@list":
            name, member = rest.split(" ", 1)
            script.lists.append((name, member))
        elif head == "@set":
            key, value = rest.split(" ", 1)
            script.keys.append((key, value))
        elif head == "@file":
            name, content = rest.split(" ", 1)
            script.files.append((name, content))
        elif head == "@user":
            script.users.append(rest.split())
        elif head == "@client":
            client = rest.strip()
        elif head == "@virus":
            pattern, signature = rest.split(" ", 1)
            script.signatures[pattern.encode()] = signature
        elif head == "@engine-down":
            script.engine_down = True
        elif head in ("B+", "B-", "Q+", "Q-"):
            script.holds.append(("queue" if head[0] == "B" else "quarantine", head[1] == "+", rest))
        else:
            raise ValueError(f"{path}:{number}: cannot read {line!r}")
    flush()
    unknown = set(script.agents) - set(AGENT_NAMES)
    if unknown:
        raise ValueError(f"{path}: unknown agents {sorted(unknown)}")
    return script


def _matches(expected: bytes, got: bytes) -> bool:
    pattern = re.escape(expected.decode()).replace(_ID, "[0-9A-Za-z]+")
    return re.fullmatch(pattern, got.decode("utf-8", "replace"), re.DOTALL) is not None


def _event_line(event: dict[str, Any]) -> str:
    names = ",".join(f["name"] for f in event.get("findings") or ()) or "-"
    return " | ".join((event["event"], event.get("detail") or "-", event.get("decided_by") or "-", names))


@dataclass
class Run:
    """What a replay saw: the transcript it made and the tracking events, for comparison."""

    mismatches: list[str]
    tracking: list[str]
    queued: list[bytes] = field(default_factory=list)
    quarantined: list[bytes] = field(default_factory=list)
    # The reply line read for each ``S:`` step, in order (b"" where the server had closed).
    replies: list[bytes] = field(default_factory=list)
    # Steps other than replies that did not hold (a close that did not come): not regenerable.
    structural: list[str] = field(default_factory=list)

    def missing_holds(self, holds: list[tuple[str, bool, str]]) -> list[str]:
        """The ``B``/``Q`` lines the stored messages break (none stored breaks a ``+`` line)."""
        broken: list[str] = []
        for where, present, text in holds:
            messages = self.queued if where == "queue" else self.quarantined
            wanted = text.encode()
            if present and (not messages or not all(wanted in m.split(b"\r\n") for m in messages)):
                broken.append(f"{where}: no line {text!r}")
            if not present and any(wanted in m for m in messages):
                broken.append(f"{where}: holds {text!r}")
        return broken

    def tracking_matches(self, expected: list[str]) -> bool:
        return len(expected) == len(self.tracking) and all(
            fnmatch.fnmatchcase(got, want) for got, want in zip(self.tracking, expected, strict=True)
        )


async def replay(script: Script, root: Path) -> Run:
    # Every agent but those named is disabled, so the pipeline is runtime's own, cut down.
    disabled = [n for n in AGENT_NAMES if n not in script.agents and n not in ALWAYS_ON_AGENTS]
    data: dict[str, Any] = {
        "server": {"hostname": HOSTNAME, "data_dir": str(root)},
        "accepted_domains": ["example.test"],
        "agents": {"disabled": disabled},
    }
    _merge(data, script.config)
    for name, content in script.files:
        (root / name).write_text(content + "\n")
    config = parse_config(data, base=root)
    connector_data = {"name": "internet", "tls": False, "tarpit_interval": 0, **script.connector}
    connector = type(config.receive_connectors[0]).model_validate(connector_data)
    resolver = FakeResolver()
    for name, rdtype, value in script.dns:
        resolver.add(name, rdtype, value)
    clock = FakeClock()
    store = MemoryPolicyStore(clock)
    for name, member in script.lists:
        await store.list_add(name, member)
    for key, value in script.keys:
        await store.set(key, value, ttl=86400)
    spool = Spool(root / "queue", fsync=False)
    tracking = TrackingLog(root / "log", config.logging)
    state = StateStore(root / "state.db")
    state.connect()
    # argon2id at its lowest cost: the transcripts test the protocol, not the hash.
    users = UserStore(state, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID))
    addresses = AccountAddresses(state)
    for name, password, *owned in script.users:
        users.add(name, password)
        for address in owned:
            addresses.add(name, address)
    engine = FakeScanner(script.signatures, name="clamd")
    engine.down = script.engine_down
    scan = MultiEnginePolicy([Engine(engine, timeout=READ_TIMEOUT / 2)], config.antivirus.require)
    agents = build_agents(
        config, spool, policy_store=store, dns=resolver, clock=clock, addresses=addresses, scan_policy=scan
    )
    quarantine = QuarantineStore(root / "quarantine", fsync=False)
    env = SessionEnv(
        hostname=HOSTNAME, policy=build_policy(config, agents, policy_store=store), spool=spool,
        tracking=tracking, tls_contexts={}, handshake_timeout=5, on_queued=lambda _id: None,
        quarantine=quarantine, users=users,
    )  # fmt: skip
    count = 0

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        count += 1
        ip, port = writer.get_extra_info("peername")[:2]
        await Session(env, connector, reader, writer, Peer(ip, port), f"S{count}").run()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    run = Run([], [])
    try:
        async with server:
            await _play(script, port, clock, run)
    finally:
        tracking.close()
        state.close()
    run.tracking = [_event_line(e) for e in search(root / "log")]
    run.queued = [spool.read_data(r.id) for r in spool.list()]
    run.quarantined = [quarantine.get(e.qid)[1] for e in quarantine.list()]
    return run


def regenerate(script: Script, run: Run) -> bool:
    """Rewrite the transcript's ``S:`` and ``T:`` lines from ``run``; True if the file changed.

    Each line that still matches is kept as written; a ``T:`` block is replaced as a whole, at
    the place of the first ``T:`` line (or at the end), by one line per event of the run.
    """
    lines = script.path.read_text().splitlines()
    out: list[str] = []
    replies = iter(run.replies)
    expected = iter(script.tracking)
    events: list[str] = []
    for got in run.tracking:
        want = next(expected, None)
        events.append(f"T: {want}" if want is not None and fnmatch.fnmatchcase(got, want) else f"T: {got}")
    placed = False
    for line in lines:
        head, _, rest = line.partition(" ")
        if head == "S:":
            got = next(replies, b"")
            text = got.decode("utf-8", "replace").removesuffix("\r\n")
            keep = not got or _matches(rest.encode() + b"\r\n", got)
            out.append(line if keep else f"S: {text}")
        elif head == "T:":
            if not placed:
                out.extend(events)
                placed = True
        else:
            out.append(line)
    if not placed:
        out.extend(events)
    text = "\n".join(out) + "\n"
    if text == script.path.read_text():
        return False
    script.path.write_text(text)
    return True


async def _play(script: Script, port: int, clock: FakeClock, run: Run) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    async def close() -> None:
        if writer is not None:
            writer.close()
            await writer.wait_closed()

    async def connect(client: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", port, local_addr=(client, 0))

    first = script.steps[0] if script.steps else None
    client = first.client if first is not None else "127.0.0.2"
    reader, writer = await connect(client)
    try:
        for step in script.steps:
            if step.kind == "connect":
                await close()
                reader, writer = await connect(step.client)
            elif step.kind == "advance":
                clock.advance(step.seconds)
            elif step.kind == "write":
                writer.write(step.data)
                await writer.drain()
            elif step.kind == "expect":
                got = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
                run.replies.append(got)
                if not _matches(step.data, got):
                    run.mismatches.append(f"expected {step.data!r}, got {got!r}")
                    if not REGENERATE:
                        return
            elif step.kind == "closed":
                rest = await asyncio.wait_for(reader.read(), READ_TIMEOUT)
                if rest:
                    run.mismatches.append(f"expected the server to close, got {rest!r}")
                    run.structural.append(run.mismatches[-1])
                    return
    finally:
        await close()
