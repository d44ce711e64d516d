"""Release links for digests: HMAC-signed tokens that expire and work once.

A token is ``<payload>.<mac>``, both base64url: the payload is the JSON of the entry id, the
recipient it releases to, the expiry (epoch seconds) and a random nonce; the mac is
HMAC-SHA256 of the payload under the key in ``<state>/quarantine-release.key`` (32 random
bytes, created 0600 for the service user at first use). Nothing in a token is secret, but
nothing in it can be changed: a recipient cannot turn a link for their copy into a link for
someone else's.

:meth:`ReleaseTokens.verify` is what a web front calls (:meth:`~ReleaseTokens.peek` runs the
same checks without using the link up, for the page that asks to confirm). It checks, in
order, the form, the signature (in constant time), the expiry, that the link was not used,
that the entry still holds that recipient, and then records the nonce in ``<state>/quarantine-release.db``
(SQLite): the insert is the last check, so two clicks racing each other cannot both pass.
Each failure is a :class:`TokenError` whose ``reason`` a front can map to a page
(``malformed``, ``bad-signature``, ``expired``, ``used``, ``unknown-entry``).
Used nonces are forgotten a day after their link expired.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from edgeward.config.ownership import hand_over, make_private_dirs, service_owner
from edgeward.errors import EdgewardError
from edgeward.quarantine.crypto import load_key
from edgeward.quarantine.store import QuarantineError, QuarantineStore

__all__ = ["KEY_NAME", "ReleaseTokens", "TokenError"]

KEY_NAME = "quarantine-release.key"
DB_NAME = "quarantine-release.db"
_MAX_TOKEN = 2048


class TokenError(EdgewardError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ReleaseTokens:
    def __init__(
        self, state_dir: Path, store: QuarantineStore, *, now: Callable[[], float] = time.time
    ) -> None:
        owner = service_owner(state_dir.parent)
        make_private_dirs(state_dir, owner=owner)
        self._key = load_key(state_dir / KEY_NAME)
        self._db_path = state_dir / DB_NAME
        self.store = store
        self._now = now
        with contextlib.closing(self._db()) as db:
            db.execute("CREATE TABLE IF NOT EXISTS used (nonce TEXT PRIMARY KEY, used_at REAL, expires REAL)")
        hand_over(self._db_path)

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self._db_path, timeout=10, isolation_level=None)

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self, qid: str, recipient: str, lifetime: float) -> str:
        """A token releasing entry ``qid`` to ``recipient``, valid for ``lifetime`` seconds."""
        body = {"q": qid, "r": recipient, "e": int(self._now() + lifetime), "n": secrets.token_hex(12)}
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def peek(self, token: str) -> tuple[str, str]:
        """``(qid, recipient)`` of a good token, left unused: what a link's page shows before
        the recipient confirms. ``TokenError`` exactly as :meth:`verify`."""
        return self._check(token, use=False)

    def verify(self, token: str) -> tuple[str, str]:
        """``(qid, recipient)`` of a good token, which is used up by this call."""
        return self._check(token, use=True)

    def _check(self, token: str, *, use: bool) -> tuple[str, str]:
        if len(token) > _MAX_TOKEN or token.count(".") != 1:
            raise TokenError("malformed", "the release link is not one of ours")
        payload, mac = token.split(".")
        if not hmac.compare_digest(mac.encode("ascii", "replace"), self._mac(payload).encode("ascii")):
            raise TokenError("bad-signature", "the release link has been altered")
        try:
            body = json.loads(_unb64(payload))
            qid, rcpt, expires, nonce = str(body["q"]), str(body["r"]), int(body["e"]), str(body["n"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise TokenError("malformed", "the release link is not one of ours") from None
        now = self._now()
        if now >= expires:
            raise TokenError("expired", "the release link has expired")
        with contextlib.closing(self._db()) as db:
            db.execute("DELETE FROM used WHERE expires < ?", (now - 86400,))
            if db.execute("SELECT 1 FROM used WHERE nonce = ?", (nonce,)).fetchone():
                raise TokenError("used", "the release link has already been used")
            try:
                entry = self.store.entry(qid)
            except (KeyError, QuarantineError):
                raise TokenError("unknown-entry", "the message is no longer in quarantine") from None
            if rcpt.lower() not in (r.lower() for r in entry.recipients):
                raise TokenError("unknown-entry", "the message is no longer held for this recipient")
            if not use:
                return qid, rcpt
            try:
                db.execute("INSERT INTO used VALUES (?, ?, ?)", (nonce, now, expires))
            except sqlite3.IntegrityError:  # a second click that raced this one
                raise TokenError("used", "the release link has already been used") from None
        return qid, rcpt
