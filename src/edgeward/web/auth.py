"""Console accounts, API tokens, sessions and login throttling, in ``<state>/web.db`` (SQLite).

Three roles: ``admin`` may change things (release, delete), ``readonly`` may only look, and
``user`` reaches only the quarantined mail of its own addresses (``web.enduser``). The
console's accounts are apart from the SMTP users (``auth.users``): a mailbox password never
opens the console. Passwords are hashed like the SMTP users' (argon2id, ``default_hasher``,
same name and password rules), and a login for an unknown name costs one argon2id check all
the same, so timing tells no names.

Sessions are server-side: the cookie holds 32 random bytes, the database their SHA-256 (a
copy of the database opens no session), the account, the role, the CSRF token every POST form
must echo, and the expiry. A session is not extended by use; logout deletes it. API tokens are
the same idea for scripts: ``ew_`` and 32 random bytes, shown once at creation, stored hashed.

An account with TOTP enrolled (``web.totp``) logs in in two steps: a right password makes a
pending login, not a session; the code opens the session. ``require_totp`` refuses
administrators without TOTP. Wrong codes are failed logins like wrong passwords.

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
from edgeward.web.enduser import EndUsers
from edgeward.web.totp import TotpStore

__all__ = [
    "DB_NAME", "ROLES", "Account", "ApiToken", "LoginRefused", "LoginStep", "Role", "Session", "WebAccounts",
]  # fmt: skip

DB_NAME = "web.db"
Role = Literal["admin", "readonly", "user"]
ROLES: tuple[Role, ...] = ("admin", "readonly", "user")
Refusal = Literal["throttled", "bad-credentials", "bad-code", "totp-required"]
_REFUSALS: dict[str, str] = {
    "throttled": "too many failed logins: try again later",
    "bad-credentials": "wrong name or password",
    "bad-code": "wrong or already used code",
    "totp-required": "administrators must use a TOTP code here: ask for 'edgeward web user totp enable'",
}
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
    def __init__(self, reason: Refusal) -> None:
        super().__init__(_REFUSALS[reason])
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

    @property
    def is_user(self) -> bool:
        return self.role == "user"


@dataclass(frozen=True, slots=True)
class LoginStep:
    """What a right password gives: a session, or (TOTP enrolled) a pending login's cookie."""

    name: str
    cookie: str
    session: Session | None  # None: ``cookie`` is a pending login waiting for the code


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def _role(value: str) -> Role:
    if value not in ROLES:
        raise WebAuthError(f"role must be one of {', '.join(ROLES)}, not {value!r}")
    return "admin" if value == "admin" else "user" if value == "user" else "readonly"


class WebAccounts:
    def __init__(
        self,
        state_dir: Path,
        *,
        max_failures: int = 5,
        window: float = 900.0,
        session_lifetime: float = 8 * 3600.0,
        require_totp: bool = False,
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
        self._require_totp = require_totp
        self.path.touch(mode=0o600)  # private from the start: TOTP secrets go in it
        with self._db() as db:
            db.executescript(_SCHEMA)
        self.totp = TotpStore(self.path, now=now)
        self.endusers = EndUsers(self.path)
        self.path.chmod(0o600)  # a database made before TOTP existed
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
        self.totp.disable(key)
        self.endusers.forget(key)

    def get(self, name: str) -> Account | None:
        try:
            key = username_key(name)
        except UserError:
            return None
        with self._db() as db:
            row = db.execute("SELECT name, role, created FROM accounts WHERE name = ?", (key,)).fetchone()
        return Account(row[0], _role(row[1]), row[2]) if row else None

    def list(self) -> builtins.list[Account]:
        with self._db() as db:
            rows = db.execute("SELECT name, role, created FROM accounts ORDER BY name").fetchall()
        return [Account(n, _role(r), c) for n, r, c in rows]

    def add_token(self, name: str, role: str, account: str | None = None) -> str:
        """A new API token named ``name``; the secret is returned here and never again. A
        ``user`` token acts for the end-user ``account`` (its addresses, nothing more)."""
        checked = _role(role)
        owner = self.get(account) if account else None
        if checked == "user" and (owner is None or owner.role != "user"):
            raise WebAuthError("a token of role user needs --account naming an end-user account")
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
        if checked == "user" and owner is not None:
            self.endusers.bind_token(name, owner.name)
        return secret

    def remove_token(self, name: str) -> None:
        with self._db() as db:
            if db.execute("DELETE FROM tokens WHERE name = ?", (name,)).rowcount == 0:
                raise WebAuthError(f"no API token named {name!r}")
        self.endusers.unbind_token(name)

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
        """``(cookie value, session)`` for a right password of an account without TOTP;
        :class:`LoginRefused` otherwise (``bad-code`` for one that needs a code)."""
        step = self.begin_login(name, password, source)
        if step.session is None:
            self.totp.finish(step.cookie)
            raise LoginRefused("bad-code")
        return step.cookie, step.session

    def begin_login(self, name: str, password: str, source: str) -> LoginStep:
        """The first step: a session, or a pending login when the account has TOTP."""
        now = self._now()
        try:
            key = username_key(name)
        except UserError:
            key = ""
        keys = self._throttle(key, source)
        with self._db() as db:
            row = (
                db.execute("SELECT role, hash FROM accounts WHERE name = ?", (key,)).fetchone()
                if key
                else None
            )
        if not self._check(row[1] if row else self._dummy, password) or row is None:
            self._failed(keys, now)
            raise LoginRefused("bad-credentials")
        role = _role(row[0])
        if self.totp.enrolled(key):
            return LoginStep(key, self.totp.start(key, role), None)
        if role == "admin" and self._require_totp:
            raise LoginRefused("totp-required")
        return self._open(key, role, keys[0])

    def finish_login(self, pending: str, code: str, source: str) -> LoginStep:
        """The second step: the session for a pending login and a right, unused code."""
        found = self.totp.pending(pending)
        if found is None:
            raise LoginRefused("bad-credentials")
        key, role = found
        keys = self._throttle(key, source)
        if not self.totp.check(key, code):
            self._failed(keys, self._now())
            raise LoginRefused("bad-code")
        self.totp.finish(pending)
        return self._open(key, _role(role), keys[0])

    def _throttle(self, key: str, source: str) -> tuple[str, str]:
        keys = (f"account:{key}", f"source:{source}")
        with self._db() as db:
            db.execute("DELETE FROM failures WHERE at < ?", (self._now() - self._window,))
            for k in keys:
                (count,) = db.execute("SELECT COUNT(*) FROM failures WHERE key = ?", (k,)).fetchone()
                if count >= self._max_failures:
                    raise LoginRefused("throttled")
        return keys

    def _failed(self, keys: tuple[str, str], now: float) -> None:
        with self._db() as db:
            db.executemany("INSERT INTO failures VALUES (?, ?)", [(k, now) for k in keys])

    def _open(self, key: str, role: Role, account_key: str) -> LoginStep:
        now = self._now()
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        session = Session(key, role, csrf, now + self._lifetime)
        with self._db() as db:
            db.execute("DELETE FROM failures WHERE key = ?", (account_key,))
            db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                       (_digest(cookie), key, session.role, csrf, session.expires))  # fmt: skip
        return LoginStep(key, cookie, session)

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
