"""Checks of a valid configuration for combinations that are legal but unsafe.

Validation (``schema``) rejects what cannot work; this audit finds what works and is dangerous,
so ``edgeward config check`` can flag it before it reaches production. Each finding has a
severity:

- **error**: the gateway would be an open relay (relay rights for address ranges wider than any
  one organisation holds, agent verdicts not enforced on a connector that serves the internet,
  or an accepted domain such as ``*.com`` that takes mail for strangers' domains).
  ``config check`` exits 1 and ``serve`` (and SIGHUP) refuse such a configuration, because an
  open relay is abused within hours of being found.
- **warning**: weaker than it should be, with legitimate uses (a public range that may relay,
  TLS off, AUTH in clear text, no fsync, ...). Reported, never refused.

Security: a range is judged by the addresses it holds, not by how it is written: IPv4-mapped
IPv6 ranges (``::ffff:0:0/96``) count as the IPv4 range they map, and a split such as
``0.0.0.0/1`` plus ``128.0.0.0/1`` is as open as ``0.0.0.0/0``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from edgeward.config.directory import audit_directory
from edgeward.config.policy_store import audit_policy_store
from edgeward.config.schema import Config, ReceiveConnectorConfig
from edgeward.config.web import split_listen

Severity = Literal["error", "warning"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Address blocks that are never reached from the internet; a range inside them is internal.
_INTERNAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
        "100.64.0.0/10", "::1/128", "fc00::/7", "fe80::/10",
    )
)  # fmt: skip
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
# Wider than the largest block one organisation is allotted (an IPv4 /8, an IPv6 /32): relay
# for such a range is relay for strangers.
_WIDEST_PREFIX = {4: 8, 6: 32}


@dataclass(frozen=True)
class Problem:
    """One finding of the audit: its severity, the key it is about and what is wrong."""

    severity: Severity
    key: str
    text: str

    def __str__(self) -> str:
        return f"{self.key}: {self.text}" if self.key else self.text


def _network(text: str) -> Network:
    net = ipaddress.ip_network(text, strict=False)
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.subnet_of(_MAPPED):
        mapped = net.network_address.ipv4_mapped
        assert mapped is not None  # inside ::ffff:0:0/96
        return ipaddress.IPv4Network((mapped, net.prefixlen - 96))
    return net


def _holds_public(net: Network) -> bool:
    return not any(net.version == block.version and net.subnet_of(block) for block in _INTERNAL)  # type: ignore[arg-type]


def _internet_wide(net: Network) -> bool:
    return _holds_public(net) and net.prefixlen < _WIDEST_PREFIX[net.version]


def internet_wide(ranges: Iterable[str]) -> list[str]:
    """The ranges among ``ranges`` that relay permission must never be given to."""
    return [r for r in ranges if _internet_wide(_network(r))]


def serves_public(connector: ReceiveConnectorConfig) -> bool:
    """True when the connector's remote ranges hold addresses reachable from the internet."""
    return any(_holds_public(_network(r)) for r in connector.remote_ranges)


def _relay(key: str, rc: ReceiveConnectorConfig) -> list[Problem]:
    if "relay" not in rc.permissions:
        return []
    wide = internet_wide(rc.remote_ranges)
    if wide:
        return [
            Problem(
                "error",
                key,
                f"relay permission for {', '.join(wide)} makes an open relay: anyone on the internet can"
                " send mail anywhere through this gateway; list only your own servers' ranges",
            )
        ]
    public = [r for r in rc.remote_ranges if _holds_public(_network(r))]
    if public:
        return [
            Problem(
                "warning",
                key,
                f"relay permission for public range(s) {', '.join(public)}: every host there may relay;"
                " make sure they are all your own servers",
            )
        ]
    return []


def audit(config: Config) -> list[Problem]:
    """Every unsafe setting, errors first, each naming its key."""
    out: list[Problem] = []

    def warn(key: str, text: str) -> None:
        out.append(Problem("warning", key, text))

    for i, rc in enumerate(config.receive_connectors):
        key = f"receive_connectors[{i}] ({rc.name})"
        public = serves_public(rc)
        out += _relay(key, rc)
        if not rc.tls and public:
            warn(key, "TLS is disabled on a connector that serves the internet")
        if rc.auth_mechanisms and rc.auth_without_tls:
            warn(key, "auth_without_tls sends passwords in clear text before STARTTLS")
        if rc.auth_mechanisms and not rc.tls:
            warn(key, "AUTH is configured but TLS is off, so AUTH is never offered")
        if rc.bare_lf == "normalize":
            warn(key, "bare_lf = 'normalize' accepts mail that other servers may split differently")
        if rc.max_message_size > 100 * 1024 * 1024:
            warn(key, "max_message_size above 100 MB invites resource exhaustion")
        if rc.auth_mechanisms and not rc.sender_login_match:
            warn(key, "sender_login_match = false lets every logged-in user send as any address")
    for i, sc in enumerate(config.send_connectors):
        key = f"send_connectors[{i}] ({sc.name})"
        if sc.auth_password_file is not None:
            path = config.resolve(sc.auth_password_file)
            if path.exists() and path.stat().st_mode & 0o077:
                warn(key, f"{path} is readable by others; make it mode 0600")
        if sc.tls == "none" and any(a.domain == "*" for a in sc.address_spaces):
            warn(key, "TLS is disabled for mail to the whole internet")
        if sc.dane and not config.dns.servers:
            warn(
                key,
                "dane trusts the DNSSEC flag of the resolvers in /etc/resolv.conf; list a validating"
                " resolver on this host in dns.servers",
            )
        if sc.dane and any(not ipaddress.ip_address(s).is_loopback for s in config.dns.servers):
            warn(key, "dane trusts the DNSSEC flag of a resolver reached over the network")
        if sc.dns_routing and sc.tls == "none" and (sc.mta_sts or sc.dane):
            warn(key, "tls = 'none' still sends in clear to domains without MTA-STS or DANE")
    if config.agents.from_header == "off":
        warn("agents.from_header", "'off' delivers mail without exactly one well-formed From field")
    if config.metrics.listen and not _network(split_listen(config.metrics.listen)[0]).is_loopback:
        readers = [n for n in config.web.metrics_allow if _holds_public(_network(n))]
        if readers:
            warn("metrics.listen", f"plain-HTTP metrics readable from public range(s) {', '.join(readers)}"
                 " (web.metrics_allow); keep them to your monitoring hosts")  # fmt: skip
    for i, domain in enumerate(config.accepted_domains):
        # Mail to an accepted domain is taken from anyone; a wildcard over a whole top-level
        # domain (or "*") accepts mail for strangers' domains: an open relay by another name.
        if domain == "*" or (domain.startswith("*.") and "." not in domain[2:]):
            out.append(
                Problem(
                    "error",
                    f"accepted_domains[{i}]",
                    f"{domain!r} accepts mail for every domain under it from anyone (an open relay)",
                )
            )
    if not config.accepted_domains:
        warn("accepted_domains", "empty: no mail from the internet will be accepted")
    if not config.queue.fsync:
        warn("queue.fsync", "false: accepted mail can be lost in a power failure")
    host, _port = split_listen(config.web.listen)
    if not ipaddress.ip_address(host).is_loopback and not config.web.require_totp_for_admins:
        warn("web.listen", f"the web console listens beyond loopback ({config.web.listen}) without"
             " require_totp_for_admins: a password alone opens it")  # fmt: skip
    if config.agents.observe_only:
        # Observe-only covers relay-control too: its 550 "Unable to relay" is only logged.
        exposed = [rc.name for rc in config.receive_connectors if serves_public(rc)]
        if exposed:
            out.append(
                Problem(
                    "error",
                    "agents.observe_only",
                    "true: relay-control is not enforced either, so connector(s)"
                    f" {', '.join(exposed)} relay for anyone on the internet (an open relay)",
                )
            )
        else:
            warn("agents.observe_only", "true: no agent verdict is enforced")
    if config.dkim_sign.enabled:
        key_file = config.resolve(config.dkim_sign.key_file)
        if not key_file.exists():
            warn("dkim_sign.key_file", f"{key_file} does not exist: outbound mail goes unsigned"
                 " until 'edgeward dkim keygen' makes it")  # fmt: skip
        elif key_file.stat().st_mode & 0o077:
            warn("dkim_sign.key_file", f"{key_file} is readable by others; make it mode 0600")
    for text in audit_policy_store(config.policy_store, config.resolve):
        warn("policy_store", text)
    for text in audit_directory(config.directory, config.resolve):
        warn("directory", text)
    return sorted(out, key=lambda p: p.severity != "error")


def errors(problems: list[Problem]) -> list[Problem]:
    """The problems that make a configuration unfit to serve."""
    return [p for p in problems if p.severity == "error"]
