"""The SMTP delivery client: one message, its recipients for one next hop, one result each.

This module owns the conversation with a next hop (RFC 5321 §3-4) over aiosmtplib: the hosts of
a route are tried in order (smart-host failover, or MX hosts by preference, each address of
each host), EHLO with the connector's name, STARTTLS by the connector's policy, MAIL FROM with
SIZE, BODY=8BITMIME and SMTPUTF8 where needed, one RCPT per recipient, DATA.

How replies map to results (``results``): a 2xx after DATA delivers every accepted recipient;
a 4xx, a time-out or a lost connection defers; a 5xx fails. A failure before RCPT (no
connection, greeting or EHLO refused, 4xx to MAIL) moves on to the next host; a 5xx to MAIL or
DATA fails every recipient of that transaction. When every host was tried, the recipients are
deferred with the last transient reply, or failed when every host refused permanently.

8-bit data (RFC 6152 §3): data with a byte above 127 goes only to a peer announcing 8BITMIME,
as ``BODY=8BITMIME``; Edgeward does not downgrade MIME. A host without 8BITMIME is skipped;
when no host of the next hop has it the message fails with ``554 5.6.3`` (conversion required
but not supported), because retrying the same hosts would not change their capabilities. The
same holds for SMTPUTF8 (RFC 6531 §3.4, ``553 5.6.7``) and for a SIZE limit below the message
(RFC 1870, ``552 5.3.4``).

Line endings (RFC 5321 §2.3.8, §4.5.2): aiosmtplib's ``data()`` turns every bare LF and bare
CR into CRLF and doubles a leading '.', so the next hop receives CRLF lines only.

Security: TLS policy ``opportunistic`` encrypts without checking the certificate (RFC 7435, as
MTAs do and as Exchange's EncryptionOnly); a failed handshake is retried in clear once, since
the alternative is not delivering at all. ``required`` never sends in clear: no STARTTLS, a
refused one or a failed handshake defers with ``4.7.4``. Addresses are sent inside ``<>``;
aiosmtplib refuses control characters in commands, so a recipient cannot inject one.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib

from edgeward.config.schema import SendConnectorConfig
from edgeward.delivery.mx import Target, targets
from edgeward.delivery.pool import ConnectionPool, PoolKey
from edgeward.delivery.results import Deferred, Delivered, Failed, RecipientResult, reply_from_remote
from edgeward.delivery.routing import Route
from edgeward.errors import DeliveryError
from edgeward.ports import Resolver, ResolverError
from edgeward.queue.model import MessageRecord, RecipientRecord
from edgeward.tls.context import ClientMode, client_context
from edgeward.types import Reply

__all__ = ["SmtpClient", "needs_8bit", "needs_smtputf8"]

log = logging.getLogger(__name__)
_DSN_NOTIFY = {"NEVER", "SUCCESS", "FAILURE", "DELAY"}


def needs_8bit(data: bytes) -> bool:
    return not data.isascii()


def needs_smtputf8(record: MessageRecord, recipients: Sequence[RecipientRecord]) -> bool:
    return not record.mail_from.isascii() or any(not r.address.isascii() for r in recipients)


@dataclass
class _HostOutcome:
    """What one address gave: final results, or a reply and whether to try the next host."""

    results: dict[str, RecipientResult] | None = None
    reply: Reply | None = None
    permanent: bool = False
    retry_in_clear: bool = False
    notes: list[str] = field(default_factory=list)
    reusable: bool = False  # the transaction ended with a DATA reply: the session can take another


class _TlsRequired(Exception):
    """The next hop cannot be used with the security the connector requires: defer."""

    def __init__(self, message: str, enhanced: str = "4.7.4") -> None:
        super().__init__(message)
        self.enhanced = enhanced


# Policies that never send in clear text: no STARTTLS, a refused one or a failed handshake defer.
MANDATORY_TLS = frozenset({"required", "verify", "verify_hostname"})


class SmtpClient:
    """Delivers through one send connector's SMTP next hops."""

    def __init__(
        self,
        connector: SendConnectorConfig,
        *,
        helo_name: str,
        resolver: Resolver | None = None,
        tls_context: ssl.SSLContext | None = None,
        client_cert: tuple[Path, Path] | None = None,
        password: str = "",
    ) -> None:
        self._connector = connector
        self._helo = connector.fqdn or helo_name
        self._resolver = resolver
        self._tls_context = tls_context
        self._client_cert = client_cert if connector.tls_client_certificate else None
        self._password = password
        self._pool = ConnectionPool(connector.max_messages_per_connection)

    def _context(self) -> ssl.SSLContext:
        if self._tls_context is None:
            policy = self._connector.tls
            mode: ClientMode = policy if policy in ("verify", "verify_hostname") else "opportunistic"
            self._tls_context = client_context(mode, self._connector.tls_ca_file, self._client_cert)
        return self._tls_context

    async def deliver(
        self, route: Route, record: MessageRecord, recipients: Sequence[RecipientRecord], data: bytes
    ) -> dict[str, RecipientResult]:
        """Try the hosts of ``route`` until one gives final results for the recipients."""
        for stale in list(self._pool.expired()):
            await _quit(stale)
        addresses = [r.address for r in recipients]
        if len(data) > self._connector.max_message_size:
            reply = Reply(552, "5.3.4", f"Message too big for send connector {self._connector.name}")
            return dict.fromkeys(addresses, Failed(reply))
        try:
            hosts = await targets(route, self._resolver)
        except DeliveryError as exc:
            reply = exc.reply or Reply(451, "4.4.0", str(exc))
            return {a: (Failed(reply) if reply.is_permanent else Deferred(reply)) for a in addresses}
        last: Reply = Reply(451, "4.4.0", f"No host to try for {route.next_hop}")
        all_permanent = True
        for target in hosts:
            try:
                ips = await self._addresses(target)
            except ResolverError as exc:
                last, all_permanent = Reply(451, "4.4.4", f"Cannot resolve {target.host}: {exc}"), False
                continue
            for ip in ips:
                outcome = await self._attempt(target, ip, record, recipients, data, tls=True)
                if outcome.retry_in_clear:
                    outcome = await self._attempt(target, ip, record, recipients, data, tls=False)
                if outcome.results is not None:
                    return outcome.results
                if outcome.reply is not None:
                    last = outcome.reply
                    all_permanent = all_permanent and outcome.permanent
        if all_permanent and last.is_permanent:
            return dict.fromkeys(addresses, Failed(last))
        if last.is_permanent:
            # Some host failed only for now; keep the permanent text but retry later.
            last = Reply(451, "4.4.0", f"{last.code} {last.enhanced or ''} {last.text}".replace("  ", " "))
        return dict.fromkeys(addresses, Deferred(last))

    async def _addresses(self, target: Target) -> list[str]:
        if target.from_dns and self._resolver is not None:
            return list(await self._resolver.addresses(target.host))
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(target.host, target.port, type=1)  # SOCK_STREAM
        except OSError as exc:
            raise ResolverError(str(exc), permanent=False) from None
        seen: list[str] = []
        for info in infos:
            ip = str(info[4][0])
            if ip not in seen:
                seen.append(ip)
        return seen

    async def _attempt(
        self,
        target: Target,
        ip: str,
        record: MessageRecord,
        recipients: Sequence[RecipientRecord],
        data: bytes,
        *,
        tls: bool,
    ) -> _HostOutcome:
        where = f"{target.host}[{ip}]:{target.port}"
        key = (target.host, ip, target.port, tls)
        pooled = self._pool.take(key)
        if pooled is not None:
            smtp, sent = pooled
            try:
                outcome = await self._transaction(smtp, where, record, recipients, data)
            except (aiosmtplib.SMTPException, OSError):
                # The next hop closed the idle connection: open a fresh one below.
                smtp.close()
            else:
                await self._release(key, smtp, sent + 1, outcome)
                return outcome
        smtp = aiosmtplib.SMTP(
            hostname=ip,
            port=target.port,
            local_hostname=self._helo,
            timeout=self._connector.command_timeout,
            start_tls=False,
            validate_certs=False,
        )
        try:
            await smtp.connect(timeout=self._connector.connect_timeout)
        except aiosmtplib.SMTPResponseException as exc:
            # A 4xx or 5xx greeting: this host will not talk; the next one may.
            return _HostOutcome(reply=_remote(exc.code, exc.message, where), permanent=exc.code >= 500)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return _HostOutcome(reply=Reply(451, "4.4.1", f"Connection to {where} failed: {exc}"))
        outcome = _HostOutcome()
        try:
            outcome = await self._converse(smtp, target, where, record, recipients, data, tls=tls)
            return outcome
        except _TlsRequired as exc:
            return _HostOutcome(reply=Reply(451, exc.enhanced, f"{where}: {exc}"))
        except aiosmtplib.SMTPResponseException as exc:
            return _HostOutcome(reply=_remote(exc.code, exc.message, where), permanent=exc.code >= 500)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return _HostOutcome(reply=Reply(451, "4.4.2", f"Connection to {where} lost: {exc}"))
        finally:
            await self._release(key, smtp, 1, outcome)

    async def _release(self, key: PoolKey, smtp: aiosmtplib.SMTP, sent: int, outcome: _HostOutcome) -> None:
        """Keep a healthy connection for the next message to the same host, or close it."""
        if not (outcome.reusable and smtp.is_connected and self._pool.give(key, smtp, sent)):
            await _quit(smtp)

    async def close(self) -> None:
        """Close the idle connections (at shutdown)."""
        for smtp in self._pool.drain():
            await _quit(smtp)

    async def _converse(
        self,
        smtp: aiosmtplib.SMTP,
        target: Target,
        where: str,
        record: MessageRecord,
        recipients: Sequence[RecipientRecord],
        data: bytes,
        *,
        tls: bool,
    ) -> _HostOutcome:
        await _hello(smtp, self._helo)
        policy = self._connector.tls
        mandatory = policy in MANDATORY_TLS
        if policy != "none" and tls and smtp.supports_extension("starttls"):
            try:
                await smtp.starttls(server_hostname=target.host, tls_context=self._context())
            except aiosmtplib.SMTPResponseException as exc:
                # STARTTLS refused: the session is still usable in clear (RFC 3207 §4).
                if mandatory:
                    raise _TlsRequired(f"STARTTLS refused: {exc.code} {exc.message}") from None
            except ssl.SSLCertVerificationError as exc:
                raise _TlsRequired(f"certificate not accepted: {exc.verify_message}", "4.7.5") from None
            except (ssl.SSLError, aiosmtplib.SMTPException, OSError) as exc:
                if mandatory:
                    raise _TlsRequired(f"TLS handshake failed: {exc}") from None
                log.info("TLS handshake with %s failed (%s); retrying in clear", where, exc)
                return _HostOutcome(retry_in_clear=True)
            else:
                # RFC 3207 §4.2: forget what was learnt before TLS and ask again.
                await _hello(smtp, self._helo)
        elif mandatory:
            raise _TlsRequired("TLS is required but the host does not offer STARTTLS")
        if self._connector.auth_username:
            await self._login(smtp)
        return await self._transaction(smtp, where, record, recipients, data)

    async def _login(self, smtp: aiosmtplib.SMTP) -> None:
        """Smart-host AUTH, only inside TLS: a password never crosses the wire in clear."""
        if smtp.get_transport_info("sslcontext") is None:
            raise _TlsRequired("refusing to send AUTH without TLS")
        try:
            await smtp.login(self._connector.auth_username, self._password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Wrong credentials are an administrator's fix, not a reason to bounce the mail.
            raise _TlsRequired(f"smart host refused AUTH: {exc.code} {exc.message}", "4.7.8") from None

    async def _transaction(
        self,
        smtp: aiosmtplib.SMTP,
        where: str,
        record: MessageRecord,
        recipients: Sequence[RecipientRecord],
        data: bytes,
    ) -> _HostOutcome:
        """MAIL, RCPT for each recipient, DATA, on a session that is greeted (and TLS'd)."""
        options: list[str] = []
        if smtp.supports_extension("size"):
            limit = _int(smtp.esmtp_extensions.get("size", ""))
            if limit and len(data) > limit:
                return _HostOutcome(
                    reply=Reply(552, "5.3.4", f"Message exceeds {where} limit"), permanent=True
                )
            options.append(f"SIZE={len(data)}")
        if needs_8bit(data):
            if not smtp.supports_extension("8bitmime"):
                reply = Reply(554, "5.6.3", f"8-bit message but {where} does not offer 8BITMIME")
                return _HostOutcome(reply=reply, permanent=True)
            options.append("BODY=8BITMIME")
        if needs_smtputf8(record, recipients):
            if not smtp.supports_extension("smtputf8"):
                reply = Reply(553, "5.6.7", f"Non-ASCII address but {where} does not offer SMTPUTF8")
                return _HostOutcome(reply=reply, permanent=True)
            options.append("SMTPUTF8")
        dsn = smtp.supports_extension("dsn")

        resp = await _command(smtp, b"MAIL", f"FROM:<{record.mail_from}>", options)
        if resp.code != 250:
            reply = _remote(resp.code, resp.message, where)
            if reply.is_permanent:
                return _HostOutcome(results={r.address: Failed(reply) for r in recipients})
            return _HostOutcome(reply=reply)

        results: dict[str, RecipientResult] = {}
        accepted: list[str] = []
        for rcpt in recipients:
            rcpt_opts = []
            notify = [n.upper() for n in rcpt.notify if n.upper() in _DSN_NOTIFY]
            if dsn and notify:
                rcpt_opts.append("NOTIFY=" + ",".join(notify))  # RFC 3461 §4.1: relay what was asked
            try:
                resp = await _command(smtp, b"RCPT", f"TO:<{rcpt.address}>", rcpt_opts)
            except (aiosmtplib.SMTPException, OSError) as exc:
                lost = Reply(451, "4.4.2", f"Connection to {where} lost during RCPT: {exc}")
                for other in recipients:
                    results.setdefault(other.address, Deferred(lost))
                return _HostOutcome(results=results)
            if resp.code in (250, 251):
                accepted.append(rcpt.address)
            else:
                reply = _remote(resp.code, resp.message, where)
                results[rcpt.address] = Failed(reply) if reply.is_permanent else Deferred(reply)
        if not accepted:
            return _HostOutcome(results=results)

        try:
            resp = await smtp.data(data)
            final = _remote(resp.code, resp.message, where)
        except aiosmtplib.SMTPResponseException as exc:
            final = _remote(exc.code, exc.message, where)
        except (aiosmtplib.SMTPException, OSError) as exc:
            # The message may or may not have arrived (RFC 5321 §6.1 accepts a duplicate).
            final = Reply(451, "4.4.2", f"Connection to {where} lost during DATA: {exc}")
        outcome: RecipientResult
        if final.is_positive:
            outcome = Delivered(final)
        elif final.is_transient:
            outcome = Deferred(final)
        else:
            outcome = Failed(final)
        for address in accepted:
            results[address] = outcome
        return _HostOutcome(results=results, reusable=isinstance(outcome, Delivered | Failed))


def _remote(code: int, message: str, where: str) -> Reply:
    reply = reply_from_remote(code, message)
    return Reply(reply.code, reply.enhanced, f"{reply.text} (from {where})".strip())


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


async def _hello(smtp: aiosmtplib.SMTP, name: str) -> None:
    try:
        await smtp.ehlo(hostname=name)
    except aiosmtplib.SMTPHeloError as exc:
        if exc.code >= 500 and smtp.is_connected:
            # RFC 5321 §3.2: a server that does not know EHLO gets HELO.
            await smtp.helo(hostname=name)
        else:
            raise


async def _command(
    smtp: aiosmtplib.SMTP, verb: bytes, arg: str, options: Sequence[str]
) -> aiosmtplib.SMTPResponse:
    # SMTPUTF8 addresses travel as UTF-8 (RFC 6531 §3.2); others are ASCII by construction.
    parts = [arg.encode("utf-8"), *(o.encode("ascii") for o in options)]
    return await smtp.execute_command(verb, *parts)


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    try:
        if smtp.is_connected:
            await smtp.quit(timeout=5.0)
    except (aiosmtplib.SMTPException, OSError):
        pass
    finally:
        # Also when aiosmtplib already counts the session as gone: its transport may still be open.
        smtp.close()
