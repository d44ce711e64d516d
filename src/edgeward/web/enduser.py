"""End users: console accounts of role ``user`` that reach only their own quarantined mail.

An end-user account has addresses (table ``addresses`` in ``web.db``; ``edgeward web user add
NAME --role user --address a@b``). A :class:`Scope` is what one request may see: everything
for the ``admin`` and ``readonly`` roles, or only the entries of which one of the account's
addresses is a recipient. Through a scope:

- a search lists only such entries (filtered before paging, so totals tell nothing either);
- an entry that is not one's own is answered exactly as one that does not exist (404, never
  403), so guessing ids tells nothing;
- an end user sees only its own addresses among an entry's recipients (the envelope may hold
  Bcc recipients: who else got the message is not theirs to know);
- a release goes only to one's own addresses among the entry's recipients, never to the
  others of the same message (they stay held); a request naming any other address is refused
  as a whole;
- deleting, the queue, tracking, configuration and the audit log are not for end users: what
  they may reach is an allow-list (:func:`end_user_may`), checked where every page gets its
  session and every API call its token, so a page added later is closed to them by default.

API tokens of role ``user`` belong to an account (table ``token_accounts``) and have its scope.
End users log in with console accounts only, not with their SMTP AUTH credentials: a mailbox
password is phished far more often than a console one, and TOTP and the console's throttle
would not stand in front of it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgeward.auth.users import UserError
from edgeward.quarantine.entry import QuarantineEntry
from edgeward.quarantine.service import Page, QuarantineService, Search, Shown

if TYPE_CHECKING:  # auth builds on this module
    from edgeward.web.auth import Session

__all__ = ["EndUsers", "Scope", "check_address", "end_user_may", "landing"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS addresses (name TEXT NOT NULL, address TEXT NOT NULL, PRIMARY KEY (name, address));
CREATE TABLE IF NOT EXISTS token_accounts (token TEXT PRIMARY KEY, name TEXT NOT NULL);
"""


_END_USER_PATHS = ("/logout", "/quarantine", "/api/v1/quarantine")


def end_user_may(path: str) -> bool:
    """Whether an end user's session or token may reach ``path`` at all (their quarantine and
    logging out; ``/`` sends them to their quarantine, whatever it shows administrators); the
    scope then narrows what they see."""
    return path in _END_USER_PATHS or path.startswith(("/quarantine/", "/api/v1/quarantine/"))


def landing(session: Session) -> str:
    """Where ``/`` and a finished login lead: the dashboard, or an end user's own quarantine."""
    return "/quarantine" if session.is_user else "/dashboard"


def check_address(address: str) -> str:
    """The address, lowercased; :class:`UserError` for one that is none."""
    value = address.strip().lower()
    local, at, domain = value.rpartition("@")
    if not (at and local and domain and len(value) <= 320 and value.isprintable()) or " " in value:
        raise UserError(f"not an email address: {address!r}")
    return value


class EndUsers:
    """The end users' addresses and token owners, in the accounts database at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def add_addresses(self, name: str, addresses: Sequence[str]) -> None:
        checked = [check_address(a) for a in addresses]
        with self._db() as db:
            db.executemany("INSERT OR IGNORE INTO addresses VALUES (?, ?)", [(name, a) for a in checked])

    def remove_address(self, name: str, address: str) -> None:
        with self._db() as db:
            done = db.execute("DELETE FROM addresses WHERE name = ? AND address = ?",
                              (name, address.strip().lower()))  # fmt: skip
            if done.rowcount == 0:
                raise UserError(f"{address!r} is not an address of {name!r}")

    def forget(self, name: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM addresses WHERE name = ?", (name,))
            db.execute("DELETE FROM token_accounts WHERE name = ?", (name,))

    def addresses(self, name: str) -> tuple[str, ...]:
        with self._db() as db:
            rows = db.execute("SELECT address FROM addresses WHERE name = ? ORDER BY address", (name,))
            return tuple(a for (a,) in rows)

    def bind_token(self, token: str, name: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO token_accounts VALUES (?, ?)", (token, name))

    def unbind_token(self, token: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM token_accounts WHERE token = ?", (token,))

    def token_account(self, token: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT name FROM token_accounts WHERE token = ?", (token,)).fetchone()
        return str(row[0]) if row else None

    def scope(self, role: str, name: str | None) -> Scope:
        """What a session or token of ``role`` may see (an end user without addresses: nothing)."""
        if role != "user":
            return Scope(None)
        return Scope(frozenset(self.addresses(name)) if name else frozenset())


@dataclass(frozen=True, slots=True)
class Scope:
    """``addresses`` None: every entry; else the entries one of them receives."""

    addresses: frozenset[str] | None

    @property
    def limited(self) -> bool:
        return self.addresses is not None

    def own(self, entry: QuarantineEntry) -> tuple[str, ...]:
        """The entry's recipients this scope may release to (all of them when unlimited)."""
        if self.addresses is None:
            return entry.recipients
        return tuple(r for r in entry.recipients if r.lower() in self.addresses)

    def sees(self, entry: QuarantineEntry) -> bool:
        return bool(self.own(entry))

    def narrow(self, entry: QuarantineEntry) -> QuarantineEntry:
        """The entry as this scope shows it: its own recipients only."""
        return entry if self.addresses is None else replace(entry, recipients=self.own(entry))

    def search(self, service: QuarantineService, query: Search) -> Page:
        if self.addresses is None:
            return service.search(query)
        # The criteria are matched against the entry as this scope shows it: a search for
        # another recipient must not tell whether they got the message too.
        everything = service.search(Search(limit=1 << 62)).entries
        mine = [n for n in (self.narrow(e) for e in everything if self.sees(e)) if query.matches(n)]
        offset, limit = max(query.offset, 0), max(query.limit, 0)
        return Page(tuple(mine[offset : offset + limit]), len(mine), offset)

    def entry(self, service: QuarantineService, qid: str) -> QuarantineEntry:
        """The entry, or ``KeyError`` exactly as for a missing one when it is not in scope."""
        entry = service.entry(qid)
        if not self.sees(entry):
            raise KeyError(qid)
        return self.narrow(entry)

    def show(self, service: QuarantineService, qid: str) -> Shown:
        self.entry(service, qid)  # checked before the message is read and parsed
        shown = service.show(qid)
        return replace(shown, entry=self.narrow(shown.entry))

    def release_to(self, entry: QuarantineEntry, wanted: Sequence[str] | None) -> list[str] | None:
        """The recipients to release to (None: all, unlimited scope only); ``ValueError`` when
        ``wanted`` names an address this scope may not release to."""
        if self.addresses is None:
            return list(wanted) if wanted is not None else None
        own = self.own(entry)  # entry may be narrowed already: own() of it is the same
        if wanted is None:
            return list(own)
        allowed = {r.lower() for r in own}
        if not wanted or any(w.lower() not in allowed for w in wanted):
            raise ValueError("you may release only to your own addresses among the recipients")
        return list(wanted)
