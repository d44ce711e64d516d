"""Protocols for every outside service the gateway talks to.

Code above this layer asks for these interfaces, never for a concrete client, so that a test
can hand in the fakes of ``edgeward.testing`` and production code the adapters of
``edgeward.net`` and ``edgeward.state``. ``runtime`` is the one place that picks
implementations.

Each port, its real implementation and the fake shipped in ``edgeward.testing``:

- :class:`Clock`: :class:`SystemClock`; ``testing.clock.FakeClock``.
- :class:`DnsLookup` (one DNS question, for the anti-spam checks): ``net.dns.DnsResolver``;
  ``testing.dns.FakeResolver``.
- :class:`PolicyStore` (reputation, greylisting, rate counters, lists):
  ``state.policy.SqlitePolicyStore``, ``state.redis_policy.RedisPolicyStore`` (shared by
  several gateways); ``testing.policystore.MemoryPolicyStore``.
- :class:`Resolver` (mail routing's MX and address lookups): ``net.dns.DnsResolver``; no fake,
  its tests run against nsd on loopback.
- :class:`Scanner` (one anti-virus or file-analysis engine: clamd, YARA, Office analysis, a
  hash list): the engines of ``edgeward.scanning``; ``testing.scanner.FakeScanner``.

Each fake passes the same conformance suite as its real implementation (``tests/testing/``),
so a component test that uses a fake meets the behaviour production code will meet.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from edgeward.errors import EdgewardError
from edgeward.message_file import MessageFile


@runtime_checkable
class Clock(Protocol):
    """The one source of time for logic that schedules or expires things.

    ``now()`` is wall-clock time in seconds since the epoch: what is stored, shared between
    processes and shown (retry times, list expiry, log stamps). ``monotonic()`` never goes
    back, has an arbitrary origin and means nothing outside this process: what in-process
    deadlines and windows use (read deadlines, idle pools, log suppression), so a step of the
    system clock neither frees a rate-limited client nor cuts a session short.
    """

    def now(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True, slots=True)
class MxHost:
    preference: int
    host: str


class ResolverError(Exception):
    """A DNS lookup failed.

    ``permanent`` is true for answers that will not change on retry (NXDOMAIN, null MX), false
    for time-outs and server failures, which must be retried rather than bounced.
    """

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Resolver(Protocol):
    """The DNS lookups the gateway needs."""

    async def mx(self, domain: str) -> Sequence[MxHost]: ...

    async def addresses(self, host: str) -> Sequence[str]: ...

    async def ptr(self, ip: str) -> Sequence[str]: ...

    async def txt(self, name: str) -> Sequence[str]: ...


class DnsFailure(enum.Enum):
    """Why a query has no answer. Only NXDOMAIN and INVALID are facts about the name; the others
    are facts about the path to it, so a check must treat them as "unknown", never as "absent"."""

    NXDOMAIN = "nxdomain"  # the name does not exist (RCODE 3)
    SERVFAIL = "servfail"  # server failure or refusal (RCODE 2, 5); bogus data on a validating resolver
    TIMEOUT = "timeout"  # no answer within the time limit
    INVALID = "invalid"  # the name cannot be asked (a label over 63 octets, a name over 255)


class DnsError(ResolverError):
    """A query that has no answer, with the reason as a :class:`DnsFailure`."""

    def __init__(self, message: str, failure: DnsFailure) -> None:
        super().__init__(message, permanent=failure in (DnsFailure.NXDOMAIN, DnsFailure.INVALID))
        self.failure = failure


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """The records of one type at one name; empty for NODATA (the name exists, the type does not).

    ``records`` are presentation strings: A/AAAA the address; TXT the character-strings of one
    record concatenated (RFC 7208 §3.3) and decoded as UTF-8 with replacement; MX ``"pref host"``;
    PTR, CNAME and NS the target. Names are lower case without the final dot. ``authenticated``
    is the resolver's AD flag (RFC 4035 §3.2.3), believed only for resolvers the administrator
    chose.
    """

    records: tuple[str, ...]
    authenticated: bool = False


class DnsLookup(Protocol):
    """One DNS question, the primitive the anti-spam checks (SPF, DKIM, DMARC, DNSBL) build on.

    Raises :class:`DnsError` for NXDOMAIN, server failures and time-outs; CNAMEs are followed by
    the resolver, so an answer holds the records at the end of the chain.
    """

    async def query(self, name: str, rdtype: str) -> DnsAnswer: ...


class PolicyStoreError(EdgewardError):
    """The policy store cannot answer: unreadable, locked past its busy timeout, corrupt, or down.

    The one exception every :class:`PolicyStore` raises for a fault of the store itself (not
    for a caller's mistake, which is ``ValueError``). An agent turns it into ``451 4.3.0`` or,
    where it was configured to fail open, into a finding; it never means "not listed".
    """


@dataclass(frozen=True, slots=True)
class StoredValue:
    """One key of a :class:`PolicyStore`; ``expires_at`` is wall-clock seconds, None for never."""

    key: str
    value: str
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One member of a named list (an IP block list entry, a safe sender), with its comment."""

    member: str
    comment: str
    added_at: float
    expires_at: float | None


class PolicyStore(Protocol):
    """State the anti-spam agents share across sessions and processes: reputation, greylisting
    triplets, rate counters, allow/block and safe-sender lists, each with expiry.

    Shaped after Redis primitives so a shared store for several gateways can implement it
    without any agent changing: string values under string keys (``SET key value EX ttl``),
    an atomic counter in a fixed window (``INCR`` + ``EXPIRE NX``), named lists whose members
    expire one by one (a sorted set scored by expiry beside a hash of comments), and a scan by
    key prefix (``SCAN MATCH prefix*``). Agents namespace keys by prefix (``grey:``, ``rep:``,
    ``rate:``). Structured values are the caller's JSON.

    Times are the store's injected :class:`Clock` (``now()``: wall-clock, because other
    processes read the same entries); ``ttl`` and ``window`` are seconds from now and must be
    positive. An expired key or member is absent for every method at once, whether or not it
    has been purged yet. Faults of the store raise :class:`PolicyStoreError`; an empty key or
    member, a non-positive ``ttl`` or ``incr`` on a value that is not an integer raise
    ``ValueError``.
    """

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, *, ttl: float | None = None) -> None:
        """Store ``value``, replacing any old value and its expiry."""

    async def add(self, key: str, value: str, *, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent (``SET NX``); whether it was stored."""

    async def delete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""

    async def incr(self, key: str, *, window: float, amount: int = 1) -> int:
        """Add ``amount`` to the counter at ``key`` and return the new count, atomically.

        A counter that is absent or expired starts at ``amount`` and expires ``window``
        seconds later; later increments keep that expiry (a fixed window, as Redis gives).
        """

    async def incr_many(self, counts: Mapping[str, int], *, window: float) -> dict[str, int]:
        """``incr`` of each key of ``counts`` by its amount, in one round trip; the new counts.

        Each counter is atomic on its own, as ``incr`` is; the set is not one transaction.
        """

    async def scan(self, prefix: str, *, limit: int | None = None) -> list[StoredValue]:
        """The live keys that start with ``prefix``, in key order."""

    async def list_add(self, name: str, member: str, *, comment: str = "", ttl: float | None = None) -> None:
        """Add ``member`` to list ``name`` or replace its comment and expiry."""

    async def list_remove(self, name: str, member: str) -> bool:
        """Remove ``member`` from list ``name``; whether it was there."""

    async def list_get(self, name: str, member: str) -> ListEntry | None: ...

    async def list_get_many(self, name: str, members: Sequence[str]) -> list[ListEntry | None]:
        """``list_get`` of each of ``members``, in their order, in one round trip."""

    async def list_members(self, name: str) -> list[ListEntry]:
        """The live members of list ``name``, in member order."""

    async def list_version(self, name: str) -> str:
        """A token that changes whenever a member of list ``name`` is added, replaced or removed
        (dropping expired members may move it too).

        The same token means the same rows, so a reader may keep what ``list_members`` gave
        until the token moves (members that expire meanwhile are still to be skipped by their
        ``expires_at``). A list never written has a token too. Tokens are random, so two files
        or servers do not share one for different contents.
        """

    async def purge_expired(self) -> int:
        """Drop what has expired (housekeeping only: reads never see it); how many were dropped."""


@dataclass(frozen=True, slots=True)
class ScanItem:
    """One object an engine looks at: an attachment, an archive member, or the whole message.

    ``data`` is the decoded content, held in memory only (no engine writes it to disk in the
    clear). ``path`` says where it sits, for findings and reports: part numbers and archive
    members joined by ``/`` and ``!`` (``2/invoice.zip!docs/invoice.exe``), with hostile
    characters already escaped. ``name`` is the file name as declared (escaped the same way),
    empty when there is none. ``declared_type`` is the Content-Type as the message states it,
    ``true_type`` the MIME type read from the content itself (empty when unknown).

    A message kept in a file (``message_file``) may give items that are not whole: ``partial``
    says ``data`` is only the content's first bytes (enough for ``true_type``), with ``sha256``
    the hex digest of the whole content; such items reach only engines that read the message
    themselves (clamd), never one that needs the bytes (``WalkLimits.hold_leaves``). ``source``
    set: the item is the whole message, read from that file (``data`` is then empty).

    ``coarse`` says ``true_type`` is ``text/plain`` read without libmagic's text tests, which
    tell HTML, scripts and source code apart and cost most of its time; a consumer that reads
    text subtypes asks ``scanning.truetype.refine`` for them.
    """

    data: bytes
    path: str
    name: str = ""
    declared_type: str = ""
    true_type: str = ""
    partial: bool = False
    sha256: str = ""
    source: MessageFile | None = None
    coarse: bool = False

    @property
    def size(self) -> int:
        """The bytes an engine would be sent for this item."""
        return self.source.size if self.source is not None else len(self.data)


@dataclass(frozen=True, slots=True)
class ScanHit:
    """What one engine found in one item: ``name`` is the finding of the score table
    (``AV_INFECTED``, ``AV_MACRO_AUTOEXEC`` ...), ``signature`` the engine's own name for it
    (``Eicar-Signature``, a YARA rule name, an oletools keyword)."""

    name: str
    engine: str
    signature: str
    path: str


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """One engine's health for ``edgeward av status``: its version, when its signatures were
    published (wall-clock seconds, None when it has none or cannot tell) and why it is unhealthy."""

    engine: str
    healthy: bool
    version: str = ""
    signatures_at: float | None = None
    detail: str = ""


class ScanEngineError(EdgewardError):
    """An engine could not give an answer: down, timed out, refused the item (too large for its
    configured limits) or answered something unreadable. Never means "clean"; the multi-engine
    policy decides what an unanswered scan does (by default ``451 4.7.0``)."""


class Scanner(Protocol):
    """One scan engine. ``scan`` answers for every item, hits only (an empty list is "clean");
    it raises :class:`ScanEngineError` when it cannot answer for all of them."""

    name: str

    async def scan(self, items: Sequence[ScanItem]) -> list[ScanHit]: ...

    async def status(self) -> EngineStatus: ...
