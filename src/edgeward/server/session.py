"""One SMTP session: the only place that awaits the socket.

The session drives the sans-IO protocol core (``edgeward.smtp``): it feeds it bytes, takes its
events one at a time, asks the agent pipeline about each, and writes the reply the core
formats. Replies to pipelined commands are buffered and flushed only before the session waits
for more input, so a pipelining client gets one write per batch (RFC 2920).

Security:
- bytes the client pipelined behind STARTTLS are thrown away, both those the core holds and
  those still in the stream's buffer, and all state is reset after the handshake;
- every wait on the client is bounded (idle, DATA and whole-connection time limits);
- a message is on disk, fsync'd, before ``250`` is sent; a spool error answers ``451``.

Policy lives elsewhere: the agents' verdicts, exemptions, the postmaster rewrite and the tarpit
in ``filters.policy``, header changes in ``filters.transforms``, where an accepted message goes in
``server.disposition``. The session keeps the findings of its stages in a ``Ledger`` and hands
it to the policy with each question.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from edgeward.auth.throttle import Throttle
from edgeward.auth.users import UserStore
from edgeward.config.permissions import rights_for
from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.message import MessageView
from edgeward.filters.policy import CLOSING, Policy, StageDecision, mail_admission
from edgeward.filters.signals import signals_of
from edgeward.filters.transforms import Accepted
from edgeward.filters.verdict import Ledger
from edgeward.headers import parse_headers, sanitize
from edgeward.logs.protocol import ProtocolLog, ProtocolSession
from edgeward.logs.tracking import TrackingLog
from edgeward.message_file import MessageFile
from edgeward.metrics import count_connection
from edgeward.quarantine.store import QuarantineStore
from edgeward.queue.spool import Spool
from edgeward.server.auth import AuthExchange, AuthStep
from edgeward.server.budget import BUDGET_FULL, ByteBudget, Reservation
from edgeward.server.disposition import dispose, track, track_refusal
from edgeward.server.guard import SESSION_TOO_LONG, TOO_MUCH_JUNK, ReadGuard, SessionEnd
from edgeward.server.peertls import certificate_groups, discard_buffered, upgrade
from edgeward.server.receipt import Transaction, queue_record
from edgeward.smtp import events as ev
from edgeward.smtp.connection import Extensions, ProtocolLimits, ServerConnection
from edgeward.smtp.replies import NO_VALID_RECIPIENTS
from edgeward.types import Action, Address, Peer, Reply

log = logging.getLogger("edgeward.session")

GOODBYE = Reply(221, "2.0.0", "Bye")
TIMEOUT = Reply(421, "4.4.2", "Idle timeout, closing connection")
TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available due to temporary reason")
TLS_READY = Reply(220, "2.0.0", "Ready to start TLS")


# The settings of the SMTP core are the same for every session of a connector: made once and
# shared (10,000 idle sessions held 10,000 copies of each).
@functools.lru_cache(maxsize=256)
def _limits(
    size: int, header: int, recipients: int, commands: int, errors: int,
    bare_lf: Literal["reject", "normalize"],
) -> ProtocolLimits:  # fmt: skip
    return ProtocolLimits(
        max_message_size=size, max_header_size=header, max_recipients=recipients,
        max_commands=commands, max_protocol_errors=errors, bare_lf=bare_lf,
    )  # fmt: skip


@functools.lru_cache(maxsize=256)
def _extensions(
    hostname: str, size: int, starttls: bool, auth: tuple[str, ...], auth_before_tls: bool, requiretls: bool
) -> Extensions:
    return Extensions(
        hostname=hostname, size=size, starttls=starttls, auth_mechanisms=auth,
        auth_before_tls=auth_before_tls, requiretls=requiretls,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SessionEnv:
    """What a session needs from the running gateway; built by ``runtime``."""

    hostname: str
    policy: Policy
    spool: Spool
    tracking: TrackingLog
    tls_contexts: Mapping[str, ssl.SSLContext]  # by connector name; none: no TLS on it
    handshake_timeout: float
    on_queued: Callable[[str], None]
    quarantine: QuarantineStore | None = None
    users: UserStore | None = None
    throttles: Mapping[str, Throttle] = field(default_factory=dict)  # failed AUTH, by connector
    protocol_logs: Mapping[str, ProtocolLog] = field(default_factory=dict)  # by connector name
    budget: ByteBudget | None = None  # message bytes in flight, shared by all sessions
    # How a tarpit waits; a test hands in one that records the delay instead of taking it.
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


class Session:
    """Serves one client connection from greeting to close."""

    def __init__(
        self,
        env: SessionEnv,
        connector: ReceiveConnectorConfig,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Peer,
        session_id: str,
        guard: ReadGuard | None = None,
    ) -> None:
        self.env = env
        # Read timeouts, the minimum data rate and shutdown/eviction live in the guard.
        self.guard = guard or ReadGuard(connector)
        self.reservation: Reservation | None = None
        self.connector = connector
        self.reader = reader
        self.writer = writer
        self.fqdn = connector.fqdn or env.hostname
        self.tls_context = env.tls_contexts.get(connector.name) if connector.tls else None
        self.info = SessionInfo(
            session_id=session_id, peer=peer, connector=connector, rights=rights_for(connector, ())
        )
        self._exchange: AuthExchange | None = None  # made at the first AUTH: most sessions send none
        self.conn = ServerConnection(
            _limits(
                connector.max_message_size, connector.max_header_size, connector.max_recipients,
                connector.max_commands, connector.max_protocol_errors, connector.bare_lf,
            ),
            _extensions(
                self.fqdn,
                connector.max_message_size,
                self.tls_context is not None and not connector.implicit_tls,
                connector.auth_mechanisms if env.users is not None else (),
                connector.auth_without_tls,
                # RFC 8689: offered once TLS is up; the send side enforces it on every later hop.
                self.tls_context is not None,
            ),
        )  # fmt: skip
        self.tx: Transaction | None = None
        self.ledger = Ledger()
        self._closing = False  # an agent asked to DISCONNECT: send its reply, then close
        plog = env.protocol_logs.get(connector.name)
        self.plog: ProtocolSession | None = plog.session(session_id, peer.ip) if plog else None

    @property
    def auth(self) -> AuthExchange:
        if self._exchange is None:
            throttle = self.env.throttles.get(self.connector.name)
            if throttle is None:  # not "or": an empty Throttle is falsy (it has a length)
                throttle = Throttle.for_connector(self.connector)
            self._exchange = AuthExchange(self.connector, self.env.users, throttle, self.info.peer.ip)
        return self._exchange

    # -- I/O -------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.plog is not None:
            for line in data.splitlines():
                self.plog.sent(line)
        self.writer.write(data)

    async def _read(self) -> bytes:
        await self.writer.drain()
        in_data = self.conn.state.name in ("DATA", "BDAT")
        data = await self.guard.read(self.reader, self.conn.state.name)
        if in_data and self.reservation is not None:
            # Past the inline budget a message goes to a file: memory holds no more of it.
            self.reservation.cover(min(self.guard.data_bytes, self.conn.limits.spill_above))
        return data

    async def run(self) -> None:
        try:
            async with asyncio.timeout(self.connector.connection_timeout) as limit:
                self.guard.within(limit)  # its reads move this one timer (server/guard.py)
                await self._serve()
        except TimeoutError:
            self._close_with(SESSION_TOO_LONG)
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            log.debug("session %s: connection lost: %s", self.info.session_id, exc)
        finally:
            self.conn.abandon()  # the file of a large message cut off mid-way
            self._release()
            await self._close()

    def _release(self) -> None:
        if self.reservation is not None:
            self.reservation.release()
            self.reservation = None

    def _close_with(self, reply: Reply) -> None:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            self._write(reply.to_bytes())

    async def _close(self) -> None:
        try:
            self.writer.close()
            async with asyncio.timeout(5):
                await self.writer.wait_closed()
        except (TimeoutError, ConnectionError, ssl.SSLError, OSError):
            pass

    # -- the loop ---------------------------------------------------------------------------

    async def _serve(self) -> None:
        name = self.connector.name
        if self.connector.implicit_tls:
            if self.tls_context is None:
                count_connection(name, "tls_failed")
                return
            try:
                await self._handshake()
            except Exception:  # not a cancellation: a stop is no failed handshake
                count_connection(name, "tls_failed")
                raise
        await self._greet_pause()
        decision = await self.env.policy.stage(StageContext(Stage.CONNECT, self.info), self.ledger)
        count_connection(name, "accepted" if decision.reply is None else "refused_by_policy")
        if decision.reply is not None:
            refusal = track_refusal(self.env, self.info, "CONNECT", decision.reply, None, decision=decision)
            self._write(self.conn.greeting(refusal))
            return
        banner = self.connector.banner or "ESMTP ready"
        self._write(self.conn.greeting(Reply(220, None, f"{self.fqdn} {banner}")))
        while not self.conn.closed:
            event = self.conn.next_event()
            if isinstance(event, ev.NeedData):
                try:
                    data = await self._read()
                except SessionEnd as end:
                    self._close_with(end.reply)
                    return
                self.conn.receive_data(data)
                continue
            if isinstance(event, ev.ConnectionClosed):
                return
            if self.plog is not None:  # per parsed command, never per read (CWE-532)
                self.plog.command(event, self.conn.pending_chunk)
            self._notice(event)
            reply, close = await self._answer(event)
            self._write(self.conn.send(reply))
            if self.conn.state.name not in ("MAIL", "RCPT", "DATA", "BDAT"):
                self._release()  # the transaction is over, however it ended
            if isinstance(event, ev.StartTls) and reply.code == 220:
                await self._start_tls()
            elif close:
                await self.writer.drain()
                return

    async def _greet_pause(self) -> None:
        """Wait ``greet_pause`` before the banner; a client that talks first is pregreeting.

        Its early bytes are kept and read as commands after the banner, so a hasty but honest
        client still gets its mail through; the protocol-analysis agent weighs the signal.
        """
        pause = self.connector.greet_pause
        if pause <= 0:
            return
        try:
            async with asyncio.timeout(pause):
                early = await self.reader.read(4096)
        except TimeoutError:
            return
        self.info = replace(self.info, protocol=self.info.protocol.seen("pregreet"))
        self.conn.receive_data(early)

    def _notice(self, event: object) -> None:
        for signal in signals_of(event, self.conn.buffered, self.info.esmtp):
            self.info = replace(self.info, protocol=self.info.protocol.seen(signal))

    async def _answer(self, event: object) -> tuple[Reply, bool]:
        match event:
            case ev.Noop() | ev.Rset() | ev.Vrfy() | ev.Help() if self.guard.junk_command():
                return TOO_MUCH_JUNK, True
            case ev.Helo():
                return self._refused("HELO", await self._helo(event), None)
            case ev.MailFrom():
                return self._refused("MAIL", await self._mail(event), event.address)
            case ev.RcptTo():
                sender = self.tx.mail_from if self.tx else None
                return self._refused("RCPT", await self._rcpt(event), sender, [event.address])
            case ev.Data() | ev.BdatChunk():
                tx = self.tx
                reply = await (self._data_start() if isinstance(event, ev.Data) else self._bdat(event))
                sender, rcpts = (tx.mail_from, tx.rcpts) if tx else (None, [])
                return self._refused("DATA", reply, sender, rcpts)
            case ev.MessageData():
                return await self._message(event), self._closing
            case ev.Rset():
                self._end_transaction()
                return Reply(250, "2.0.0", "Flushed"), False
            case ev.Noop():
                return Reply(250, "2.0.0", "OK"), False
            case ev.Quit():
                return GOODBYE, True
            case ev.Vrfy():
                return Reply(
                    252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery"
                ), False
            case ev.Help():
                return Reply(214, "2.0.0", "See RFC 5321, https://www.rfc-editor.org/rfc/rfc5321"), False
            case ev.StartTls():
                return (TLS_READY if self.tls_context is not None else TLS_UNAVAILABLE), False
            case ev.Auth():
                return await self._auth(await self.auth.begin(event, self.conn.tls_active))
            case ev.AuthResponse():
                return await self._auth(await self.auth.respond(event))
            case ev.ProtocolViolation():
                if (closing := self._close_after_recipients(event)) is not None:
                    return closing
                self._track_violation(event)
                return event.reply, event.fatal
        raise TypeError(f"unexpected protocol event {event!r}")

    def _refused(
        self,
        stage: str,
        reply: Reply | StageDecision,
        sender: Address | None,
        rcpts: list[Address] | None = None,
    ) -> tuple[Reply, bool]:
        """Track a refusal with the findings so far and who made it; say whether to close."""
        if isinstance(reply, Reply):  # the session's own rules: TLS, AUTH, limits, postmaster
            reply = StageDecision(reply, False, "session", self.ledger.findings)
        answer = reply.reply or CLOSING
        track_refusal(self.env, self.info, stage, answer, sender, rcpts or (), decision=reply)
        return answer, self._closing

    def _close_after_recipients(self, event: ev.ProtocolViolation) -> tuple[Reply, bool] | None:
        """DATA or BDAT when every recipient was refused by an agent that closes once they are
        done (the core answers ``554 5.5.1``): tracked as that agent's refusal, then closed."""
        tx = self.tx
        if tx is None or tx.rcpts or tx.close_after is None or event.reply != NO_VALID_RECIPIENTS:
            return None
        self._closing = True
        why = StageDecision(event.reply, True, tx.close_after.decided_by, tx.close_after.findings)
        return self._refused("DATA", why, tx.mail_from)

    def _track_violation(self, event: ev.ProtocolViolation) -> None:
        """The core's refusal of a MAIL or RCPT (a declared SIZE over the limit, a bad address)
        refuses a sender or a recipient like an agent's does, so it is tracked too."""
        if event.command not in ("MAIL", "RCPT"):
            return
        sender = self.tx.mail_from if self.tx is not None and event.command == "RCPT" else None
        decision = StageDecision(event.reply, event.fatal, "protocol", self.ledger.findings)
        track_refusal(self.env, self.info, event.command, event.reply, sender, decision=decision)

    def _end_transaction(self) -> None:
        self.tx = None
        self.ledger.new_transaction()

    async def _ask(self, ctx: StageContext) -> StageDecision | None:
        """The policy's answer at a stage before end of data: a refusal, or ``None`` to go on."""
        decision = await self.env.policy.stage(ctx, self.ledger)
        if decision.reply is None:
            return None
        self._closing = decision.disconnect
        if delay := self.env.policy.tarpit(decision.reply, self.info):
            await self.writer.drain()
            await self.env.sleep(delay)
        return decision

    # -- commands ---------------------------------------------------------------------------

    async def _helo(self, event: ev.Helo) -> Reply | StageDecision:
        self.tx = None
        self.ledger.new_helo()
        self.info = replace(self.info, helo=sanitize(event.name, 255), esmtp=event.esmtp)
        if decision := await self._ask(StageContext(Stage.HELO, self.info)):
            return decision
        return Reply(250, None, f"{self.fqdn} Hello {self.info.helo} [{self.info.peer.ip}]")

    async def _mail(self, event: ev.MailFrom) -> Reply | StageDecision:
        if refusal := mail_admission(self.info, event.address, self.conn.tls_active):
            return refusal
        tx = Transaction(event)
        self.ledger.new_transaction()
        ctx = StageContext(Stage.MAIL, self.info, mail_from=tx.mail_from, mail_params=tx.mail_params)
        if decision := await self._ask(ctx):
            return decision
        if self.env.budget is not None:
            held = min(event.size or self.connector.max_message_size, self.conn.limits.spill_above)
            self.reservation = self.env.budget.reserve(held)
            if self.reservation is None:
                return BUDGET_FULL
        self.tx = tx
        if self.conn.spill_to is None:  # set here, not per connection: idle sessions hold less
            self.conn.spill_to = self.env.spool.spill_file
        return Reply(250, "2.1.0", "Sender OK")

    async def _rcpt(self, event: ev.RcptTo) -> Reply | StageDecision:
        tx = self.tx
        if tx is None:  # the core orders commands; this guards a bug, not a client
            return Reply(503, "5.5.1", "Need MAIL command")
        address = self.env.policy.recipient(event.address)
        if isinstance(address, Reply):
            return address
        event = replace(event, address=address)
        ctx = StageContext(
            Stage.RCPT,
            self.info,
            mail_from=tx.mail_from,
            mail_params=tx.mail_params,
            recipient=event.address,
            recipients=tuple(tx.rcpts),
        )
        if refusal := await self._ask(ctx):
            if refusal.close_after_recipients:
                tx.close_after = refusal
            return refusal
        tx.rcpts.append(event.address)
        tx.rcpt_params.append({k.upper(): v for k, v in event.params})
        return Reply(250, "2.1.5", "Recipient OK")

    async def _data_stage(self) -> Reply | StageDecision | None:
        tx = self.tx
        if tx is None or not tx.rcpts:
            return Reply(554, "5.5.1", "No valid recipients")
        ctx = StageContext(Stage.DATA, self.info, mail_from=tx.mail_from, recipients=tuple(tx.rcpts))
        return await self._ask(ctx)

    async def _data_start(self) -> Reply | StageDecision:
        refusal = await self._data_stage()
        return refusal or Reply(354, None, "End data with <CR><LF>.<CR><LF>")

    async def _bdat(self, event: ev.BdatChunk) -> Reply | StageDecision:
        tx = self.tx
        if tx is not None and not tx.bdat_started:
            tx.bdat_started = True
            refusal = await self._data_stage()
            if refusal is not None:
                return refusal
        return Reply(250, "2.0.0", f"{event.size} octets received")

    async def _message(self, event: ev.MessageData) -> Reply:
        tx, self.tx = self.tx, None
        spooled = event.spooled
        try:
            if tx is None or not tx.rcpts:
                return Reply(554, "5.5.1", "No valid recipients")
            if event.violation is not None or (self.reservation is not None and self.reservation.exceeded):
                reply = event.violation or BUDGET_FULL
                track(self.env, "REJECT", "", tx, self.info, len(event.data), reply=str(reply),
                      detail="at EOD", findings=self.ledger.findings,
                      decided_by="protocol limit")  # fmt: skip
                self.ledger.new_transaction()
                return reply
            return await self._end_of_data(tx, event.data, spooled)
        finally:
            if spooled is not None:  # committed (copied into data/), quarantined or refused
                spooled.discard()

    async def _end_of_data(self, tx: Transaction, received: bytes, spooled: MessageFile | None) -> Reply:
        policy = self.env.policy
        # Allocated before the agents run, so the agent log and a REJECT name the same id.
        msg_id = self.env.spool.new_id()
        message: bytes | MessageFile
        if spooled is not None:  # past the inline budget: the header here, the body in its file
            spooled = policy.transforms.inbound_file(spooled, self.info)
            message, data, headers = spooled, b"", parse_headers(spooled.header)
            view = MessageView.from_file(spooled, headers, policy.walk_limits)
        else:
            data = policy.transforms.inbound(received, self.info)
            message, headers = data, parse_headers(data)
            view = MessageView(data, headers, policy.walk_limits)
        ctx = StageContext(
            Stage.EOD, self.info, mail_from=tx.mail_from, mail_params=tx.mail_params,
            recipients=tuple(tx.rcpts), data=data, headers=headers, msg_id=msg_id,
            message=view, spooled=spooled,
        )  # fmt: skip
        verdict = await policy.end_of_data(ctx, self.ledger)
        view.release()  # the parts' decoded copies are not needed past the agents
        self.ledger.new_transaction()
        self._closing = verdict.action is Action.DISCONNECT
        if verdict.refused:
            return await dispose(self.env, verdict, msg_id, tx, message, headers, self.info)
        accepted = Accepted(
            msg_id,
            self.info,
            self.fqdn,
            tuple(tx.rcpts),
            verdict,
            self.conn.tls_active,
            tx.smtputf8,
            tx.mail_from,
            queue_record(msg_id, tx, message, headers, self.info),
        )
        if tx.replace_recipients(policy.transforms.recipients(accepted)):
            # A rule's redirect or blind copy: the queue record (and a quarantined original) follow.
            record = queue_record(msg_id, tx, message, headers, self.info)
            accepted = replace(accepted, recipients=tuple(tx.rcpts), record=record)
        final: bytes | MessageFile
        if isinstance(message, MessageFile):
            final = await policy.transforms.accepted_file(message, accepted)
        else:
            final = await policy.transforms.accepted_async(message, accepted)
        return await dispose(self.env, verdict, msg_id, tx, final, headers, self.info)

    # -- STARTTLS ---------------------------------------------------------------------------

    async def _start_tls(self) -> None:
        discard_buffered(self.reader)
        await self._handshake()
        self.conn.tls_started()
        self.conn.extensions = replace(self.conn.extensions, starttls=False)
        self.tx = None
        self.ledger.new_helo()

    async def _handshake(self) -> None:
        assert self.tls_context is not None
        state = await upgrade(self.writer, self.tls_context, self.env.handshake_timeout)
        groups = certificate_groups(self.connector, state.peer_names)
        self.info = replace(
            self.info,
            helo="",
            esmtp=False,
            tls=state.description,
            authenticated="",
            peer_names=state.peer_names,
            groups=groups,
            rights=rights_for(self.connector, groups),
        )
        if self.connector.implicit_tls:
            self.conn.tls_started()

    # -- AUTH and domain security -------------------------------------------------------------

    async def _auth(self, step: AuthStep) -> tuple[Reply, bool]:
        if step.tarpit > 0:
            await self.writer.drain()
            await asyncio.sleep(step.tarpit)
        if step.identity:
            groups = self.info.groups | {"users"}
            rights = rights_for(self.connector, groups)
            self.info = replace(self.info, authenticated=step.identity, groups=groups, rights=rights)
        return step.reply, step.disconnect
