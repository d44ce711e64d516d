"""MTA-STS (RFC 8461) for outbound mail: policy discovery, fetching, caching and MX matching.

This module owns the sender's half of MTA-STS. :meth:`MtaSts.policy` looks up the
``_mta-sts.<domain>`` TXT record (§3.1), fetches the policy from
``https://mta-sts.<domain>/.well-known/mta-sts.txt`` when the record's id differs from the cached
policy's (§3.3), parses it (§3.2) and keeps it in an :class:`StsCache` until ``max_age`` runs
out (§5.1). :meth:`StsPolicy.matches` checks an MX host against the policy's patterns (§4.1).
What a policy means for one delivery attempt (TLS required, certificate checks) is decided in
``edgeward.delivery.tlspolicy``.

Failures follow §5.1: a policy that cannot be discovered or fetched falls back to an unexpired
cached policy, and without one the domain is treated as having no policy. Nothing here raises
for a network problem; failures are logged.

Security: domain names come from mail envelopes, so they are checked as host names (and
IDNA-encoded) before they reach DNS or a URL. The policy host is reached at the addresses our
own resolver returns, over TLS 1.2+ with the certificate chain and the name ``mta-sts.<domain>``
verified; only a ``200`` with ``text/plain`` is accepted, never a redirect (§3.3). Status line,
headers and body are bounded (16 KiB, 64 KiB) and the whole fetch has one time limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, cast

from edgeward.errors import EdgewardError
from edgeward.net import http1
from edgeward.ports import Clock, Resolver, ResolverError, SystemClock
from edgeward.state.sqlite import StateStore

__all__ = [
    "MAX_AGE_LIMIT",
    "MemoryStsCache",
    "MtaSts",
    "SqliteStsCache",
    "StsCache",
    "StsError",
    "StsPolicy",
    "parse_policy",
    "parse_txt",
]

log = logging.getLogger(__name__)

Mode = Literal["enforce", "testing", "none"]
_MODES: frozenset[str] = frozenset({"enforce", "testing", "none"})

MAX_AGE_LIMIT = 31_557_600  # RFC 8461 §3.2: about one year
_MAX_BODY = 64 * 1024
# RFC 8461 §3.3: after a failed fetch, wait at least five minutes before trying that id again.
_RETRY_AFTER = 300.0
_MAX_FAILURES_KEPT = 4096
_WELL_KNOWN = "/.well-known/mta-sts.txt"

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# RFC 8461 §3.1 (sts-ext-name, sts-ext-value, sts-id) and §3.2 (sts-policy-max-age-value).
_TXT_STS = re.compile(r"v=STSv1[ \t]*;")
_TXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_TXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")
_TXT_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_MAX_AGE = re.compile(r"[0-9]{1,10}")


class StsError(EdgewardError):
    """An MTA-STS record or policy is invalid, or the policy could not be fetched."""


@dataclass(frozen=True, slots=True)
class StsPolicy:
    """A parsed policy: ``mx`` holds the patterns as published, lower-case, without a final dot."""

    mode: Mode
    mx: tuple[str, ...]
    max_age: int
    policy_id: str

    def matches(self, host: str) -> bool:
        """Whether MX ``host`` is allowed (RFC 8461 §4.1).

        ``*.example.net`` stands for exactly one leftmost label: ``mx.example.net`` matches,
        ``example.net`` and ``a.mx.example.net`` do not.
        """
        try:
            name = _host_name(host)
        except StsError:
            return False
        for pattern in self.mx:
            if pattern.startswith("*."):
                suffix = pattern[1:]
                if name.endswith(suffix) and "." not in name[: -len(suffix)] and len(name) > len(suffix):
                    return True
            elif name == pattern:
                return True
        return False


def _host_name(name: str) -> str:
    """``name`` lower-case, IDNA-encoded, without a final dot; StsError if not a host name."""
    name = name.removesuffix(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise StsError(f"not a valid domain name: {name!r}") from None
    labels = name.split(".")
    # The last label must not be all digits (RFC 3696 §2), which also keeps IPv4 literals out.
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise StsError(f"not a valid domain name: {name!r}")
    return name


def parse_txt(records: Sequence[str]) -> str | None:
    """The policy id of the ``_mta-sts`` TXT records (RFC 8461 §3.1), or None.

    Records not starting ``v=STSv1;`` are discarded; if not exactly one remains, or it is
    malformed, the domain has no usable record.
    """
    candidates = [r for r in records if _TXT_STS.match(r)]
    if len(candidates) != 1:
        return None
    fields = [f.strip(" \t") for f in candidates[0].split(";")[1:]]
    if fields and fields[-1] == "":
        fields.pop()  # the record may end with a separator
    policy_id: str | None = None
    for field in fields:
        name, eq, value = field.partition("=")
        if not eq or not _TXT_NAME.fullmatch(name) or not _TXT_VALUE.fullmatch(value):
            return None
        if name == "id" and policy_id is None:
            if not _TXT_ID.fullmatch(value):
                return None
            policy_id = value
    return policy_id


def parse_policy(text: str, policy_id: str) -> StsPolicy:
    """The policy file ``text`` (RFC 8461 §3.2), fetched under ``policy_id``; raises StsError.

    Unknown keys are ignored; of a key other than ``mx`` that appears twice the first counts.
    """
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise StsError(f"policy line without a key: {line[:60]!r}")
        key, value = key.strip(), value.strip(" \t")
        if key == "mx":
            wildcard = value.startswith("*.")
            host = _host_name(value[2:] if wildcard else value)
            mx.append(f"*.{host}" if wildcard else host)
        else:
            fields.setdefault(key, value)
    for required in ("version", "mode", "max_age"):
        if required not in fields:
            raise StsError(f"policy has no {required}")
    if fields["version"] != "STSv1":
        raise StsError(f"unknown policy version {fields['version'][:20]!r}")
    mode = fields["mode"]
    if mode not in _MODES:
        raise StsError(f"unknown policy mode {mode[:20]!r}")
    if not _MAX_AGE.fullmatch(fields["max_age"]):
        raise StsError(f"invalid max_age {fields['max_age'][:20]!r}")
    if mode != "none" and not mx:
        raise StsError(f"policy mode {mode} without mx")
    max_age = min(int(fields["max_age"]), MAX_AGE_LIMIT)
    return StsPolicy(cast(Mode, mode), tuple(mx), max_age, policy_id)


# -- caches -------------------------------------------------------------------------------------


class StsCache(Protocol):
    """Where policies are kept between fetches, with the time (epoch seconds) of the fetch."""

    def get(self, domain: str) -> tuple[StsPolicy, float] | None: ...

    def put(self, domain: str, policy: StsPolicy, fetched: float) -> None: ...


class MemoryStsCache:
    """A cache that lives as long as the process."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[StsPolicy, float]] = {}

    def get(self, domain: str) -> tuple[StsPolicy, float] | None:
        return self._entries.get(domain)

    def put(self, domain: str, policy: StsPolicy, fetched: float) -> None:
        self._entries[domain] = (policy, fetched)


class SqliteStsCache:
    """A cache in the state database, so policies survive a restart (RFC 8461 §5.1 expects it)."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def get(self, domain: str) -> tuple[StsPolicy, float] | None:
        row = self._store.run(
            lambda conn: conn.execute(
                "SELECT policy_id, mode, mx, max_age, fetched FROM mta_sts_policies WHERE domain = ?",
                (domain,),
            ).fetchone()
        )
        if row is None:
            return None
        policy_id, mode, mx_json, max_age, fetched = row
        try:
            mx = json.loads(mx_json)
        except (TypeError, ValueError):
            mx = None
        if mode not in _MODES or not isinstance(mx, list) or not all(isinstance(m, str) for m in mx):
            log.warning("MTA-STS cache entry for %s is damaged; ignoring it", domain)
            return None
        return StsPolicy(cast(Mode, mode), tuple(mx), int(max_age), str(policy_id)), float(fetched)

    def put(self, domain: str, policy: StsPolicy, fetched: float) -> None:
        row = (domain, policy.policy_id, policy.mode, json.dumps(list(policy.mx)), policy.max_age, fetched)
        self._store.run(
            lambda conn: conn.execute(
                "INSERT INTO mta_sts_policies (domain, policy_id, mode, mx, max_age, fetched)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (domain) DO UPDATE SET"
                " policy_id = excluded.policy_id, mode = excluded.mode, mx = excluded.mx,"
                " max_age = excluded.max_age, fetched = excluded.fetched",
                row,
            ),
            write=True,
        )


# -- discovery ----------------------------------------------------------------------------------


class MtaSts:
    """The MTA-STS policy of recipient domains, from DNS, HTTPS and ``cache``.

    ``https_port`` other than 443 and ``ca_file`` (trust anchors instead of the system store)
    exist for test labs; ``timeout`` bounds one whole fetch.
    """

    def __init__(
        self,
        resolver: Resolver,
        cache: StsCache,
        *,
        https_port: int = 443,
        ca_file: Path | None = None,
        timeout: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        self._resolver = resolver
        self._cache = cache
        self._port = https_port
        self._timeout = timeout
        self._clock = clock if clock is not None else SystemClock()
        try:
            self._tls = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
        except OSError as exc:  # ssl.SSLError is one
            raise StsError(f"cannot load MTA-STS trust anchors from {ca_file}: {exc}") from None
        self._tls.minimum_version = ssl.TLSVersion.TLSv1_2
        # domain -> (policy id, time) of the last failed fetch, for the §3.3 back-off.
        self._failures: dict[str, tuple[str, float]] = {}

    async def policy(self, domain: str) -> StsPolicy | None:
        """The policy to apply to mail for ``domain``, or None when it has none (RFC 8461 §5.1).

        A policy in mode ``none`` is returned as it is. Never raises for DNS, network or
        policy errors.
        """
        try:
            name = _host_name(domain)
        except StsError as exc:
            log.warning("MTA-STS: %s", exc)
            return None
        now = self._clock.now()
        cached = await self._cache_get(name)
        valid = cached[0] if cached is not None and cached[1] + cached[0].max_age > now else None
        try:
            policy_id = parse_txt(await self._resolver.txt(f"_mta-sts.{name}"))
        except ResolverError as exc:
            log.info("MTA-STS record of %s not available: %s", name, exc)
            policy_id = None
        if policy_id is None or (valid is not None and valid.policy_id == policy_id):
            return valid
        failed = self._failures.get(name)
        if failed is not None and failed[0] == policy_id and now - failed[1] < _RETRY_AFTER:
            return valid
        try:
            policy = parse_policy(await self._fetch(name), policy_id)
        except StsError as exc:
            log.warning(
                "MTA-STS policy of %s (id %s) not fetched: %s%s",
                name,
                policy_id,
                exc,
                "; keeping the cached policy" if valid is not None else "",
            )
            self._note_failure(name, policy_id, now)
            return valid
        self._failures.pop(name, None)
        await self._cache_put(name, policy, now)
        return policy

    # The cache may sit on disk; the event loop does not wait for it.
    async def _cache_get(self, name: str) -> tuple[StsPolicy, float] | None:
        try:
            return await asyncio.to_thread(self._cache.get, name)
        except EdgewardError as exc:
            log.warning("MTA-STS cache lookup for %s failed: %s", name, exc)
            return None

    async def _cache_put(self, name: str, policy: StsPolicy, fetched: float) -> None:
        try:
            await asyncio.to_thread(self._cache.put, name, policy, fetched)
        except EdgewardError as exc:
            log.warning("MTA-STS policy of %s not cached: %s", name, exc)

    def _note_failure(self, name: str, policy_id: str, now: float) -> None:
        if len(self._failures) >= _MAX_FAILURES_KEPT:
            self._failures = {d: f for d, f in self._failures.items() if now - f[1] < _RETRY_AFTER}
            if len(self._failures) >= _MAX_FAILURES_KEPT:
                self._failures.clear()
        self._failures[name] = (policy_id, now)

    # -- HTTPS ---------------------------------------------------------------------------------

    async def _fetch(self, domain: str) -> str:
        """The policy text of ``domain``; raises StsError."""
        host = f"mta-sts.{domain}"
        try:
            async with asyncio.timeout(self._timeout):
                return await self._get(host)
        except TimeoutError:
            raise StsError(f"https://{host}{_WELL_KNOWN}: no answer in {self._timeout:g} s") from None

    async def _get(self, host: str) -> str:
        try:
            addresses = await self._resolver.addresses(host)
        except ResolverError as exc:
            raise StsError(str(exc)) from None
        if not addresses:
            raise StsError(f"{host} has no address")
        problems: list[str] = []
        for address in addresses:
            # A hand-made HTTP/1.1 client rather than an HTTP library: the connection must go to
            # the address our own resolver returned (the one DNS view the gateway trusts and
            # tests can steer), while TLS sends SNI and verifies the certificate for the
            # policy host's name, not for the address.
            try:
                reader, writer = await asyncio.open_connection(
                    address,
                    self._port,
                    ssl=self._tls,
                    server_hostname=host,
                    limit=http1.MAX_HEADERS,
                )
            except OSError as exc:  # ssl.SSLError and certificate errors are ones
                problems.append(f"{address}: {exc}")
                continue
            try:
                writer.write(
                    f"GET {_WELL_KNOWN} HTTP/1.1\r\nHost: {self._host_header(host)}\r\n"
                    "User-Agent: Edgeward\r\nAccept: text/plain\r\nConnection: close\r\n\r\n".encode("ascii")
                )
                await writer.drain()
                return await http1.read_text_response(reader, _MAX_BODY)
            except http1.HttpError as exc:
                raise StsError(f"https://{host}{_WELL_KNOWN}: {exc}") from None
            except OSError as exc:
                raise StsError(f"{host} ({address}): {str(exc) or type(exc).__name__}") from None
            finally:
                await http1.close(writer)
        raise StsError(f"cannot connect to {host}: {'; '.join(problems)}")

    def _host_header(self, host: str) -> str:
        return host if self._port == 443 else f"{host}:{self._port}"
