"""TOTP second factor for console accounts (RFC 6238 over RFC 4226 HOTP), and the half-done
logins that wait for a code.

The algorithm is the standard library's (HMAC-SHA1, 30-second steps, 6 digits: what every
authenticator app speaks); twenty lines do not justify a dependency. A code is accepted for the
current step and one step either side (clock drift), and only for a step later than the last
one accepted for that account, so a code seen over a shoulder or in a proxy log cannot be
replayed, not even within its own window.

Secrets live in the accounts database (``web.db``, 0600, owned by the service user), table
``totp``: 20 random bytes as base32, shown once by ``edgeward web user totp enable`` as an
``otpauth://`` URI. They are not encrypted: a key to do so would sit next to them.

A password that was right for an account with TOTP opens no session: it makes a *pending*
login (32 random bytes in a cookie, their SHA-256 in the table ``pending``, five minutes, used
once) that only the code form accepts. Wrong codes count as failed logins for the throttle.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
import struct
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode

__all__ = ["DIGITS", "STEP", "TotpStore", "hotp", "otpauth_uri", "totp_at", "verify_step"]

STEP = 30
DIGITS = 6
DRIFT = 1  # steps either side of now
PENDING_LIFETIME = 300.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS totp (name TEXT PRIMARY KEY, secret TEXT NOT NULL, last_step INTEGER NOT NULL,
    enabled REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pending (digest TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
    expires REAL NOT NULL);
"""


def hotp(key: bytes, counter: int, digits: int = DIGITS, digest: str = "sha1") -> str:
    """RFC 4226: the ``digits``-digit code for ``counter`` (dynamic truncation of the HMAC)."""
    mac = hmac.new(key, struct.pack(">Q", counter), digest).digest()
    offset = mac[-1] & 0x0F
    (value,) = struct.unpack(">I", mac[offset : offset + 4])
    return str((value & 0x7FFFFFFF) % 10**digits).zfill(digits)


def totp_at(key: bytes, when: float, digits: int = DIGITS, digest: str = "sha1") -> str:
    """RFC 6238: the code at epoch second ``when``."""
    return hotp(key, int(when // STEP), digits, digest)


def verify_step(key: bytes, code: str, when: float, after: int) -> int | None:
    """The step ``code`` is right for (now, or one step either side) and later than ``after``;
    None when there is none. Compared in constant time per step."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    now = int(when // STEP)
    found = None
    for step in range(now - DRIFT, now + DRIFT + 1):
        if hmac.compare_digest(hotp(key, step).encode(), code.encode()) and step > after:
            found = step
    return found


def _key(secret: str) -> bytes:
    return base64.b32decode(secret + "=" * (-len(secret) % 8))


def otpauth_uri(secret: str, account: str, issuer: str) -> str:
    label = quote(f"{issuer}:{account}", safe="")
    query = urlencode({"secret": secret, "issuer": issuer, "algorithm": "SHA1", "digits": DIGITS,
                       "period": STEP})  # fmt: skip
    return f"otpauth://totp/{label}?{query}"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


class TotpStore:
    """The ``totp`` and ``pending`` tables of the accounts database at ``path``."""

    def __init__(self, path: Path, *, now: Callable[[], float] = time.time) -> None:
        self.path = path
        self._now = now
        with self._db() as db:
            db.executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10, isolation_level=None)

    def enable(self, name: str) -> str:
        """A new secret for ``name`` (replacing any), returned in base32 here and never again."""
        secret = base64.b32encode(secrets.token_bytes(20)).decode("ascii").rstrip("=")
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO totp VALUES (?, ?, ?, ?)", (name, secret, -1, self._now()))
        return secret

    def disable(self, name: str) -> bool:
        with self._db() as db:
            return db.execute("DELETE FROM totp WHERE name = ?", (name,)).rowcount > 0

    def enrolled(self, name: str) -> bool:
        with self._db() as db:
            return db.execute("SELECT 1 FROM totp WHERE name = ?", (name,)).fetchone() is not None

    def names(self) -> set[str]:
        with self._db() as db:
            return {n for (n,) in db.execute("SELECT name FROM totp")}

    def check(self, name: str, code: str) -> bool:
        """Whether ``code`` is right for ``name`` now and unused; a right one is used up."""
        with self._db() as db:
            row = db.execute("SELECT secret, last_step FROM totp WHERE name = ?", (name,)).fetchone()
            if row is None:
                return False
            step = verify_step(_key(row[0]), code, self._now(), row[1])
            if step is None:
                return False
            # Conditional on the step read above: two logins racing with one code cannot both pass.
            done = db.execute("UPDATE totp SET last_step = ? WHERE name = ? AND last_step = ?",
                              (step, name, row[1]))  # fmt: skip
            return done.rowcount == 1

    # -- pending logins ------------------------------------------------------------------------

    def start(self, name: str, role: str) -> str:
        """A pending login for ``name``: the cookie value the code form must come back with."""
        cookie = secrets.token_urlsafe(32)
        now = self._now()
        with self._db() as db:
            db.execute("DELETE FROM pending WHERE expires < ? OR name = ?", (now, name))
            db.execute("INSERT INTO pending VALUES (?, ?, ?, ?)",
                       (_digest(cookie), name, role, now + PENDING_LIFETIME))  # fmt: skip
        return cookie

    def pending(self, cookie: str) -> tuple[str, str] | None:
        """``(name, role)`` of a live pending login, or None."""
        if not cookie or len(cookie) > 200:
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT name, role, expires FROM pending WHERE digest = ?", (_digest(cookie),)
            ).fetchone()
        return (row[0], row[1]) if row and row[2] > self._now() else None

    def finish(self, cookie: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM pending WHERE digest = ?", (_digest(cookie),))
