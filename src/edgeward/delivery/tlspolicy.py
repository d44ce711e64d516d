"""The TLS one delivery attempt needs, from every policy that has a say in it.

This module owns the precedence between the four sources of outbound TLS requirements, for
one MX host or smart host of one message:

* the send connector's ``tls`` setting (Exchange's opportunistic / required / CA-valid /
  domain-valid modes), the administrator's floor;
* REQUIRETLS (RFC 8689 §4.2.1): the sender asked that every hop be TLS with a certificate
  that is authenticated, by DANE where it applies, otherwise by PKIX and the host name, and
  that the next hop support REQUIRETLS in turn;
* DANE (RFC 7672): secure, usable TLSA records make TLS mandatory and authenticate the host
  by those records alone; a secure TLSA set with no usable record still makes TLS mandatory;
* MTA-STS (RFC 8461): an ``enforce`` policy makes TLS mandatory with a CA-valid certificate
  that names the MX host (the MX itself was already checked against the policy's list).

DANE takes precedence over MTA-STS (RFC 8461 §2). A message carrying ``TLS-Required: No``
(RFC 8689 §5) is exempt from the recipient domain's policies (DANE, MTA-STS) but not from the
connector's own setting: that is the administrator's decision, not the recipient's. The result
is never weaker than the connector's setting.

It is pure: the DNS and HTTPS lookups that feed it happen in the client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Level", "TlsPolicy", "combine", "connector_level"]

Level = Literal["none", "opportunistic", "encrypt", "verify", "verify_hostname", "dane"]
# "dane" authenticates by TLSA records instead of PKIX; it is as strict as verify_hostname.
_STRENGTH: dict[Level, int] = {
    "none": 0,
    "opportunistic": 1,
    "encrypt": 2,
    "verify": 3,
    "verify_hostname": 4,
    "dane": 4,
}
MANDATORY: frozenset[Level] = frozenset({"encrypt", "verify", "verify_hostname", "dane"})


def connector_level(setting: str) -> Level:
    """The level a send connector's ``tls`` setting stands for."""
    levels: dict[str, Level] = {
        "none": "none",
        "opportunistic": "opportunistic",
        "required": "encrypt",
        "verify": "verify",
        "verify_hostname": "verify_hostname",
    }
    return levels[setting]


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    """What an attempt must achieve before MAIL FROM, and who asked for it."""

    level: Level
    source: str  # "connector", "requiretls", "mta-sts" or "dane": named in deferral texts
    requiretls: bool = False  # the next hop must offer REQUIRETLS, and MAIL carries it

    @property
    def mandatory(self) -> bool:
        """Clear text is never acceptable: no STARTTLS or a failed handshake defers."""
        return self.level in MANDATORY


def _stronger(current: TlsPolicy, level: Level, source: str) -> TlsPolicy:
    if _STRENGTH[level] > _STRENGTH[current.level]:
        return TlsPolicy(level, source, current.requiretls)
    return current


def combine(
    connector_tls: str,
    *,
    requiretls: bool = False,
    tls_optional: bool = False,
    sts_mode: str | None = None,
    dane_state: str | None = None,
) -> TlsPolicy:
    """The policy for one host.

    ``sts_mode`` is the recipient domain's MTA-STS mode (``enforce``, ``testing``, ``none``)
    or None; ``dane_state`` is ``authenticate``, ``encrypt``, ``none`` or None (not looked up).
    """
    policy = TlsPolicy(connector_level(connector_tls), "connector", requiretls)
    if tls_optional and not requiretls:
        return policy
    if dane_state == "authenticate":
        # TLSA records replace PKIX for this host, even where the connector asked for a CA:
        # the domain owner has said which certificate or CA is right (RFC 7672 §3).
        return TlsPolicy("dane", "dane", requiretls)
    if dane_state == "encrypt":
        policy = _stronger(policy, "encrypt", "dane")
    if sts_mode == "enforce":
        policy = _stronger(policy, "verify_hostname", "mta-sts")
    if requiretls:
        policy = _stronger(policy, "verify_hostname", "requiretls")
    return policy
