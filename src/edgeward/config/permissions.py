"""Permission groups and the rights they grant, after Exchange's receive connector model.

A client holds the rights its connector grants everyone (``permissions``), plus those of each
permission group it proves membership of, if the connector lists that group:

- ``anonymous``: everyone; submit to accepted domains.
- ``users``: authenticated with AUTH; relay, bypass anti-spam, send as an accepted domain.
- ``partners``: a domain-secure (mutual TLS) partner; bypass anti-spam.
- ``servers``: a client certificate from the trusted CA naming a trusted server; relay, bypass
  anti-spam, send as an accepted domain, keep Edgeward's internal headers.

Security: rights only ever grow from what the connector lists; no group grants anything on a
connector that does not name it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from edgeward.config.schema import ReceiveConnectorConfig

GROUP_RIGHTS: dict[str, frozenset[str]] = {
    "anonymous": frozenset({"submit"}),
    "users": frozenset({"submit", "relay", "bypass_antispam", "send_as_accepted"}),
    "partners": frozenset({"submit", "bypass_antispam"}),
    "servers": frozenset({"submit", "relay", "bypass_antispam", "send_as_accepted", "keep_internal_headers"}),
}


def rights_for(connector: ReceiveConnectorConfig, groups: Iterable[str]) -> frozenset[str]:
    """The rights of a client of ``connector`` that proved membership of ``groups``."""
    return _rights(connector.permissions, connector.permission_groups, frozenset(groups))


# Every session asks for its anonymous rights: one set per connector, shared, not one each.
@functools.lru_cache(maxsize=256)
def _rights(
    permissions: tuple[str, ...], permission_groups: tuple[str, ...], groups: frozenset[str]
) -> frozenset[str]:
    rights: set[str] = set(permissions)
    for group in {"anonymous", *groups}:
        if group in permission_groups:
            rights |= GROUP_RIGHTS[group]
    # Relay rights are given to the organisation's own servers, which send as its domains.
    if "relay" in rights:
        rights.add("send_as_accepted")
    return frozenset(rights)
