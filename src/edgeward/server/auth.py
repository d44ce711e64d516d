"""The AUTH command of one session: SASL exchange, password check, throttling (RFC 4954).

The session hands every ``Auth`` and ``AuthResponse`` event here and sends back the reply of
the ``AuthStep`` it gets; the step also says whether to wait first (tarpit), whether to close,
and, on success, who the client now is.

Security:
- AUTH is refused before TLS (``530 5.7.0``) unless the connector says otherwise;
- a source that failed ``max_logon_failures`` times is locked out for ``auth_lockout`` (the
  failure that reaches the limit closes the connection); an account that failed
  ``max_account_logon_failures`` times, from any sources, is locked as long, and every attempt
  on it meanwhile is answered exactly as a wrong password (``auth.throttle``); every failure is
  answered after ``auth_tarpit_interval``;
- a failure of the user store answers ``454 4.7.0``, never success;
- credentials are never logged: only the outcome and the account name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edgeward.auth.sasl import (
    AUTH_SUCCEEDED,
    AUTH_TEMPFAIL,
    Challenge,
    Credentials,
    Failure,
    SaslServer,
)
from edgeward.auth.throttle import AUTH_LOCKED_OUT, Throttle
from edgeward.auth.users import UserStore
from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.smtp import events as ev
from edgeward.types import Reply

log = logging.getLogger("edgeward.auth")

NOT_OFFERED = Reply(503, "5.5.1", "Authentication not enabled")
# RFC 4954 would allow 538 5.7.11; 530 5.7.0 is what Postfix and Exchange answer, and what
# clients that probe AUTH before STARTTLS understand as "start TLS first".
TLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first")


@dataclass(frozen=True, slots=True)
class AuthStep:
    reply: Reply
    identity: str = ""  # set once the client authenticated
    tarpit: float = 0.0
    disconnect: bool = False


class AuthExchange:
    """AUTH for one session: at most one successful exchange."""

    def __init__(
        self, connector: ReceiveConnectorConfig, users: UserStore | None, throttle: Throttle, peer_ip: str
    ) -> None:
        self.connector = connector
        self.users = users
        self.throttle = throttle
        self.peer_ip = peer_ip
        self._sasl: SaslServer | None = None

    def offered(self, tls_active: bool) -> bool:
        return bool(self.connector.auth_mechanisms) and (tls_active or self.connector.auth_without_tls)

    async def begin(self, event: ev.Auth, tls_active: bool) -> AuthStep:
        if not self.connector.auth_mechanisms or self.users is None:
            return AuthStep(NOT_OFFERED)
        if not tls_active and not self.connector.auth_without_tls:
            return AuthStep(TLS_FIRST)
        if self.throttle.blocked(self.peer_ip):
            return AuthStep(AUTH_LOCKED_OUT, tarpit=self.connector.auth_tarpit_interval)
        self._sasl = SaslServer(self.connector.auth_mechanisms)
        return await self._next(self._sasl.start(event.mechanism, event.initial))

    async def respond(self, event: ev.AuthResponse) -> AuthStep:
        if self._sasl is None:  # the core only sends responses after a 334
            return AuthStep(NOT_OFFERED)
        return await self._next(self._sasl.step(event.line))

    async def _next(self, step: Challenge | Credentials | Failure) -> AuthStep:
        if isinstance(step, Challenge):
            return AuthStep(Reply(334, None, step.text_base64))
        self._sasl = None
        if isinstance(step, Failure):
            return AuthStep(step.reply)
        assert self.users is not None
        account = step.authcid
        try:
            # Verified even for a locked account, so a lockout costs the same time as a wrong
            # password and cannot be told apart from one.
            ok = await self.users.verify(account, step.password)
        except Exception:
            log.exception("user store failed during AUTH from %s", self.peer_ip)
            return AuthStep(AUTH_TEMPFAIL)
        locked = self.throttle.account_blocked(account)
        if ok and not locked:
            self.throttle.succeeded(self.peer_ip, account)
            log.info("AUTH succeeded for %s from %s", account, self.peer_ip)
            return AuthStep(AUTH_SUCCEEDED, identity=account)
        verdict = self.throttle.failed(self.peer_ip, account)
        log.warning(
            "AUTH failed from %s (%d failures from that address%s)",
            self.peer_ip, verdict.failures, "; account locked" if locked else "",
        )  # fmt: skip
        return AuthStep(verdict.reply, tarpit=verdict.tarpit, disconnect=verdict.disconnect)
