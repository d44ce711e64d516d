"""The delivery function the queue manager calls: one route, one message, some recipients.

This module owns the ``Deliver`` signature and :class:`Dispatcher`, which sends each route to
the transport its connector names: a drop folder, or SMTP (smart hosts or MX). One
:class:`~edgeward.delivery.client.SmtpClient` is kept per send connector, and one MTA-STS
policy fetcher for them all, whose cache lives in the state store so that it survives
restarts (RFC 8461 §5.1: a cached policy protects against an attacker who blocks the fetch).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from edgeward.config.schema import Config, SendConnectorConfig
from edgeward.delivery.client import SmtpClient
from edgeward.delivery.drop import DropFolder
from edgeward.delivery.mta_sts import MemoryStsCache, MtaSts, SqliteStsCache, StsCache
from edgeward.delivery.results import Deferred, RecipientResult
from edgeward.delivery.routing import Route
from edgeward.errors import EdgewardError
from edgeward.ports import Resolver
from edgeward.queue.model import MessageRecord, RecipientRecord
from edgeward.state.sqlite import DB_FILENAME, StateStore, StateStoreError
from edgeward.tls.store import CertificateStore
from edgeward.types import Reply

__all__ = ["Deliver", "Dispatcher"]

log = logging.getLogger(__name__)

Deliver = Callable[
    [Route, MessageRecord, Sequence[RecipientRecord], bytes], Awaitable[dict[str, RecipientResult]]
]


class Dispatcher:
    """Implements ``Deliver`` over the send connectors of ``config``."""

    def __init__(
        self, config: Config, resolver: Resolver | None, *, tls_context: ssl.SSLContext | None = None
    ) -> None:
        self._config = config
        self._resolver = resolver
        self._tls_context = tls_context
        self._smtp: dict[str, SmtpClient] = {}
        self._mta_sts: MtaSts | None = None
        self._state: StateStore | None = None

    async def __call__(
        self, route: Route, record: MessageRecord, recipients: Sequence[RecipientRecord], data: bytes
    ) -> dict[str, RecipientResult]:
        connector = route.connector
        if connector.drop_dir is not None:
            folder = DropFolder(self._config.resolve(connector.drop_dir), fsync=self._config.queue.fsync)
            return await folder.deliver(record, recipients, data)
        client = self._smtp.get(connector.name)
        if client is None:
            try:
                client = self._new_client(connector)
            except (OSError, EdgewardError) as exc:
                # A missing password file or unreadable CA file is the administrator's to fix:
                # the mail waits for it (and says why) instead of counting as a crash.
                log.error("send connector %s cannot be used: %s", connector.name, exc)
                reply = Reply(451, "4.3.5", f"Send connector {connector.name} is misconfigured: {exc}")
                return {r.address: Deferred(reply) for r in recipients}
            self._smtp[connector.name] = client
        return await client.deliver(route, record, recipients, data)

    def _new_client(self, connector: SendConnectorConfig) -> SmtpClient:
        return SmtpClient(
            connector,
            helo_name=self._config.server.hostname,
            resolver=self._resolver,
            tls_context=self._tls_context,
            client_cert=self._client_cert(connector) if connector.tls_client_certificate else None,
            password=self._password(connector),
            mta_sts=self._sts() if connector.mta_sts else None,
            ca_file=self._sts_ca_file(),
        )

    def _sts(self) -> MtaSts | None:
        if self._mta_sts is None and self._resolver is not None:
            cache: StsCache
            try:
                if self._state is None:
                    state = StateStore(self._config.resolve(Path("state")) / DB_FILENAME)
                    state.connect()
                    self._state = state
                cache = SqliteStsCache(self._state)
            except (OSError, StateStoreError) as exc:
                # Policies are still enforced, only not remembered across restarts.
                log.warning("MTA-STS policy cache falls back to memory: %s", exc)
                cache = MemoryStsCache()
            cfg = self._config.mta_sts
            self._mta_sts = MtaSts(
                self._resolver,
                cache,
                https_port=cfg.https_port,
                ca_file=self._sts_ca_file(),
                timeout=cfg.fetch_timeout,
            )
        return self._mta_sts

    def _sts_ca_file(self) -> Path | None:
        ca_file = self._config.mta_sts.ca_file
        return self._config.resolve(ca_file) if ca_file is not None else None

    def _client_cert(self, connector: SendConnectorConfig) -> tuple[Path, Path]:
        """This gateway's certificate for the connector (its own binding, else the smtp default)."""
        store = CertificateStore(self._config.resolve(self._config.tls.store))
        return store.binding_for("smtp", connector.name)

    def _password(self, connector: SendConnectorConfig) -> str:
        if connector.auth_password_file is None:
            return ""
        return self._config.resolve(connector.auth_password_file).read_text("utf-8").strip()

    async def close(self) -> None:
        """Close every pooled connection (at shutdown)."""
        for client in self._smtp.values():
            await client.close()
        if self._state is not None:
            self._state.close()
            self._state = None
