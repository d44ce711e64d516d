"""Public keys of DKIM and ARC signers, fetched through the DnsLookup port before dkimpy runs.

dkimpy verifies synchronously and asks a ``dnsfunc`` for each key it needs. Left to itself it
would block the event loop on its own resolver, with no time limit we set and no way to tell a
time-out from a missing key. So every key a message needs (``<s>._domainkey.<d>`` TXT, RFC 6376
§3.6.2.1) is asked here first, concurrently and through :class:`edgeward.ports.DnsLookup`; the
``dnsfunc`` handed to dkimpy then only reads what was fetched and never does DNS itself.

Each lookup keeps its failure, so a check can say *temperror* (time-out, SERVFAIL: retry may
succeed) apart from *permerror* (no such key, no TXT record, an unusable record).

Security: selector and domain come from the message. They are checked to be host names before
any query, the number of distinct keys per message is bounded by the caller, and a key record
longer than :data:`MAX_KEY_RECORD` is refused rather than parsed.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeVar

import dkim

from edgeward.ports import DnsError, DnsFailure, DnsLookup

#: A 4096-bit RSA key is about 740 characters of base64; 4 KB leaves room for tags and notes.
MAX_KEY_RECORD = 4096

#: Messages up to this size are verified on the event loop (about 1 ms for 2 KB); larger ones
#: in a worker thread, since canonicalising a 10 MB body takes about 300 ms per signature.
INLINE_LIMIT = 256 * 1024

_T = TypeVar("_T")
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


async def offload(size: int, work: Callable[..., _T], *args: Any) -> _T:
    """Run dkimpy's synchronous ``work`` inline for a small message, in a thread for a large one,
    so one big message does not stall every other session of the process."""
    if size <= INLINE_LIMIT:
        return work(*args)
    return await asyncio.to_thread(work, *args)


class KeyStatus(enum.Enum):
    FOUND = "found"
    TEMPERROR = "temperror"  # time-out or server failure: the key may exist
    PERMERROR = "permerror"  # no such name, no TXT record, a bad name or an oversized record


@dataclass(frozen=True, slots=True)
class KeyLookup:
    """The outcome of asking for one key record: the TXT text, or why there is none."""

    name: str
    status: KeyStatus
    record: str = ""
    reason: str = ""


def key_name(selector: str, domain: str) -> str | None:
    """``<selector>._domainkey.<domain>`` in lower case, or None if either is not a host name."""
    name = f"{selector}._domainkey.{domain}".rstrip(".").lower()
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        return None
    return name


async def _fetch_one(dns: DnsLookup, name: str) -> KeyLookup:
    try:
        answer = await dns.query(name, "TXT")
    except DnsError as exc:
        if exc.failure in (DnsFailure.TIMEOUT, DnsFailure.SERVFAIL):
            return KeyLookup(name, KeyStatus.TEMPERROR, reason=f"key lookup failed: {exc}")
        return KeyLookup(name, KeyStatus.PERMERROR, reason=f"no key record: {exc}")
    if not answer.records:
        return KeyLookup(name, KeyStatus.PERMERROR, reason=f"{name}: no TXT record")
    # RFC 6376 §3.6.2.2 leaves several records undefined; like most verifiers, use the first.
    record = answer.records[0]
    if len(record) > MAX_KEY_RECORD:
        return KeyLookup(name, KeyStatus.PERMERROR, reason=f"{name}: key record over {MAX_KEY_RECORD} bytes")
    return KeyLookup(name, KeyStatus.FOUND, record=record)


async def fetch_keys(dns: DnsLookup, names: Iterable[str]) -> dict[str, KeyLookup]:
    """Ask for every distinct key name at once; the caller bounds how many there are."""
    unique = list(dict.fromkeys(names))
    results = await asyncio.gather(*(_fetch_one(dns, name) for name in unique))
    return dict(zip(unique, results, strict=True))


def dnsfunc(keys: Mapping[str, KeyLookup]) -> Callable[..., bytes | None]:
    """A dkimpy ``dnsfunc`` that answers only from ``keys``.

    A key that was not fetched, or whose lookup failed, reads as absent; the caller has already
    turned those lookups into temperror or permerror before dkimpy is asked to verify anything.
    """

    def lookup(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        found = keys.get(text.rstrip(".").lower())
        if found is None or found.status is not KeyStatus.FOUND:
            return None
        return found.record.encode("utf-8", "surrogateescape")

    return lookup


@dataclass(frozen=True, slots=True)
class PublicKey:
    """What a key record says: its type (``rsa`` or ``ed25519``), size in bits, the hash
    algorithms it allows (``h=``, empty for any) and whether ``t=s`` forbids subdomain identities."""

    kind: str
    bits: int
    hashes: tuple[str, ...] = ()
    strict_identity: bool = False


def evaluate_key(lookup: KeyLookup) -> PublicKey | str:
    """The usable key in a fetched record, or the reason it is unusable (a permerror)."""
    return _evaluate_record(lookup.name, lookup.record.strip())


# The verdict on a record depends on its text alone, and the same few keys sign most mail:
# parsing the DER key and its tags again for every message was ~2 % of a receiving process.
@functools.lru_cache(maxsize=1024)
def _evaluate_record(name: str, text: str) -> PublicKey | str:
    try:
        tags = dkim.util.parse_tag_value(text.encode("utf-8", "replace"))
    except dkim.util.InvalidTagValueList as exc:
        return f"malformed key record: {exc}"
    if not tags.get(b"p", b"").strip():
        # RFC 6376 §3.6.1: an empty p= means the key has been revoked.
        return "key revoked (empty p=)"
    service = tags.get(b"s", b"*")
    if not {s.strip() for s in service.split(b":")} & {b"*", b"email"}:
        return f"key not for e-mail (s={service.decode('ascii', 'replace')})"
    try:
        _pk, bits, ktag, _tlsrpt = dkim.evaluate_pk(name, text.encode("utf-8", "replace"))
    except (dkim.KeyFormatError, ValueError, TypeError) as exc:
        return f"malformed key record: {exc}"
    if ktag is None or bits is None:
        return "unusable key record"
    hashes = tuple(
        h.strip().decode("ascii", "replace").lower() for h in tags.get(b"h", b"").split(b":") if h.strip()
    )
    flags = {f.strip() for f in tags.get(b"t", b"").split(b":")}
    return PublicKey(ktag.decode("ascii"), int(bits), hashes, b"s" in flags)


class QuietLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger for dkimpy that writes everything at DEBUG.

    dkimpy logs a bad signature at ERROR. Signatures are the sender's input, so a bad one is a
    finding of the check, not an error of the gateway, and must not reach the error log of
    every message.
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs
