"""The server side of one SMTP AUTH exchange (RFC 4954) for PLAIN (RFC 4616) and LOGIN, sans-IO.

This module owns :class:`SaslServer`, which turns the ``AUTH`` command and the client's
continuation lines into :data:`SaslStep` values, and the AUTH replies the session sends. It does
no I/O and no verification: when the exchange yields :class:`Credentials` the session asks
:class:`edgeward.auth.users.UserStore` and answers :data:`AUTH_SUCCEEDED` or
:data:`AUTH_INVALID` itself (and :data:`ENCRYPTION_REQUIRED` when AUTH comes before TLS).

A typical exchange::

    sasl = SaslServer()
    step = sasl.start("PLAIN", None)        # Challenge("")       -> "334 "
    step = sasl.step("AGFsaWNlAHNlY3JldA==") # Credentials("", "alice", "secret")

Security: every input is bounded (12288 octets per line, RFC 4954 §4) and decoded with strict
base64 (no white space, no stray characters, correct padding). An authorization identity other
than the authentication identity is refused: Edgeward has no proxy authorization, so the identity
a session acts as is always ``authcid``. :class:`Credentials` keeps the password out of its repr
so it cannot reach a log by accident.
"""

from __future__ import annotations

import binascii
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from edgeward.auth.users import InvalidUsernameError, username_key
from edgeward.types import Reply

__all__ = [
    "AUTH_ALREADY_DONE",
    "AUTH_CANCELLED",
    "AUTH_INVALID",
    "AUTH_SUCCEEDED",
    "AUTH_TEMPFAIL",
    "BAD_BASE64",
    "ENCRYPTION_REQUIRED",
    "LINE_TOO_LONG",
    "MALFORMED_RESPONSE",
    "MAX_LINE",
    "SUPPORTED_MECHANISMS",
    "UNKNOWN_MECHANISM",
    "Challenge",
    "Credentials",
    "Failure",
    "SaslServer",
    "SaslStep",
]

# RFC 4954 §4: a server must accept, and may refuse anything beyond, 12288 octets per line.
MAX_LINE = 12288
SUPPORTED_MECHANISMS: tuple[str, ...] = ("PLAIN", "LOGIN")

# Replies, with the codes and texts of RFC 4954 §4 and §6.
AUTH_SUCCEEDED = Reply(235, "2.7.0", "Authentication successful")
AUTH_INVALID = Reply(535, "5.7.8", "Authentication credentials invalid")
ENCRYPTION_REQUIRED = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
AUTH_TEMPFAIL = Reply(454, "4.7.0", "Temporary authentication failure")
BAD_BASE64 = Reply(501, "5.5.2", "Cannot Base64-decode client response")
MALFORMED_RESPONSE = Reply(501, "5.5.2", "Malformed authentication response")
AUTH_CANCELLED = Reply(501, "5.7.0", "Authentication cancelled")
UNKNOWN_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type")
LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication Exchange line is too long")
# RFC 4954 §4: AUTH after a successful AUTH is refused with 503.
AUTH_ALREADY_DONE = Reply(503, "5.5.1", "Already authenticated")

# The LOGIN prompts every client expects: base64 of "Username:" and "Password:".
_LOGIN_USERNAME = "VXNlcm5hbWU6"
_LOGIN_PASSWORD = "UGFzc3dvcmQ6"  # noqa: S105 (a prompt, not a secret)


@dataclass(frozen=True, slots=True)
class Challenge:
    """The session sends ``334 <text_base64>`` and passes the client's next line to ``step``."""

    text_base64: str

    def line(self) -> str:
        # "334 " keeps its space even when the challenge is empty (RFC 4954 §4, the PLAIN
        # example): some clients wait for exactly that.
        return f"334 {self.text_base64}"

    def to_bytes(self) -> bytes:
        return (self.line() + "\r\n").encode("ascii")


@dataclass(frozen=True, slots=True)
class Credentials:
    """The exchange is complete; the session verifies ``authcid`` / ``password``."""

    authzid: str
    authcid: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Failure:
    """The exchange failed; the session sends ``reply`` and AUTH is over."""

    reply: Reply


SaslStep = Challenge | Credentials | Failure


class _State(enum.Enum):
    NEW = "new"
    PLAIN_RESPONSE = "plain-response"
    LOGIN_USERNAME = "login-username"
    LOGIN_PASSWORD = "login-password"  # noqa: S105 (a state name)
    DONE = "done"


class SaslServer:
    """One AUTH exchange: :meth:`start` once, then :meth:`step` while it yields a Challenge.

    ``mechanisms`` are those the connector offers (a subset of :data:`SUPPORTED_MECHANISMS`);
    others get :data:`UNKNOWN_MECHANISM`. Calling ``start`` twice, or ``step`` when no challenge
    is pending, is a programming error (``RuntimeError``).
    """

    def __init__(self, mechanisms: Iterable[str] = SUPPORTED_MECHANISMS, *, max_line: int = MAX_LINE) -> None:
        offered = tuple(m.upper() for m in mechanisms)
        unknown = set(offered) - set(SUPPORTED_MECHANISMS)
        if unknown:
            raise ValueError(f"unsupported SASL mechanism(s): {', '.join(sorted(unknown))}")
        self.mechanisms = offered
        self.mechanism: str | None = None
        self._max_line = max_line
        self._state = _State.NEW
        self._username: str | None = None

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    def start(self, mechanism: str, initial: str | None) -> SaslStep:
        """Begin with ``AUTH <mechanism> [initial]``; ``initial`` is the raw base64 text or ``=``.

        An empty ``initial`` counts as absent; ``=`` is an empty initial response (RFC 4954 §4).
        """
        if self._state is not _State.NEW:
            raise RuntimeError("this SASL exchange has already started")
        name = mechanism.upper()
        if name not in self.mechanisms:
            return self._fail(UNKNOWN_MECHANISM)
        self.mechanism = name
        data: bytes | None = None
        if initial:
            if len(initial) > self._max_line:
                return self._fail(LINE_TOO_LONG)
            decoded = b"" if initial == "=" else _decode(initial)
            if decoded is None:
                return self._fail(BAD_BASE64)
            data = decoded
        if name == "PLAIN":
            if data is None:
                return self._challenge(_State.PLAIN_RESPONSE, "")
            return self._plain(data)
        # LOGIN has no initial response in its specification, but clients commonly send the
        # user name with the command ("AUTH LOGIN <user>"); accept it as the first answer.
        if data is None:
            return self._challenge(_State.LOGIN_USERNAME, _LOGIN_USERNAME)
        return self._login_username(data)

    def step(self, line: str) -> SaslStep:
        """The client's answer to the last challenge, without its CRLF."""
        if self._state in (_State.NEW, _State.DONE):
            raise RuntimeError("no SASL challenge is pending")
        if len(line) > self._max_line:
            return self._fail(LINE_TOO_LONG)
        if line == "*":
            # RFC 4954 §4: "*" cancels; the server must answer 501.
            return self._fail(AUTH_CANCELLED)
        data = _decode(line)
        if data is None:
            return self._fail(BAD_BASE64)
        if self._state is _State.PLAIN_RESPONSE:
            return self._plain(data)
        if self._state is _State.LOGIN_USERNAME:
            return self._login_username(data)
        return self._login_password(data)

    # -- mechanisms --------------------------------------------------------------------------

    def _plain(self, data: bytes) -> SaslStep:
        # RFC 4616 §2: message = [authzid] NUL authcid NUL passwd, each UTF-8 without NUL;
        # authcid and passwd are not empty.
        parts = data.split(b"\x00")
        if len(parts) != 3:
            return self._fail(MALFORMED_RESPONSE)
        fields = [_utf8(part) for part in parts]
        authzid, authcid, password = fields
        if authzid is None or not authcid or not password:
            return self._fail(MALFORMED_RESPONSE)
        if authzid and not _same_identity(authzid, authcid):
            return self._fail(AUTH_INVALID)
        return self._finish(Credentials(authzid, authcid, password))

    def _login_username(self, data: bytes) -> SaslStep:
        username = _utf8(data)
        if not username or "\x00" in username:
            return self._fail(MALFORMED_RESPONSE)
        self._username = username
        return self._challenge(_State.LOGIN_PASSWORD, _LOGIN_PASSWORD)

    def _login_password(self, data: bytes) -> SaslStep:
        password = _utf8(data)
        username = self._username
        self._username = None
        if not password or "\x00" in password or username is None:
            return self._fail(MALFORMED_RESPONSE)
        return self._finish(Credentials("", username, password))

    # -- state -------------------------------------------------------------------------------

    def _challenge(self, state: _State, text: str) -> Challenge:
        self._state = state
        return Challenge(text)

    def _fail(self, reply: Reply) -> Failure:
        self._state = _State.DONE
        self._username = None
        return Failure(reply)

    def _finish(self, credentials: Credentials) -> Credentials:
        self._state = _State.DONE
        return credentials


def _decode(text: str) -> bytes | None:
    """Strict base64 (RFC 4648 §4, no white space or stray characters), or None."""
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error):
        return None


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _same_identity(authzid: str, authcid: str) -> bool:
    """Whether the two names the same account, compared as ``UserStore`` compares names."""
    if authzid == authcid:
        return True
    try:
        return username_key(authzid) == username_key(authcid)
    except InvalidUsernameError:
        return False
