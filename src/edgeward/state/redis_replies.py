"""Reading the Redis policy store's replies back into values, or refusing them as not ours.

Everything under the store's prefix was written by its scripts: a value hash with ``v`` and
``x`` (the expiry), list members as JSON. A reply of any other shape means someone else's data
under the prefix, which the store reports as a :class:`~edgeward.ports.PolicyStoreError`
(:class:`NotOurs` is how these helpers say so) rather than guessing at it.
"""

from __future__ import annotations

__all__ = ["NotOurs", "decode_expiry", "decode_text", "is_expired", "raw_bytes", "value_pair"]


class NotOurs(Exception):
    """Data under the prefix that this store did not write (raised as PolicyStoreError)."""


def decode_text(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8")


def decode_expiry(raw: object) -> float | None:
    """An expiry as stored (bytes from a hash, a number from JSON); anything else is not ours."""
    if raw is None:
        return None
    try:
        return float(raw.decode() if isinstance(raw, bytes) else str(raw))
    except (ValueError, UnicodeDecodeError):
        raise NotOurs from None


def is_expired(expires: bytes | None, now: float) -> bool:
    found = decode_expiry(expires)
    return found is not None and found <= now


def raw_bytes(found: object) -> bytes | None:
    if found is None or isinstance(found, bytes):
        return found
    raise NotOurs


def value_pair(found: object) -> tuple[bytes | None, bytes | None]:
    """The ``v`` and ``x`` fields of an HMGET reply."""
    if not isinstance(found, list) or len(found) != 2:
        raise NotOurs
    return raw_bytes(found[0]), raw_bytes(found[1])
