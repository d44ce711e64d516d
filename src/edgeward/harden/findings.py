"""The registry of ``harden analyse`` findings: every id, its severity, why it matters, the fix.

Ids are stable (``EW-<AREA>-<NNN>``) so a site can track, suppress or script on them across
releases; an id is never reused for another meaning. Areas: NET (sockets, firewall), KRN
(kernel settings), SVC (running services), FILE (owners and modes), USR (the service user),
CFG (the gateway's configuration as a whole), AUTH, TLS, FLT (content filter and scanners)
and DNS (what the world sees of the accepted domains).

A :class:`Finding` pairs an id with what was found on this host; the rest comes from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["REGISTRY", "Finding", "Rule", "Severity"]

Severity = Literal["high", "medium", "low"]


@dataclass(frozen=True)
class Rule:
    severity: Severity
    title: str
    why: str
    fix: str


REGISTRY: dict[str, Rule] = {
    "EW-NET-001": Rule("high", "a port listens beyond loopback that the role does not open",
        "every listener is attack surface; one the role does not need was probably forgotten",
        "stop the service or bind it to 127.0.0.1; or add the port to the template if it is needed"),
    "EW-NET-002": Rule("high", "a local-only port (clamd, Redis, control, metrics) listens beyond loopback",
        "these speak unauthenticated protocols meant for this host only",
        "bind it to 127.0.0.1/::1 in that service's configuration"),
    "EW-NET-003": Rule("low", "a port the role needs is not listening",
        "the role cannot work as the template describes", "check the receive connectors' bindings"),
    "EW-NET-010": Rule("high", "inbound traffic is not filtered",
        "without a default-drop inbound policy every listener is reachable from everywhere",
        "edgeward harden apply --template ROLE (adds table inet edgeward)"),
    "EW-NET-011": Rule("medium", "the edgeward firewall table does not match the template",
        "ports were opened or closed by hand since the template was applied",
        "edgeward harden apply --template ROLE"),
    "EW-KRN-001": Rule("medium", "SYN cookies are off",
        "a SYN flood fills the listen backlog of port 25", "sysctl net.ipv4.tcp_syncookies=1"),
    "EW-KRN-002": Rule("medium", "reverse-path filtering is off",
        "spoofed source addresses are accepted, defeating address-based relay rights",
        "sysctl net.ipv4.conf.all.rp_filter=1"),
    "EW-KRN-003": Rule("medium", "ICMP redirects are accepted or sent",
        "a redirect lets a host on the path reroute this host's traffic",
        "sysctl net.ipv4.conf.all.accept_redirects=0 (and default, ipv6, send_redirects)"),
    "EW-KRN-004": Rule("medium", "source-routed packets are accepted",
        "source routing lets a sender choose the path and bypass filters",
        "sysctl net.ipv4.conf.all.accept_source_route=0 (and ipv6)"),
    "EW-KRN-005": Rule("low", "kernel pointers are visible to users",
        "addresses in /proc help an attacker defeat KASLR", "sysctl kernel.kptr_restrict=2"),
    "EW-KRN-006": Rule("low", "the kernel log is readable by every user",
        "dmesg leaks addresses and hardware details", "sysctl kernel.dmesg_restrict=1"),
    "EW-KRN-007": Rule("medium", "any process may ptrace another of the same user",
        "a compromised process of the service user could read the other's memory (keys, passwords)",
        "sysctl kernel.yama.ptrace_scope=1 (or higher)"),
    "EW-KRN-008": Rule("medium", "links, FIFOs or files in sticky folders are not protected",
        "a local user can trick a privileged process through /tmp symlinks or hard links",
        "sysctl fs.protected_symlinks=1, protected_hardlinks=1, protected_fifos=2, protected_regular=2"),
    "EW-KRN-009": Rule("low", "another kernel setting differs from the template",
        "the template's value is the reviewed one", "edgeward harden apply --template ROLE"),
    "EW-SVC-001": Rule("medium", "a running service is not part of the role",
        "services the role does not need add attack surface and patch work",
        "systemctl disable --now UNIT, or add it to the template's services_allowed"),
    "EW-SVC-002": Rule("high", "a service the role disables is running",
        "the template names it as unsafe on a mail gateway (a second MTA, discovery, file sharing)",
        "systemctl disable --now UNIT (harden apply does this)"),
    "EW-SVC-003": Rule("low", "the hardened edgeward.service is missing or differs from the shipped one",
        "without it the gateway runs without the unit's sandbox (read-only system, no capabilities)",
        "edgeward install-service; review local changes with systemd-analyze security edgeward.service"),
    "EW-FILE-001": Rule("high", "a file or folder has permissions beyond the template",
        "others could read keys, mail or passwords, or change the configuration",
        "chmod to the template's mode (harden apply does this)"),
    "EW-FILE-002": Rule("medium", "a file or folder has the wrong owner or group",
        "the service user could rewrite its own configuration, or cannot read what it needs",
        "chown as the template says (harden apply does this)"),
    "EW-USR-001": Rule("high", "the service user has a login shell",
        "a compromised gateway process, or a guessed password, gets an interactive shell",
        "usermod -s /usr/sbin/nologin edgeward"),
    "EW-USR-002": Rule("medium", "the service user has a password",
        "a system account must not be able to log in at all", "passwd -l edgeward"),
    "EW-USR-003": Rule("high", "the service user is missing or is root",
        "started as root, the gateway refuses to run, or would run privileged",
        "edgeward install-service (creates the system user)"),
    "EW-CFG-000": Rule("high", "the configuration cannot be loaded",
        "the gateway will not start with it", "edgeward config check -c FILE shows the error"),
    "EW-CFG-001": Rule("high", "the configuration makes an open relay",
        "an open relay is found and abused within hours; the site's domains end up on block lists",
        "grant relay only to your own servers' ranges; see edgeward config check"),
    "EW-CFG-002": Rule("medium", "config check warns about a setting",
        "legal but weaker than it should be", "see the text; edgeward config check explains each"),
    "EW-CFG-003": Rule("high", "relay is granted to public address ranges",
        "the role allows relay for internal ranges only", "list only internal ranges with relay"),
    "EW-AUTH-001": Rule("high", "AUTH is offered before TLS",
        "passwords cross the network in clear text", "set auth_without_tls = false"),
    "EW-AUTH-002": Rule("high", "a submission connector does not require AUTH",
        "port 587/465 without AUTH is a relay for anyone who finds it (RFC 6409 requires AUTH)",
        "set require_auth = true on that connector"),
    "EW-AUTH-003": Rule("medium", "protocol logging is on for a connector with AUTH",
        "protocol logs of AUTH sessions hold credentials, encoded but not encrypted",
        "set protocol_log = false on that connector, or restrict the log folder"),
    "EW-AUTH-004": Rule("high", "the role needs submission and no connector offers AUTH over TLS",
        "users cannot submit mail as the role intends", "add a 587 connector with require_auth"),
    "EW-TLS-001": Rule("high", "TLS is off on a connector that serves the internet",
        "mail and its metadata cross the internet in clear text", "set tls = true"),
    "EW-TLS-002": Rule("medium", "the internet connector presents a self-signed certificate",
        "senders that verify (MTA-STS, DANE) refuse to deliver", "edgeward cert request / import"),
    "EW-TLS-003": Rule("high", "a certificate in use expires soon or has expired",
        "senders that verify refuse delivery once it expires", "edgeward cert renew"),
    "EW-TLS-004": Rule("medium", "outbound TLS is weaker than recipients can require",
        "without MTA-STS or DANE a man in the middle can strip STARTTLS, even to a domain that asks for TLS",
        "set mta_sts = true on the send connector (and dane, with a local validating resolver)"),
    "EW-TLS-005": Rule("medium", "DANE trusts a resolver that is not on this host",
        "the DNSSEC flag can be forged on the path to a remote resolver",
        "run a validating resolver (unbound) on this host and list 127.0.0.1 in dns.servers"),
    "EW-FLT-001": Rule("high", "the content filter is off",
        "the role requires spam filtering", "set agents.content_filter.enabled = true"),
    "EW-FLT-002": Rule("high", "agents run observe-only",
        "no verdict (spam, virus, relay control) is enforced", "set agents.observe_only = false"),
    "EW-FLT-003": Rule("high", "virus scanning is off",
        "the role requires a virus scanner", "set antivirus.enabled = true (clamd)"),
    "EW-FLT-004": Rule("medium", "virus signatures are stale",
        "new malware goes undetected", "edgeward av update; check freshclam and the mirror"),
    "EW-FLT-005": Rule("medium", "mail is accepted unscanned when the scanner is down",
        "an attacker who overloads clamd gets malware through", "antivirus.on_unavailable = 'tempfail'"),
    "EW-DIR-001": Rule("medium", "the directory replica is missing or older than directory.max_age",
        "recipients added or removed in the directory since are answered wrongly (550 5.1.1 or accepted)",
        "edgeward directory sync (or push from the inside host); check its timer and the directory"),
    "EW-DNS-001": Rule("medium", "an accepted domain's MX does not name this gateway",
        "mail reaches the domain some other way, bypassing the gateway",
        "publish MX records naming server.hostname"),
    "EW-DNS-002": Rule("medium", "an accepted domain publishes no SPF record",
        "anyone can send as the domain and receivers cannot tell", "publish v=spf1 ... -all"),
    "EW-DNS-003": Rule("medium", "an accepted domain publishes no DMARC record",
        "receivers have no policy for mail failing SPF and DKIM", "publish _dmarc TXT v=DMARC1"),
    "EW-DNS-004": Rule("low", "an accepted domain publishes no MTA-STS record",
        "senders cannot require TLS to it", "publish _mta-sts TXT and the policy file"),
    "EW-DNS-005": Rule("low", "an accepted domain publishes no TLS-RPT record",
        "you hear nothing of senders' TLS failures", "publish _smtp._tls TXT v=TLSRPTv1"),
    "EW-DNS-006": Rule("medium", "the banner name does not resolve back to itself",
        "receivers penalise mail from hosts without matching forward and reverse DNS",
        "set a PTR record for the address to server.hostname and an A/AAAA record back"),
}  # fmt: skip


@dataclass(frozen=True)
class Finding:
    """One finding on this host: the rule's id and what was found."""

    id: str
    found: str

    @property
    def rule(self) -> Rule:
        return REGISTRY[self.id]

    def as_dict(self) -> dict[str, str]:
        r = self.rule
        return {"id": self.id, "severity": r.severity, "title": r.title, "found": self.found,
                "why": r.why, "fix": r.fix}  # fmt: skip
