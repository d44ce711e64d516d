"""The DKIM signature on outbound mail, the last change before the ARC seal (``[dkim_sign]``).

It runs after the stamps, the attachment stripping and the transport rules' changes, so the
signature covers the subject tag, the headers and the disclaimer as delivered (the ARC seal,
when configured, comes after it and covers it in turn). Which mail is signed and what happens
to signatures already on it is in ``config/dkim_sign.py``; the signing in
``senderauth/dkimsign.py``.

A message that cannot be signed (no usable From, a key dkimpy refuses) is logged and goes on
unsigned: a transform never refuses or loses mail. A message the verdict drops or refuses is
not signed.
"""

from __future__ import annotations

import logging
from email.utils import getaddresses

from edgeward.config.dkim_sign import DkimSignConfig
from edgeward.filters.rules.conditions import direction_of
from edgeward.filters.transforms.base import Accepted
from edgeward.headers import parse_headers
from edgeward.senderauth.dkimsign import DkimSignError, sign
from edgeward.types import Action

__all__ = ["DkimSign", "from_domain"]

log = logging.getLogger("edgeward.transforms")


def from_domain(data: bytes) -> str | None:
    """The domain of the single From address, or None (none, several, or not an address)."""
    values = parse_headers(data).get_all("From")
    if len(values) != 1:
        return None
    addresses = [a for _, a in getaddresses(values) if "@" in a]
    if len(addresses) != 1:
        return None
    return addresses[0].rpartition("@")[2].strip().lower() or None


class DkimSign:
    """Signs outbound mail of the configured domains (see the module docstring)."""

    name = "dkim-sign"

    def __init__(self, cfg: DkimSignConfig, key: bytes) -> None:
        self.cfg = cfg
        self.key = key

    def wanted(self, accepted: Accepted) -> bool:
        """Whether ``accepted`` may be signed (outbound and accepted), before reading its From."""
        if accepted.verdict.action is Action.DISCARD or accepted.verdict.refused:
            return False
        return direction_of(accepted.info) == "outbound"

    def apply(self, data: bytes, accepted: Accepted) -> bytes:
        if accepted.verdict.action is Action.DISCARD or accepted.verdict.refused:
            return data
        if direction_of(accepted.info) != "outbound":
            return data
        domain = from_domain(data)
        signer = self.cfg.signing_domain(domain) if domain else None
        if signer is None:
            return data
        try:
            return sign(
                data, selector=self.cfg.selector, domain=signer, key=self.key, headers=self.cfg.headers
            )
        except DkimSignError as exc:
            log.error("message %s: not DKIM-signed for %s: %s", accepted.msg_id, signer, exc)
            return data
