"""Sender login match at MAIL: an authenticated client sends only as its own account's addresses.

The ``users`` group carries ``send_as_accepted``, so without this check any account could use
any address (the CEO's, another customer's, ``<>``) and, bypassing anti-spam, have it relayed.
As Postfix's ``reject_sender_login_mismatch``, a client authenticated as an account gets
``553 5.7.1`` for a sender the account does not own (``auth.addresses`` says which it owns).
553 is RFC 5321's "mailbox name not allowed" and 5.7.1 RFC 3463's "delivery not authorized";
Postfix answers the same.

A connector relaxes it with ``sender_login_match = false`` (a trusted application relay that
sends for many addresses); ``auth_null_sender = true`` allows the null sender from
authenticated clients. Unauthenticated sessions are not this agent's business
(``sender-authority`` guards accepted domains for them).

Security: a failure to read the account's addresses raises, so the pipeline answers
``451 4.3.0``: never an unchecked sender.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from edgeward.auth.addresses import may_send_as
from edgeward.filters.base import Stage, StageContext
from edgeward.types import Finding, Outcome, Reply

__all__ = ["SenderLogin"]

NULL_SENDER_REFUSED = Reply(553, "5.7.1", "Null sender not allowed for authenticated clients")


def not_owned(login: str) -> Reply:
    return Reply(553, "5.7.1", f"Sender address rejected: not owned by user {login}")


class SenderLogin:
    """Refuse, from an authenticated client, a sender its account does not own."""

    name = "sender-login"
    stages = frozenset({Stage.MAIL})
    antispam = False
    fail_open = False

    def __init__(self, owned: Callable[[str], Awaitable[frozenset[str]]]) -> None:
        self._owned = owned

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        login = ctx.session.authenticated
        connector = ctx.session.connector
        sender = ctx.mail_from
        if not login or sender is None or not connector.sender_login_match:
            return Outcome.proceed()
        if sender.is_null:
            if connector.auth_null_sender:
                return Outcome.proceed()
            return Outcome.reject(NULL_SENDER_REFUSED, Finding("SENDER_LOGIN_NULL", self.name, login))
        if may_send_as(login, sender, await self._owned(login)):
            return Outcome.proceed()
        return Outcome.reject(
            not_owned(login), Finding("SENDER_LOGIN_MISMATCH", self.name, f"{login} as {sender}")
        )
