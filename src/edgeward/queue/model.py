"""The records of the queue: message and recipient metadata, their JSON form, and queue ids.

This module owns the vocabulary the spool and the queue manager share: ``QueueState`` (whose
values are the spool's folder names), ``RecipientStatus``, the frozen ``RecipientRecord`` and
``MessageRecord``, the versioned JSON codec, and ``IdGenerator``.

On disk a record is one JSON object with a format version ``v``. Readers ignore fields they do
not know, so a spool written by a newer version stays readable; a record missing a required
field is corrupt. The state is never stored: the folder a record lives in is its state.

Security: ids become file names, so :func:`valid_id` is checked before any id from outside
(the CLI, the web UI) touches the file system; it admits no path separator and no dot.
"""

from __future__ import annotations

import enum
import json
import os
import re
import threading
from dataclasses import dataclass
from typing import Any

from edgeward.ports import Clock

FORMAT_VERSION = 1

# Crockford's base32 alphabet is in ASCII order, so ids sort by the time they were made.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


class RecipientStatus(enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    FAILED = "failed"


class QueueState(enum.Enum):
    """Where a message is; the value is the spool folder that holds its metadata."""

    INCOMING = "incoming"
    ACTIVE = "active"
    DEFERRED = "deferred"
    HOLD = "hold"
    CORRUPT = "corrupt"


@dataclass(frozen=True, slots=True)
class RecipientRecord:
    address: str
    status: RecipientStatus = RecipientStatus.PENDING
    attempts: int = 0
    last_reply: str = ""
    # DSN NOTIFY values from RCPT (RFC 3461 §4.1); () means none given, i.e. the default.
    notify: tuple[str, ...] = ()
    orcpt: str | None = None

    @property
    def done(self) -> bool:
        return self.status in (RecipientStatus.DELIVERED, RecipientStatus.FAILED)


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """The metadata of one queued message."""

    id: str
    mail_from: str
    recipients: tuple[RecipientRecord, ...]
    received_at: float
    size: int
    client_ip: str = ""
    client_helo: str = ""
    connector: str = ""
    message_id: str = ""
    envid: str | None = None
    ret: str | None = None
    attempts: int = 0
    first_attempt_at: float | None = None
    next_attempt_at: float = 0.0
    delay_notified: bool = False
    crash_count: int = 0
    hold_reason: str = ""
    # RFC 8689: REQUIRETLS was given at MAIL FROM (every hop must be authenticated TLS), or the
    # message carries "TLS-Required: No" (the sender prefers delivery over recipient TLS policy).
    require_tls: bool = False
    tls_optional: bool = False
    state: QueueState = QueueState.INCOMING

    @property
    def last_reply(self) -> str:
        """The most recent non-empty reply among the recipients (for the queue viewer)."""
        for rcpt in reversed(self.recipients):
            if rcpt.last_reply:
                return rcpt.last_reply
        return ""


def valid_id(msg_id: str) -> bool:
    """True if ``msg_id`` may be used as a file name inside the spool."""
    return bool(_ID.match(msg_id))


def record_to_dict(record: MessageRecord) -> dict[str, Any]:
    """The JSON-ready form of a record, without its state (the folder says that)."""
    return {
        "v": FORMAT_VERSION,
        "id": record.id,
        "mail_from": record.mail_from,
        "recipients": [
            {
                "address": r.address,
                "status": r.status.value,
                "attempts": r.attempts,
                "last_reply": r.last_reply,
                "notify": list(r.notify),
                "orcpt": r.orcpt,
            }
            for r in record.recipients
        ],
        "received_at": record.received_at,
        "size": record.size,
        "client_ip": record.client_ip,
        "client_helo": record.client_helo,
        "connector": record.connector,
        "message_id": record.message_id,
        "envid": record.envid,
        "ret": record.ret,
        "attempts": record.attempts,
        "first_attempt_at": record.first_attempt_at,
        "next_attempt_at": record.next_attempt_at,
        "delay_notified": record.delay_notified,
        "crash_count": record.crash_count,
        "hold_reason": record.hold_reason,
        "require_tls": record.require_tls,
        "tls_optional": record.tls_optional,
    }


def encode_record(record: MessageRecord) -> bytes:
    return json.dumps(record_to_dict(record), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _opt_str(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("expected a string or null")
    return value


def _recipient(raw: Any) -> RecipientRecord:
    if not isinstance(raw, dict) or not isinstance(raw.get("address"), str):
        raise ValueError("recipient without an address")
    return RecipientRecord(
        address=raw["address"],
        status=RecipientStatus(raw.get("status", "pending")),
        attempts=int(raw.get("attempts", 0)),
        last_reply=str(raw.get("last_reply", "")),
        notify=tuple(str(n) for n in raw.get("notify", ())),
        orcpt=_opt_str(raw.get("orcpt")),
    )


def decode_record(raw: bytes, state: QueueState) -> MessageRecord:
    """Parse a record; raises ``ValueError`` if it is not a usable record of any version."""
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("v"), int):
        raise ValueError("not a queue record")
    try:
        first = obj.get("first_attempt_at")
        record = MessageRecord(
            id=str(obj["id"]),
            mail_from=str(obj["mail_from"]),
            recipients=tuple(_recipient(r) for r in obj["recipients"]),
            received_at=float(obj["received_at"]),
            size=int(obj["size"]),
            client_ip=str(obj.get("client_ip", "")),
            client_helo=str(obj.get("client_helo", "")),
            connector=str(obj.get("connector", "")),
            message_id=str(obj.get("message_id", "")),
            envid=_opt_str(obj.get("envid")),
            ret=_opt_str(obj.get("ret")),
            attempts=int(obj.get("attempts", 0)),
            first_attempt_at=None if first is None else float(first),
            next_attempt_at=float(obj.get("next_attempt_at", 0.0)),
            delay_notified=bool(obj.get("delay_notified", False)),
            crash_count=int(obj.get("crash_count", 0)),
            hold_reason=str(obj.get("hold_reason", "")),
            require_tls=bool(obj.get("require_tls", False)),
            tls_optional=bool(obj.get("tls_optional", False)),
            state=state,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad field: {exc}") from None
    if not valid_id(record.id):
        raise ValueError("bad id")
    return record


class IdGenerator:
    """Queue ids: 10 characters of milliseconds since the epoch, then 8 random characters.

    Both parts are Crockford base32, so ids sort by time and are safe file names. Within one
    millisecond the random part counts up, so ids made by one process are strictly increasing
    (the ULID scheme with a shorter random part). Uniqueness across processes rests on the 40
    random bits, and the spool creates files with ``O_EXCL`` so a collision fails loudly.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def __call__(self) -> str:
        with self._lock:
            ms = max(int(self._clock.now() * 1000), 0)
            if ms <= self._last_ms:
                ms = self._last_ms
                rand = self._last_rand + 1
                if rand >= 1 << 40:
                    ms, rand = ms + 1, int.from_bytes(os.urandom(5), "big") >> 1
            else:
                # Keep the top bit clear so the counter has room to grow within a millisecond.
                rand = int.from_bytes(os.urandom(5), "big") >> 1
            self._last_ms, self._last_rand = ms, rand
        return _b32(ms, 10) + _b32(rand, 8)


def _b32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))
