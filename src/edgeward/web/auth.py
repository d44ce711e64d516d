"""Console accounts, API tokens, sessions and login throttling, in ``<state>/web.db`` (SQLite).

Two roles: ``admin`` may change things (release, delete), ``readonly`` may only look. The
console's accounts are apart from the SMTP users (``auth.users``): a mailbox password never
opens the console. Passwords are hashed like the SMTP users' (argon2id, ``default_hasher``,
same name and password rules), and a login for an unknown name costs one argon2id check all
the same, so timing tells no names.

Sessions are server-side: the cookie holds 32 random bytes, the database their SHA-256 (a
copy of the database opens no session), the account, the role, the CSRF token every POST form
must echo, and the expiry. A session is not extended by use; logout deletes it. API tokens are
the same idea for scripts: ``ew_`` and 32 random bytes, shown once at creation, stored hashed.

Throttling counts failed logins per account and per source address over
``[web] login_window``: at ``login_max_failures`` that account or address is refused, without
checking the password, until the oldest failure leaves the window. A success clears the
account's count (not the address's: one right guess among many wrong ones stays counted).

Run as root, the database is handed to the owner of the state folder, as the rest of the
state is.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import hmac
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from argon2.exceptions import InvalidHashError, VerificationError

from edgeward.auth.users import UserError, default_hasher, prepare_password, username_key
from edgeward.config.ownership import hand_over, make_private_dirs, service_owner
from edgeward.errors import EdgewardError

__all__ = ["DB_NAME", "ROLES", "Account", "ApiToken", "LoginRefused", "Role", "Session", "WebAccounts"]

DB_NAME = "web.db"
Role = Literal["admin", "readonly"]
ROLES: tuple[Role, ...] = ("admin", "readonly")
TOKEN_PREFIX = "ew_"  # noqa: S105  (a marker, not a secret)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (name TEXT PRIMARY KEY, role TEXT NOT NULL, digest TEXT UNIQUE NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (digest TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
    csrf TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS failures (key TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS failures_key ON failures (key, at);
"""


class WebAuthError(UserError):
    """A bad name, role or password given to an administrative call (CLI exit code 2)."""


class LoginRefused(EdgewardError):
    def __init__(self, reason: Literal["throttled", "bad-credentials"]) -> None:
        super().__init__("too many failed logins: try again later" if reason == "throttled" else
                         "wrong name or password")  # fmt: skip
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    role: Role
    created: float


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    role: Role
    created: float


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    role: Role
    csrf: str
    expires: float

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def _role(value: str) -> Role:
    if value not in ROLES:
        raise WebAuthError(f"role must be one of {', '.join(ROLES)}, not {value!r}")
    return "admin" if value == "admin" else "readonly"


class WebAccounts:
    def __init__(
        self,
        state_dir: Path,
        *,
        max_failures: int = 5,
        window: float = 900.0,
        session_lifetime: float = 8 * 3600.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        make_private_dirs(state_dir, owner=service_owner(state_dir.parent))
        self.path = state_dir / DB_NAME
        self._hasher = default_hasher()
        self._dummy = self._hasher.hash(b"edgeward web: no such account")
        self._max_failures = max_failures
        self._window = window
        self._lifetime = session_lifetime
        self._now = now
        with self._db() as db:
            db.executescript(_SCHEMA)
        hand_over(self.path)

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
        finally:
            db.close()

    # -- accounts (the CLI) -----------------------------------------------------------------

    def add(self, name: str, password: str, role: str) -> Account:
        key, checked = username_key(name), _role(role)
        digest = self._hasher.hash(prepare_password(password))
        created = self._now()
        with self._db() as db:
            try:
                db.execute("INSERT INTO accounts VALUES (?, ?, ?, ?)", (key, checked, digest, created))
            except sqlite3.IntegrityError:
                raise WebAuthError(f"a console account named {key!r} exists already") from None
        return Account(key, checked, created)

    def remove(self, name: str) -> None:
        key = username_key(name)
        with self._db() as db:
            if db.execute("DELETE FROM accounts WHERE name = ?", (key,)).rowcount == 0:
                raise WebAuthError(f"no console account named {key!r}")
            db.execute("DELETE FROM sessions WHERE name = ?", (key,))  # logged out at once

    def list(self) -> builtins.list[Account]:
        with self._db() as db:
            rows = db.execute("SELECT name, role, created FROM accounts ORDER BY name").fetchall()
        return [Account(n, _role(r), c) for n, r, c in rows]

    def add_token(self, name: str, role: str) -> str:
        """A new API token named ``name``; the secret is returned here and never again."""
        checked = _role(role)
        if not (0 < len(name) <= 64 and name.isprintable() and not name.isspace()):
            raise WebAuthError(f"not a token name: {name!r}")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._db() as db:
            try:
                db.execute(
                    "INSERT INTO tokens VALUES (?, ?, ?, ?)", (name, checked, _digest(secret), self._now())
                )
            except sqlite3.IntegrityError:
                raise WebAuthError(f"an API token named {name!r} exists already") from None
        return secret

    def remove_token(self, name: str) -> None:
        with self._db() as db:
            if db.execute("DELETE FROM tokens WHERE name = ?", (name,)).rowcount == 0:
                raise WebAuthError(f"no API token named {name!r}")

    def tokens(self) -> builtins.list[ApiToken]:
        with self._db() as db:
            rows = db.execute("SELECT name, role, created FROM tokens ORDER BY name").fetchall()
        return [ApiToken(n, _role(r), c) for n, r, c in rows]

    def token_role(self, secret: str) -> ApiToken | None:
        """The token a Bearer secret is, or None."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT name, role, created FROM tokens WHERE digest = ?", (_digest(secret),)
            ).fetchone()
        return ApiToken(row[0], _role(row[1]), row[2]) if row else None

    # -- login, sessions -------------------------------------------------------------------

    def login(self, name: str, password: str, source: str) -> tuple[str, Session]:
        """``(cookie value, session)`` for a right password; :class:`LoginRefused` otherwise."""
        now = self._now()
        try:
            key = username_key(name)
        except UserError:
            key = ""
        keys = (f"account:{key}", f"source:{source}")
        with self._db() as db:
            db.execute("DELETE FROM failures WHERE at < ?", (now - self._window,))
            for k in keys:
                (count,) = db.execute("SELECT COUNT(*) FROM failures WHERE key = ?", (k,)).fetchone()
                if count >= self._max_failures:
                    raise LoginRefused("throttled")
            row = (
                db.execute("SELECT role, hash FROM accounts WHERE name = ?", (key,)).fetchone()
                if key
                else None
            )
        if not self._check(row[1] if row else self._dummy, password) or row is None:
            with self._db() as db:
                db.executemany("INSERT INTO failures VALUES (?, ?)", [(k, now) for k in keys])
            raise LoginRefused("bad-credentials")
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        session = Session(key, _role(row[0]), csrf, now + self._lifetime)
        with self._db() as db:
            db.execute("DELETE FROM failures WHERE key = ?", (keys[0],))
            db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                       (_digest(cookie), key, session.role, csrf, session.expires))  # fmt: skip
        return cookie, session

    def _check(self, stored: str, password: str) -> bool:
        try:
            secret = prepare_password(password)
        except UserError:
            secret = b"\x00unusable"
        try:
            return bool(self._hasher.verify(stored, secret))
        except (VerificationError, InvalidHashError):
            return False

    def session(self, cookie: str) -> Session | None:
        """The live session a cookie opens, or None."""
        if not cookie or len(cookie) > 200:
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT name, role, csrf, expires FROM sessions WHERE digest = ?", (_digest(cookie),)
            ).fetchone()
        if row is None or row[3] <= self._now():
            return None
        return Session(row[0], _role(row[1]), row[2], row[3])

    def logout(self, cookie: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE digest = ?", (_digest(cookie),))


def csrf_ok(session: Session, sent: str) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf.encode(), sent.encode("utf-8", "replace"))
