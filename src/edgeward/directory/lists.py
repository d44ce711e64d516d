"""The users' safe senders, blocked senders and safe recipients, kept as SHA-256 digests.

The replica sits on a DMZ host; who each user corresponds with is not the gateway's to keep in
clear (Exchange's Edge likewise holds only hashes of the safelist aggregation). Every list
value is therefore the lower-case hex SHA-256 of the UTF-8 of its normal form:

- an address ``local@domain``: the whole address lower-cased, the domain in its ASCII (IDNA)
  form without a trailing dot;
- a domain entry ``@domain``: the same, with the ``@``.

A lookup hashes the sender's address and ``@`` its domain and looks for either digest, which is
exactly what the plaintext lists answered: an address, or the whole of one domain (not its
subdomains).

``[directory] list_encoding`` says what the directory holds: ``plain`` values are normalised and
hashed here; ``sha256`` values are digests already (made by the same rule) and are kept as they
are, lower-cased; a value that is not 64 hex digits is logged and skipped. Anything that reaches
the replica file goes through :func:`digests`, which also hashes a plaintext value of a replica
written before the lists were hashed, or of a push from such a host.

The digests are unsalted, so that a directory can make the same ones: they keep the lists from
being read off the file, not from someone holding the file and testing addresses they guess.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from typing import Literal

from edgeward.types import Address

log = logging.getLogger("edgeward.directory")

Encoding = Literal["plain", "sha256"]
_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")


def is_digest(value: str) -> bool:
    return _DIGEST.match(value) is not None


def _ascii_domain(domain: str) -> str | None:
    domain = domain.strip().lower().rstrip(".")
    if not domain:
        return None
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def normalise(value: str) -> str | None:
    """``value`` (an address or ``@domain``) in the form that is hashed; None if it is neither."""
    value = value.strip().lower()
    local, at, domain = value.rpartition("@")
    if not at or "@" in local or any(c.isspace() for c in value):
        return None
    ascii_domain = _ascii_domain(domain)
    if ascii_domain is None:
        return None
    return f"{local}@{ascii_domain}"


def digest(normal: str) -> str:
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()


def hashed(*values: str) -> tuple[str, ...]:
    """The digests of plaintext ``values`` (those that are addresses or ``@domain``), in order."""
    return tuple(dict.fromkeys(digest(n) for v in values if (n := normalise(v))))


def from_directory(values: Iterable[str], encoding: Encoding, where: str = "") -> tuple[str, ...]:
    """A list attribute's values as the replica keeps them (see the module doc)."""
    if encoding == "plain":
        return hashed(*values)
    out: list[str] = []
    for v in values:
        v = v.strip()
        if is_digest(v):
            out.append(v.lower())
        else:
            # Never log the value: in a directory that hashes its lists it may be an address.
            log.warning("directory: %s: a list value that is not a SHA-256 hex digest skipped", where or "?")
    return tuple(dict.fromkeys(out))


def digests(values: Iterable[str]) -> tuple[str, ...]:
    """``values`` all as digests: digests kept (lower-cased), plaintext hashed, the rest dropped."""
    out = (v.lower() if is_digest(v) else (digest(n) if (n := normalise(v)) else "") for v in values)
    return tuple(dict.fromkeys(v for v in out if v))


def sender_keys(sender: Address) -> tuple[str, ...]:
    """The digests a list entry matching ``sender`` has: its address and ``@`` its domain."""
    domain = _ascii_domain(sender.domain) or sender.domain.lower()
    return (digest(f"{sender.local.lower()}@{domain}"), digest(f"@{domain}"))


def listed(values: tuple[str, ...] | frozenset[str], sender: Address) -> bool:
    """Whether ``sender`` is on a list of digests (by address, or by its domain)."""
    if sender.is_null:
        return False
    return any(k in values for k in sender_keys(sender))
