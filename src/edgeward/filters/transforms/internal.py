"""Removal of Edgeward's own headers from untrusted clients' mail, before any agent looks.

Security: the verdict stamps (``X-Edgeward-SCL``, ``-Antispam-Report``, ``-Spam-Flag`` ...) are
trusted by mail stores behind the gateway, so a copy a client sent is removed unless its session
holds ``keep_internal_headers`` (another Edgeward of the organisation).

Exchange trusts its organisation fields just as much (``X-MS-Exchange-Organization-SCL: -1``
delivers to the inbox, ``-AuthAs: Internal`` makes mail internal), and so does its header
firewall: ``X-MS-Exchange-Organization-*`` and ``X-MS-Exchange-Forest-*`` are removed from the
same clients, always, whether or not ``[stamps] exchange_organization`` writes our own.
"""

from __future__ import annotations

from edgeward.filters.base import SessionInfo
from edgeward.headers import remove_fields

INTERNAL_HEADER_PREFIXES = (b"x-edgeward-", b"x-ms-exchange-organization-", b"x-ms-exchange-forest-")


def strip_internal(data: bytes, info: SessionInfo) -> bytes:
    if "keep_internal_headers" in info.rights:
        return data
    return remove_fields(data, INTERNAL_HEADER_PREFIXES)
