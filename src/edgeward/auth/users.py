"""User accounts for SMTP AUTH: names, password hashes and the one ``verify`` the session calls.

This module owns :class:`UserStore`, the ``users`` table of the state database
(:mod:`edgeward.state.sqlite`), and the rules for usernames and passwords:

* Usernames are NFKC-normalised and compared case-insensitively (Unicode ``casefold``); the
  folded form is the key stored in ``users.name``, so ``Alice`` and ``ALICE`` are one account and
  ``user list`` shows ``alice``. Empty names, names over 256 characters, control, format,
  separator and unassigned code points, and leading or trailing white space are refused.
* Passwords get a small subset of SASLprep (RFC 4013): non-ASCII spaces become U+0020,
  "commonly mapped to nothing" characters (RFC 3454 B.1) are removed, then NFKC; NUL is refused
  (it is the RFC 4616 field separator) and the UTF-8 form is limited to 1024 bytes.
* Hashes are argon2id (RFC 9106) with ``t=2, m=19 MiB, p=1``, the OWASP Password Storage
  baseline: about 15-40 ms per verification on current servers, cheap enough for a gateway yet
  costly for offline guessing. ``p=1`` because verifications already run in parallel on worker
  threads, and at most ``max_concurrent_verifies`` run at once, which also bounds memory
  (4 x 19 MiB by default). A hash made with other parameters is replaced after the next
  successful login.

Security: :meth:`UserStore.verify` has no username oracle. An unknown, disabled or malformed
user name, or an unusable password, is checked against a dummy hash made with the current
parameters, through the same ``_check`` call as a real account, so every failure costs one
argon2id verification. (An account still hashed with older parameters costs what those
parameters cost until its next successful login rehashes it.) Neither hashes nor passwords are
logged or returned by :meth:`list`.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import secrets
import sqlite3
import unicodedata
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from edgeward.errors import EdgewardError
from edgeward.ports import Clock, SystemClock
from edgeward.state.sqlite import StateStore

__all__ = [
    "DEFAULT_MEMORY_COST",
    "DEFAULT_PARALLELISM",
    "DEFAULT_TIME_COST",
    "MAX_PASSWORD_BYTES",
    "MAX_USERNAME_CHARS",
    "InvalidPasswordError",
    "InvalidUsernameError",
    "UnknownUserError",
    "UserError",
    "UserExistsError",
    "UserInfo",
    "UserStore",
    "default_hasher",
    "normalize_username",
    "prepare_password",
    "username_key",
]

log = logging.getLogger(__name__)

MAX_USERNAME_CHARS = 256
MAX_PASSWORD_BYTES = 1024
DEFAULT_TIME_COST = 2
DEFAULT_MEMORY_COST = 19 * 1024  # KiB
DEFAULT_PARALLELISM = 1

# Unicode categories refused in user names: controls, format characters (bidi overrides and
# zero-width characters make look-alike names), surrogates, private use, unassigned, and line
# or paragraph separators.
_BAD_NAME_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# RFC 3454 table B.1, "commonly mapped to nothing", as SASLprep (RFC 4013 §2.2) removes them.
_B1 = (0x00AD, 0x034F, 0x1806, 0x180B, 0x180C, 0x180D, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF)
_MAPPED_TO_NOTHING = dict.fromkeys([*_B1, *range(0xFE00, 0xFE10)])


class UserError(EdgewardError):
    """An account operation was refused; the message is fit for an administrator."""


class InvalidUsernameError(UserError, ValueError):
    """The user name breaks the naming rules."""


class InvalidPasswordError(UserError, ValueError):
    """The password is empty, too long or holds NUL."""


class UserExistsError(UserError):
    """An account with this name (compared case-insensitively) exists."""


class UnknownUserError(UserError):
    """No account has this name."""


@dataclass(frozen=True, slots=True)
class UserInfo:
    """What may be shown about an account: never its hash."""

    name: str
    disabled: bool
    created: float
    updated: float


def default_hasher() -> PasswordHasher:
    """argon2id with the parameters justified in the module docstring."""
    return PasswordHasher(
        time_cost=DEFAULT_TIME_COST,
        memory_cost=DEFAULT_MEMORY_COST,
        parallelism=DEFAULT_PARALLELISM,
        hash_len=32,
        salt_len=16,
        type=Type.ID,
    )


def normalize_username(name: str) -> str:
    """``name`` in NFKC form, or :class:`InvalidUsernameError` naming the broken rule."""
    normal = unicodedata.normalize("NFKC", name)
    if not normal:
        raise InvalidUsernameError("the user name is empty")
    if len(normal) > MAX_USERNAME_CHARS:
        raise InvalidUsernameError(f"the user name is longer than {MAX_USERNAME_CHARS} characters")
    if normal != normal.strip():
        raise InvalidUsernameError("the user name starts or ends with white space")
    for char in normal:
        if unicodedata.category(char) in _BAD_NAME_CATEGORIES:
            raise InvalidUsernameError(f"the user name holds the character U+{ord(char):04X}")
    return normal


def username_key(name: str) -> str:
    """The form names are stored and compared in: NFKC, case-folded, NFKC again.

    Folding can leave a string that is no longer NFKC (Unicode's NFKC_Casefold runs both), so
    the second normalisation keeps equal names equal.
    """
    key = unicodedata.normalize("NFKC", normalize_username(name).casefold())
    if len(key) > MAX_USERNAME_CHARS:
        raise InvalidUsernameError(f"the user name is longer than {MAX_USERNAME_CHARS} characters")
    return key


def prepare_password(password: str | bytes) -> bytes:
    """The UTF-8 bytes that are hashed: SASLprep-lite (module docstring), or InvalidPasswordError."""
    if isinstance(password, bytes):
        try:
            password = password.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidPasswordError("the password is not UTF-8") from None
    mapped = "".join(
        " " if (char != " " and unicodedata.category(char) == "Zs") else char for char in password
    ).translate(_MAPPED_TO_NOTHING)
    prepared = unicodedata.normalize("NFKC", mapped)
    if not prepared:
        raise InvalidPasswordError("the password is empty")
    if "\x00" in prepared:
        raise InvalidPasswordError("the password holds a NUL character")
    data = prepared.encode("utf-8")
    if len(data) > MAX_PASSWORD_BYTES:
        raise InvalidPasswordError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    return data


class UserStore:
    """The accounts in ``state``'s ``users`` table. ``state`` must be connected.

    The administrative methods are synchronous (the CLI calls them); :meth:`verify` is the hot
    path and runs its database read and argon2id check in a worker thread.
    """

    def __init__(
        self,
        state: StateStore,
        *,
        hasher: PasswordHasher | None = None,
        clock: Clock | None = None,
        max_concurrent_verifies: int = 4,
    ) -> None:
        if max_concurrent_verifies < 1:
            raise ValueError("max_concurrent_verifies must be at least 1")
        self.state = state
        self._hasher = hasher or default_hasher()
        self._clock = clock or SystemClock()
        self._slots = asyncio.Semaphore(max_concurrent_verifies)
        self._dummy: str | None = None

    # -- administration ----------------------------------------------------------------------

    def add(self, name: str, password: str | bytes) -> UserInfo:
        key = username_key(name)
        digest = self._hasher.hash(prepare_password(password))
        now = self._clock.now()

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO users (name, hash, disabled, created, updated) VALUES (?, ?, 0, ?, ?)",
                    (key, digest, now, now),
                )
            except sqlite3.IntegrityError:
                raise UserExistsError(f"user {key!r} exists") from None

        self.state.run(insert, write=True)
        return UserInfo(key, False, now, now)

    def remove(self, name: str) -> None:
        key = username_key(name)
        self._change(key, "DELETE FROM users WHERE name = ?", (key,))

    def set_password(self, name: str, password: str | bytes) -> None:
        key = username_key(name)
        digest = self._hasher.hash(prepare_password(password))
        self._change(
            key, "UPDATE users SET hash = ?, updated = ? WHERE name = ?", (digest, self._clock.now(), key)
        )

    def disable(self, name: str) -> None:
        self._set_disabled(name, True)

    def enable(self, name: str) -> None:
        self._set_disabled(name, False)

    def get(self, name: str) -> UserInfo | None:
        key = username_key(name)
        row = self.state.run(
            lambda c: c.execute(
                "SELECT name, disabled, created, updated FROM users WHERE name = ?", (key,)
            ).fetchone()
        )
        return None if row is None else UserInfo(str(row[0]), bool(row[1]), float(row[2]), float(row[3]))

    def list(self) -> builtins.list[UserInfo]:
        rows = self.state.run(
            lambda c: c.execute("SELECT name, disabled, created, updated FROM users ORDER BY name").fetchall()
        )
        return [UserInfo(str(r[0]), bool(r[1]), float(r[2]), float(r[3])) for r in rows]

    # -- the hot path ------------------------------------------------------------------------

    async def verify(self, name: str, password: str | bytes) -> bool:
        """True only for an enabled account whose password matches; never raises on bad input.

        Database errors (:class:`edgeward.state.StateStoreError`) propagate: the session
        answers them with a temporary failure, never with success.
        """
        async with self._slots:
            return await asyncio.to_thread(self._verify_blocking, name, password)

    def _verify_blocking(self, name: str, password: str | bytes) -> bool:
        # Made (once) before anything else, so the first call after start costs the same
        # whether or not the account exists.
        dummy = self._dummy_hash()
        try:
            key: str | None = username_key(name)
        except InvalidUsernameError:
            key = None
        try:
            secret: bytes | None = prepare_password(password)
        except InvalidPasswordError:
            secret = None
        row = None
        if key is not None:
            row = self.state.run(
                lambda c: c.execute("SELECT hash, disabled FROM users WHERE name = ?", (key,)).fetchone()
            )
        real = row is not None and not row[1] and secret is not None
        stored = str(row[0]) if real and row is not None else dummy
        # One _check per call whatever the input: the cost of a failure does not depend on why.
        matched = self._check(stored, secret if secret is not None else b"\x00")
        if not (real and matched) or key is None or secret is None:
            return False
        if self._hasher.check_needs_rehash(stored):
            self._rehash(key, stored, secret)
        return True

    def _check(self, stored: str, secret: bytes) -> bool:
        try:
            return self._hasher.verify(stored, secret)
        except VerificationError:
            return False
        except InvalidHashError:
            log.warning("a stored password hash is not a valid argon2 hash")
            return False

    def _dummy_hash(self) -> str:
        # A hash of a random secret nobody knows, with the current parameters, made once.
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_bytes(32))
        return self._dummy

    def _rehash(self, key: str, old: str, secret: bytes) -> None:
        new = self._hasher.hash(secret)
        # Only replace the hash we verified: a password changed meanwhile must win.
        self.state.run(
            lambda c: c.execute(
                "UPDATE users SET hash = ?, updated = ? WHERE name = ? AND hash = ?",
                (new, self._clock.now(), key, old),
            ),
            write=True,
        )

    # -- helpers -----------------------------------------------------------------------------

    def _set_disabled(self, name: str, disabled: bool) -> None:
        key = username_key(name)
        self._change(
            key,
            "UPDATE users SET disabled = ?, updated = ? WHERE name = ?",
            (int(disabled), self._clock.now(), key),
        )

    def _change(self, key: str, sql: str, params: tuple[object, ...]) -> None:
        count = self.state.run(lambda c: c.execute(sql, params).rowcount, write=True)
        if count == 0:
            raise UnknownUserError(f"no user {key!r}")
