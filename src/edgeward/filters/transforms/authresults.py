"""Removal of Authentication-Results fields sent under our authserv-id, before any agent looks.

RFC 8601 §5: a field carrying our authserv-id that we did not write is a forgery, and anything
that trusts our name downstream (a mailbox rule, the content classifier, a second gateway)
would believe it. So every such field is removed from a client's message on arrival, and the
one we write (``filters.agents.senderauth``) is stamped only on acceptance.

Fields of other authserv-ids are left alone (RFC 8601 §5 lets a receiver keep them); nothing of
ours trusts them. A session with ``keep_internal_headers`` (another Edgeward of the
organisation, a trusted internal server) keeps its fields, as it keeps Edgeward's own stamps:
its results under a shared authserv-id are the organisation's own.
"""

from __future__ import annotations

import logging

from edgeward.filters.base import SessionInfo
from edgeward.headers import header_end
from edgeward.senderauth.authresults import remove_own

log = logging.getLogger("edgeward.transforms")


def strip_forged_results(data: bytes, info: SessionInfo, authserv_id: str) -> bytes:
    if not authserv_id or "keep_internal_headers" in info.rights:
        return data
    if b"authentication-results" not in data[: header_end(data)].lower():
        return data
    cleaned, removed = remove_own(data, authserv_id)
    if removed:
        log.info(
            "session %s: removed %d Authentication-Results field(s) forged under %s",
            info.session_id, removed, authserv_id,
        )  # fmt: skip
    return cleaned
