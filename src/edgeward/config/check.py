"""Checks of a valid configuration for combinations that are legal but unsafe.

Validation (``schema``) rejects what cannot work; this audit warns about what works and is
dangerous, so ``edgeward config check`` can flag it before it reaches production.
"""

from __future__ import annotations

import ipaddress

from edgeward.config.schema import Config


def _public(ranges: tuple[str, ...]) -> bool:
    return any(ipaddress.ip_network(r, strict=False).is_global or r in ("0.0.0.0/0", "::/0") for r in ranges)


def audit(config: Config) -> list[str]:
    """One line per unsafe setting, naming the key."""
    out: list[str] = []
    for i, rc in enumerate(config.receive_connectors):
        key = f"receive_connectors[{i}] ({rc.name})"
        if "relay" in rc.permissions and _public(rc.remote_ranges):
            out.append(f"{key}: relay permission for public address ranges makes an open relay")
        if not rc.tls and _public(rc.remote_ranges):
            out.append(f"{key}: TLS is disabled on a connector that serves the internet")
        if rc.auth_mechanisms and rc.auth_without_tls:
            out.append(f"{key}: auth_without_tls sends passwords in clear text before STARTTLS")
        if rc.auth_mechanisms and not rc.tls:
            out.append(f"{key}: AUTH is configured but TLS is off, so AUTH is never offered")
        if rc.bare_lf == "normalize":
            out.append(f"{key}: bare_lf = 'normalize' accepts mail that other servers may split differently")
        if rc.max_message_size > 100 * 1024 * 1024:
            out.append(f"{key}: max_message_size above 100 MB invites resource exhaustion")
    for i, sc in enumerate(config.send_connectors):
        key = f"send_connectors[{i}] ({sc.name})"
        if sc.auth_password_file is not None:
            path = config.resolve(sc.auth_password_file)
            if path.exists() and path.stat().st_mode & 0o077:
                out.append(f"{key}: {path} is readable by others; make it mode 0600")
        if sc.tls == "none" and any(a.domain == "*" for a in sc.address_spaces):
            out.append(f"{key}: TLS is disabled for mail to the whole internet")
        if sc.dane and not config.dns.servers:
            out.append(
                f"{key}: dane trusts the DNSSEC flag of the resolvers in /etc/resolv.conf; list a validating"
                " resolver on this host in dns.servers"
            )
        if sc.dane and any(not ipaddress.ip_address(s).is_loopback for s in config.dns.servers):
            out.append(f"{key}: dane trusts the DNSSEC flag of a resolver reached over the network")
        if sc.dns_routing and sc.tls == "none" and (sc.mta_sts or sc.dane):
            out.append(f"{key}: tls = 'none' still sends in clear to domains without MTA-STS or DANE")
    if not config.accepted_domains:
        out.append("accepted_domains is empty: no mail from the internet will be accepted")
    if not config.queue.fsync:
        out.append("queue.fsync = false: accepted mail can be lost in a power failure")
    if config.agents.observe_only:
        out.append("agents.observe_only = true: no agent verdict is enforced")
    return out
