"""The sender addresses of each AUTH account, and which of them a login may use as MAIL FROM.

This module owns the ``user_addresses`` table of the state database and the rule the
``sender-login`` agent applies, as Postfix's ``reject_sender_login_mismatch`` does with
``smtpd_sender_login_maps``. A client authenticated as an account may use as sender:

- the login name itself, when that name is an address (``alice@ours.test`` may send as
  ``alice@ours.test`` with nothing configured);
- every address added to the account (``edgeward user add NAME --address A``,
  ``edgeward user address add NAME A``);
- any address in a domain added as ``@domain`` (an application or scanner that sends for a
  whole domain).

Nothing else: an account named ``alice`` with no addresses may not send until one is added,
and the null sender is refused unless the connector allows it (``auth_null_sender``), since a
bounce from a user's mailbox client is almost always a forgery. Addresses compare
case-insensitively on the whole address (domains by RFC 5321 §2.4; local parts as Postfix's
lookup tables and nearly every mailbox store treat them).

Security: addresses are parsed with the same grammar as ``MAIL FROM`` (``smtp.address``), so
what the operator adds is what a client can name; rows go with their account (``ON DELETE
CASCADE``), so a new account with an old name inherits nothing.
"""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Iterable

from edgeward.auth.users import UnknownUserError, UserError, username_key
from edgeward.errors import ProtocolError
from edgeward.smtp import replies as r
from edgeward.smtp.address import parse_domain, parse_path
from edgeward.state.sqlite import StateStore
from edgeward.types import Address

__all__ = ["AccountAddresses", "InvalidAddressError", "login_addresses", "may_send_as", "normalize_address"]


class InvalidAddressError(UserError, ValueError):
    """Not an address (``local@domain``) nor a domain entry (``@domain``)."""


def normalize_address(text: str) -> str:
    """``local@domain`` or ``@domain``, lower-cased, or :class:`InvalidAddressError`."""
    text = text.strip()
    try:
        if text.startswith("@"):
            return "@" + parse_domain(text[1:], True, r.BAD_SENDER_SYNTAX).lower()
        path = parse_path(text, utf8=True, sender=False)
    except ProtocolError:
        raise InvalidAddressError(f"not an address or @domain: {text!r}") from None
    if not path.address.domain or path.source_route:
        raise InvalidAddressError(f"not an address or @domain: {text!r}")
    return str(path.address).lower()


def login_addresses(login: str) -> frozenset[str]:
    """What a login may use with nothing configured: the login name, if it is an address."""
    try:
        address = normalize_address(login)
    except InvalidAddressError:
        return frozenset()
    return frozenset() if address.startswith("@") else frozenset({address})


def may_send_as(login: str, sender: Address, owned: Iterable[str]) -> bool:
    """Whether the account ``login``, owning ``owned``, may use ``sender`` (not the null sender)."""
    if sender.is_null or not sender.domain:
        return False
    allowed = login_addresses(login).union(owned)
    return str(sender).lower() in allowed or f"@{sender.domain.lower()}" in allowed


class AccountAddresses:
    """The ``user_addresses`` rows of ``state`` (which must be connected)."""

    def __init__(self, state: StateStore) -> None:
        self._state = state

    def add(self, name: str, address: str) -> str:
        """Let account ``name`` send as ``address``; returns the stored form. Adding twice is a no-op."""
        key = username_key(name)
        value = normalize_address(address)

        def insert(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (key,)).fetchone() is None:
                raise UnknownUserError(f"no user {key!r}")
            conn.execute("INSERT OR IGNORE INTO user_addresses (name, address) VALUES (?, ?)", (key, value))

        self._state.run(insert, write=True)
        return value

    def remove(self, name: str, address: str) -> None:
        key = username_key(name)
        value = normalize_address(address)
        count = self._state.run(
            lambda c: (
                c.execute("DELETE FROM user_addresses WHERE name = ? AND address = ?", (key, value)).rowcount
            ),
            write=True,
        )
        if count == 0:
            raise UserError(f"user {key!r} has no address {value!r}")

    def list(self, name: str) -> builtins.list[str]:
        """The addresses added to ``name`` (not the login name itself), sorted."""
        key = username_key(name)
        rows = self._state.run(
            lambda c: c.execute(
                "SELECT address FROM user_addresses WHERE name = ? ORDER BY address", (key,)
            ).fetchall()
        )
        return [str(row[0]) for row in rows]

    async def owned(self, login: str) -> frozenset[str]:
        """The added addresses of ``login``, read in a worker thread (the agent's hot path)."""
        try:
            key = username_key(login)
        except UserError:
            return frozenset()
        rows = await self._state.call(
            lambda c: c.execute("SELECT address FROM user_addresses WHERE name = ?", (key,)).fetchall()
        )
        return frozenset(str(row[0]) for row in rows)
