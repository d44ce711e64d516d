"""The ARC seal (RFC 8617 §5.1) on accepted mail, when ``[arc]`` names a sealing domain and key.

It runs after the stamps, so the set it adds seals our own Authentication-Results (the AAR is a
copy of it, ``cv=`` our own chain verdict) and the message as it leaves us: a mailbox provider
behind the gateway, or the next hop after a later transform changes the message, can then trust
what we verified, as RFC 8617 intends for intermediaries.

A message without our Authentication-Results (an exempt one), with an inconclusive ARC check,
or with a chain an earlier hop marked ``cv=fail`` is passed on unsealed
(``senderauth.arcseal``). A sealing failure is logged and the message goes on unsealed: a
transform never refuses or loses mail.
"""

from __future__ import annotations

import logging

from edgeward.filters.transforms.base import Accepted
from edgeward.senderauth.arcseal import ArcSealError, seal

log = logging.getLogger("edgeward.transforms")

# What the ARC-Message-Signature covers: the fields a reader sees and DMARC judges.
SEALED_FIELDS = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
)


class ArcSeal:
    """Adds our ARC set on top of an accepted message."""

    name = "arc-seal"

    def __init__(self, domain: str, selector: str, key: bytes, authserv_id: str) -> None:
        self.domain = domain
        self.selector = selector
        self.key = key
        self.authserv_id = authserv_id

    def apply(self, data: bytes, accepted: Accepted) -> bytes:
        try:
            fields = seal(
                data, selector=self.selector, domain=self.domain, private_key=self.key,
                authserv_id=self.authserv_id, include_headers=SEALED_FIELDS,
            )  # fmt: skip
        except (ArcSealError, ValueError) as exc:
            log.error("message %s: not ARC-sealed: %s", accepted.msg_id, exc)
            return data
        return b"".join(fields) + data
