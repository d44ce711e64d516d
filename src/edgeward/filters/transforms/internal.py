"""Removal of Edgeward's own headers from untrusted clients' mail, before any agent looks.

Security: the verdict stamps (``X-Edgeward-SCL``, ``-Antispam-Report``, ``-Spam-Flag`` ...) are
trusted by mail stores behind the gateway, so a copy a client sent is removed unless its session
holds ``keep_internal_headers`` (another Edgeward of the organisation).
"""

from __future__ import annotations

from edgeward.filters.base import SessionInfo
from edgeward.headers import remove_fields

INTERNAL_HEADER_PREFIXES = (b"x-edgeward-",)


def strip_internal(data: bytes, info: SessionInfo) -> bytes:
    if "keep_internal_headers" in info.rights:
        return data
    return remove_fields(data, INTERNAL_HEADER_PREFIXES)
