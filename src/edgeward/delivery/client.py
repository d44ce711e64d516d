"""The SMTP delivery client: one message, its recipients for one next hop, one result each.

This module owns the conversation with a next hop (RFC 5321 §3-4) over aiosmtplib: the hosts of
a route are tried in order (smart-host failover, or MX hosts by preference, each address of
each host), EHLO with the connector's name, STARTTLS as the TLS policy of the host demands,
then the transaction (:mod:`~edgeward.delivery.transaction`).

A failure before RCPT (no connection, greeting or EHLO refused, 4xx to MAIL, TLS not possible
as required) moves on to the next host. When every host was tried, the recipients are
deferred with the last transient reply, or failed when every host refused permanently.

TLS: the TLS each host must get comes from :mod:`~edgeward.delivery.hops` (the MTA-STS, DNSSEC
and DANE lookups, REQUIRETLS's rules) and :mod:`~edgeward.delivery.tlspolicy` (their
precedence); this module carries it out. Opportunistic TLS encrypts without checking
the certificate (RFC 7435, Exchange's EncryptionOnly), and a failed handshake is retried in
clear once, since the alternative is not delivering at all. Every stricter level never sends
in clear: no STARTTLS, a refused one, a failed handshake or a certificate that does not
authenticate defers with ``4.7.x``; a REQUIRETLS message still undelivered at expiry bounces
with ``5.7.10``. The negotiated protocol, cipher and peer certificate go into the SEND
tracking event.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from pathlib import Path

import aiosmtplib

from edgeward.config.schema import SendConnectorConfig
from edgeward.delivery import dane, peercert
from edgeward.delivery.hops import Hop, HopPlanner
from edgeward.delivery.mta_sts import MtaSts
from edgeward.delivery.mx import Target, targets
from edgeward.delivery.pool import ConnectionPool, PoolKey, close_session, quit_session
from edgeward.delivery.results import Deferred, Delivered, Failed, RecipientResult
from edgeward.delivery.routing import Route
from edgeward.delivery.tlspolicy import Level
from edgeward.delivery.transaction import HostOutcome, remote_reply, transaction
from edgeward.errors import DeliveryError
from edgeward.ports import Resolver, ResolverError
from edgeward.queue.model import MessageRecord, RecipientRecord
from edgeward.tls.context import client_context, describe
from edgeward.types import Reply

__all__ = ["SmtpClient"]

log = logging.getLogger(__name__)


class _TlsRequired(Exception):
    """The next hop cannot be used with the security its policy requires: defer."""

    def __init__(self, message: str, enhanced: str = "4.7.4") -> None:
        super().__init__(message)
        self.enhanced = enhanced


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
        mta_sts: MtaSts | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self._connector = connector
        self._helo = connector.fqdn or helo_name
        self._resolver = resolver
        self._fixed_context = tls_context
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._client_cert = client_cert if connector.tls_client_certificate else None
        self._password = password
        self._planner = HopPlanner(connector, resolver, mta_sts)
        # Trust anchors for every verifying level; the connector's own file first.
        self._ca_file = connector.tls_ca_file or ca_file
        self._pool = ConnectionPool(connector.max_messages_per_connection)
        self._source = (connector.source_address, 0) if connector.source_address else None

    def _context(self, level: Level) -> ssl.SSLContext:
        if self._fixed_context is not None:
            return self._fixed_context
        # DANE authenticates by TLSA records after the handshake, so the handshake itself
        # must not insist on PKIX; encrypt-only and opportunistic are the same context.
        mode = level if level in ("verify", "verify_hostname") else "opportunistic"
        context = self._contexts.get(mode)
        if context is None:
            context = client_context(mode, self._ca_file, self._client_cert)
            self._contexts[mode] = context
        return context

    async def deliver(
        self, route: Route, record: MessageRecord, recipients: Sequence[RecipientRecord], data: bytes
    ) -> dict[str, RecipientResult]:
        """Try the hosts of ``route`` until one gives final results for the recipients."""
        for stale in list(self._pool.expired()):
            await quit_session(stale)
        addresses = [r.address for r in recipients]
        if len(data) > self._connector.max_message_size:
            reply = Reply(552, "5.3.4", f"Message too big for send connector {self._connector.name}")
            return dict.fromkeys(addresses, Failed(reply))
        try:
            hosts = await targets(route, self._resolver)
            plan = await self._planner.prepare(route, record, hosts)
        except DeliveryError as exc:
            reply = exc.reply or Reply(451, "4.4.0", str(exc))
            return {a: (Failed(reply) if reply.is_permanent else Deferred(reply)) for a in addresses}
        last: Reply = Reply(451, "4.4.0", f"No host to try for {route.next_hop}")
        all_permanent = True
        for target in plan.hosts:
            try:
                ips = await self._addresses(target)
                hop = await self._planner.hop(plan, record, target)
            except ResolverError as exc:
                last, all_permanent = (
                    Reply(451, "4.4.4", f"DNS lookup for {target.host} failed: {exc}"),
                    False,
                )
                continue
            for ip in ips:
                outcome = await self._attempt(hop, ip, record, recipients, data, tls=True)
                if outcome.retry_in_clear:
                    outcome = await self._attempt(hop, ip, record, recipients, data, tls=False)
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

    # -- one address ---------------------------------------------------------------------------

    async def _attempt(
        self,
        hop: Hop,
        ip: str,
        record: MessageRecord,
        recipients: Sequence[RecipientRecord],
        data: bytes,
        *,
        tls: bool,
    ) -> HostOutcome:
        target, policy = hop.target, hop.policy
        where = f"{target.host}[{ip}]:{target.port}"
        # A session secured for a weaker policy must never carry mail that needs a stronger one.
        key: PoolKey = (target.host, ip, target.port, tls, policy.level)
        pooled = self._pool.take(key)
        if pooled is not None:
            smtp, sent, detail = pooled
            try:
                outcome = await transaction(smtp, where, record, recipients, data)
            except (aiosmtplib.SMTPException, OSError):
                # The next hop closed the idle connection: open a fresh one below.
                await close_session(smtp)
            else:
                await self._release(key, smtp, sent + 1, outcome, detail)
                return _with_detail(outcome, detail)
        smtp = aiosmtplib.SMTP(
            hostname=ip,
            port=target.port,
            local_hostname=self._helo,
            source_address=self._source,
            timeout=self._connector.command_timeout,
            start_tls=False,
            validate_certs=False,
        )
        try:
            await smtp.connect(timeout=self._connector.connect_timeout)
        except aiosmtplib.SMTPResponseException as exc:
            # A 4xx or 5xx greeting: this host will not talk; the next one may.
            await close_session(smtp)
            return HostOutcome(reply=remote_reply(exc.code, exc.message, where), permanent=exc.code >= 500)
        except (aiosmtplib.SMTPException, OSError) as exc:
            await close_session(smtp)
            return HostOutcome(reply=Reply(451, "4.4.1", f"Connection to {where} failed: {exc}"))
        outcome = HostOutcome()
        detail = ""
        try:
            secured = await self._secure(smtp, hop, where, tls=tls)
            if secured is None:
                outcome = HostOutcome(retry_in_clear=True)
                return outcome
            detail = secured
            if self._connector.auth_username:
                await self._login(smtp)
            outcome = await transaction(smtp, where, record, recipients, data)
            return _with_detail(outcome, detail)
        except _TlsRequired as exc:
            return HostOutcome(reply=Reply(451, exc.enhanced, f"{where}: {exc}"))
        except aiosmtplib.SMTPResponseException as exc:
            return HostOutcome(reply=remote_reply(exc.code, exc.message, where), permanent=exc.code >= 500)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return HostOutcome(reply=Reply(451, "4.4.2", f"Connection to {where} lost: {exc}"))
        finally:
            await self._release(key, smtp, 1, outcome, detail)

    async def _secure(self, smtp: aiosmtplib.SMTP, hop: Hop, where: str, *, tls: bool) -> str | None:
        """EHLO and STARTTLS as the hop's policy demands: how the session is secured, for tracking,
        or None when an opportunistic handshake failed and the host should be tried in clear."""
        target, policy, tlsa = hop.target, hop.policy, hop.tlsa
        await _hello(smtp, self._helo)
        if policy.level == "none" or not tls:
            return "no TLS"
        why = f" ({policy.source})" if policy.source != "connector" else ""
        if not smtp.supports_extension("starttls"):
            if policy.mandatory:
                raise _TlsRequired(f"TLS is required{why} but the host does not offer STARTTLS")
            return "no TLS (not offered)" + hop.sts_report("no STARTTLS")
        try:
            await smtp.starttls(server_hostname=target.host, tls_context=self._context(policy.level))
        except aiosmtplib.SMTPResponseException as exc:
            # STARTTLS refused: the session is still usable in clear (RFC 3207 §4).
            if policy.mandatory:
                raise _TlsRequired(f"STARTTLS refused{why}: {exc.code} {exc.message}") from None
            return "no TLS (STARTTLS refused)"
        except ssl.SSLCertVerificationError as exc:
            raise _TlsRequired(f"certificate not accepted{why}: {exc.verify_message}", "4.7.5") from None
        except (ssl.SSLError, aiosmtplib.SMTPException, OSError) as exc:
            if policy.mandatory:
                raise _TlsRequired(f"TLS handshake failed{why}: {exc}") from None
            log.info("TLS handshake with %s failed (%s); retrying in clear", where, exc)
            return None
        ssl_object = smtp.get_transport_info("ssl_object")
        info = describe(ssl_object)
        how = {"verify": "CA-valid", "verify_hostname": "CA-valid, name matched", "dane": "DANE"}
        authenticated = how.get(policy.level, "not verified")
        if policy.level == "dane" and tlsa is not None:
            # RFC 7672 §3.2.2: the MX host name, and the next-hop domain, are reference identifiers.
            names = [target.host, *([hop.domain] if hop.domain else [])]
            reason = dane.verify(tlsa.records, dane.peer_chain(ssl_object), names)
            if reason is not None:
                raise _TlsRequired(f"DANE authentication failed: {reason}", "4.7.5")
        report = ""
        if hop.sts_testing and policy.level not in ("verify_hostname", "dane"):
            problem = peercert.pkix_problem(dane.peer_chain(ssl_object), target.host, self._ca_file)
            report = hop.sts_report(problem)
        # RFC 3207 §4.2: forget what was learnt before TLS and ask again.
        await _hello(smtp, self._helo)
        peer = f", peer {info.peer_subject}" if info.peer_subject else ""
        return f"{info.version} {info.cipher}{peer}, {authenticated}{why}{report}"

    async def _login(self, smtp: aiosmtplib.SMTP) -> None:
        """Smart-host AUTH, only inside TLS: a password never crosses the wire in clear."""
        if smtp.get_transport_info("sslcontext") is None:
            raise _TlsRequired("refusing to send AUTH without TLS")
        try:
            await smtp.login(self._connector.auth_username, self._password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Wrong credentials are an administrator's fix, not a reason to bounce the mail.
            raise _TlsRequired(f"smart host refused AUTH: {exc.code} {exc.message}", "4.7.8") from None

    async def _release(
        self, key: PoolKey, smtp: aiosmtplib.SMTP, sent: int, outcome: HostOutcome, detail: str
    ) -> None:
        """Keep a healthy connection for the next message to the same host, or close it."""
        if not (outcome.reusable and smtp.is_connected and self._pool.give(key, smtp, sent, detail)):
            await quit_session(smtp)

    async def close(self) -> None:
        """Close the idle connections (at shutdown)."""
        for smtp in self._pool.drain():
            await quit_session(smtp)


def _with_detail(outcome: HostOutcome, detail: str) -> HostOutcome:
    if outcome.results is not None and detail:
        outcome.results = {
            a: Delivered(r.reply, detail) if isinstance(r, Delivered) else r
            for a, r in outcome.results.items()
        }
    return outcome


async def _hello(smtp: aiosmtplib.SMTP, name: str) -> None:
    try:
        await smtp.ehlo(hostname=name)
    except aiosmtplib.SMTPHeloError as exc:
        if exc.code >= 500 and smtp.is_connected:
            # RFC 5321 §3.2: a server that does not know EHLO gets HELO.
            await smtp.helo(hostname=name)
        else:
            raise
