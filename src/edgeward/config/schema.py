"""The configuration schema: frozen sections with documented, secure defaults.

Every field has a default that is safe on an internet-facing host, and a description that
``edgeward config show --defaults`` prints. Defaults follow Exchange 2007's Edge Transport where
it has one (see the reference notes in docs/architecture.md), and are stricter where Exchange's
were not secure.

Security: no default grants relay. The only relay right is ``relay`` in a receive connector's
``permissions``, which the shipped configuration gives to loopback alone.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import string
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from edgeward.config.antivirus import AntivirusConfig
from edgeward.config.attachments import AttachmentsConfig
from edgeward.config.directory import DirectoryConfig
from edgeward.config.dkim_sign import DkimSignConfig
from edgeward.config.metrics import MetricsConfig
from edgeward.config.notify import NotifyConfig
from edgeward.config.policy_store import PolicyStoreConfig
from edgeward.config.quarantine import QuarantineConfig
from edgeward.config.rules import TransportRule, check_rules
from edgeward.config.scores import SCORE_TABLE, unknown_names
from edgeward.config.web import WebConfig

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|k|mb|m|gb|g)?\s*$", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_SIZES = {"b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3, None: 1}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``"90s"``, ``"10m"``, ``"4h"``, ``"2d"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 60, '10m', '4h' or '2d'")
    seconds: float | None = None
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer past float range; pydantic would pass it on raw
            seconds = None
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    # TOML has inf and nan: an infinite timeout would make asyncio.timeout and sleep raise at
    # the first use, far from the setting that caused it.
    if seconds is None or not math.isfinite(seconds):
        raise ValueError("expected a duration such as 60, '10m', '4h' or '2d'")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from a number or a string such as ``"10MB"`` or ``"64KB"`` (binary units)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 10485760, '64KB' or '10MB'")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (m := _SIZE.match(value)):
        unit = m.group(2).lower() if m.group(2) else None
        number = float(m.group(1)) * _SIZES[unit]
        if math.isinf(number):  # "9" * 400: int(inf) would raise OverflowError, which pydantic passes on
            raise ValueError("expected a size such as 10485760, '64KB' or '10MB'")
        return int(number)
    raise ValueError("expected a size such as 10485760, '64KB' or '10MB'")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
Size = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]

_DOMAIN = re.compile(
    r"^(\*\.)?([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.?$"
)


def _domain(value: object) -> str:
    if not isinstance(value, str):  # a BeforeValidator sees raw TOML; AttributeError is not reported
        raise ValueError(f"expected a domain name, found {type(value).__name__}")
    value = value.strip().lower().rstrip(".")
    if value == "*":
        return value
    try:
        value = value.encode("idna").decode("ascii") if not value.isascii() else value
    except UnicodeError as exc:
        raise ValueError(f"not a domain name: {value!r}") from exc
    if not _DOMAIN.match(value) or len(value) > 253:
        raise ValueError(f"not a domain name: {value!r}")
    return value


def split_hostport(value: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 literal -> (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if value.count(":") > 1:
        return value, default_port
    host, sep, port = value.partition(":")
    return host, int(port) if sep else default_port


Right = Literal["submit", "relay", "bypass_antispam", "send_as_accepted", "keep_internal_headers"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


MAX_RECEIVERS = 64
AUTO_RECEIVERS_CAP = 8


class ServerConfig(_Section):
    hostname: str = Field(
        "localhost.localdomain", description="FQDN used in the banner, EHLO and Received headers"
    )
    data_dir: Path = Field(
        Path("."), description="Root of spool, state, logs and TLS files (relative to the config file)"
    )
    user: str = Field(
        "edgeward", description="Unprivileged user to run as after binding ports when started as root"
    )
    group: str = Field("", description="Group to run as; empty means the user's primary group")
    shutdown_grace: Duration = Field(
        30.0, description="How long SIGTERM waits for sessions and deliveries to finish"
    )
    delivery_process: bool = Field(
        True, description="Deliver from a second process, so receiving and delivering each get a core"
    )
    receivers: Literal["auto"] | Annotated[int, Field(ge=1, le=MAX_RECEIVERS)] = Field(
        "auto",
        description=(
            "Receiving processes sharing the listening sockets (with delivery_process); auto: one per"
            " core this process may run on less the delivery process's, at least 1, at most 8"
        ),
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto", description="Event loop of serve: auto takes uvloop where installed, else asyncio's own"
    )
    max_bytes_in_flight: Size = Field(
        256 * 1024 * 1024,
        description=(
            "Message bytes all sessions may hold at once (declared SIZE or max_message_size from MAIL,"
            " actual bytes in DATA); beyond it MAIL or the message gets 452 4.3.1; 0: no cap"
        ),
    )

    def receiver_count(self) -> int:
        """How many receiving processes ``receivers`` asks for on this host."""
        if self.receivers != "auto":
            return self.receivers
        # The delivery process keeps about a core busy under load: on 2 cores a second receiving
        # process only adds CPU per message (bench/README.md), from 3 on the rest are sessions'.
        return max(1, min(AUTO_RECEIVERS_CAP, len(os.sched_getaffinity(0)) - 1))


class TlsConfig(_Section):
    store: Path = Field(
        Path("tls"),
        description="Certificate store; 'edgeward cert' manages it, a self-signed one is made at first start",
    )
    handshake_timeout: Duration = Field(30.0, description="Time allowed for a TLS handshake")


class DnsConfig(_Section):
    servers: tuple[str, ...] = Field(
        (),
        description=(
            "Resolver addresses; empty means /etc/resolv.conf. DANE trusts the DNSSEC 'authenticated data'"
            " flag of these servers, so for DANE list a validating resolver on this host or a trusted path"
        ),
    )
    port: int = Field(53, ge=1, le=65535, description="Port of the resolvers")
    timeout: Duration = Field(5.0, description="Time allowed for one DNS query")


class MtaStsConfig(_Section):
    https_port: int = Field(
        443, ge=1, le=65535, description="Port of policy hosts (RFC 8461 says 443; others are for labs)"
    )
    ca_file: Path | None = Field(
        None, description="Trust anchors for policy hosts and MX certificates; empty: the system store"
    )
    fetch_timeout: Duration = Field(10.0, description="Time allowed to fetch one policy")


class ReceiveConnectorConfig(_Section):
    name: str = Field(description="Connector name, used in logs and tracking")
    bindings: tuple[str, ...] = Field(("0.0.0.0:25",), description="ADDR:PORT pairs to listen on")
    remote_ranges: tuple[str, ...] = Field(
        ("0.0.0.0/0", "::/0"),
        description="Client address ranges this connector serves; the most specific wins",
    )
    fqdn: str = Field("", description="Name in banner and EHLO; empty means server.hostname")
    banner: str = Field("", description="Text after '220 <fqdn>'; empty means 'ESMTP ready'")
    permissions: tuple[Right, ...] = Field(
        ("submit",),
        description=(
            "Rights every client of this connector holds: submit (mail to accepted domains), relay (to"
            " any domain), bypass_antispam, send_as_accepted (an accepted domain as sender),"
            " keep_internal_headers"
        ),
    )
    permission_groups: tuple[Literal["anonymous", "partners", "servers", "users"], ...] = Field(
        ("anonymous",),
        description=(
            "Groups whose rights a client gains once it proves membership: users by AUTH, partners by a"
            " domain-secure certificate, servers by a trusted client certificate"
        ),
    )
    auth_mechanisms: tuple[Literal["PLAIN", "LOGIN"], ...] = Field(
        (),
        description="Basic authentication offered after STARTTLS (or on implicit TLS); needs group 'users'",
    )
    auth_without_tls: bool = Field(
        False, description="Offer AUTH before TLS (insecure; flagged by config check)"
    )
    require_auth: bool = Field(False, description="Refuse MAIL until the client authenticates (submission)")
    sender_login_match: bool = Field(
        True,
        description=(
            "Authenticated clients may use only their account's addresses as sender (553 5.7.1 otherwise;"
            " Postfix reject_sender_login_mismatch)"
        ),
    )
    auth_null_sender: bool = Field(False, description="Allow the null sender <> from authenticated clients")
    implicit_tls: bool = Field(
        False, description="TLS from the first byte (port 465, RFC 8314) instead of STARTTLS"
    )
    max_logon_failures: int = Field(
        10, ge=1, le=1000, description="Failed AUTH from one address (IPv6: its /64) before it is locked out"
    )
    max_account_logon_failures: int = Field(
        5, ge=1, le=1000, description="Failed AUTH for one account, from any address, before it is locked"
    )
    message_rate_limit: int = Field(
        0,
        ge=0,
        description="Messages one client address may start per minute; 0: no cap (Exchange 2013+: 600)",
    )
    auth_tarpit_interval: Duration = Field(5.0, description="Delay before answering a failed AUTH")
    auth_lockout: Duration = Field(
        900.0, description="How long an address or account that failed too often may not AUTH"
    )
    client_ca: Path | None = Field(
        None, description="CA bundle that client certificates must chain to (domain security, server auth)"
    )
    domain_secure_partners: tuple[Annotated[str, BeforeValidator(_domain)], ...] = Field(
        (), description="Partner domains that must present a certificate naming them (mutual TLS)"
    )
    trusted_server_names: tuple[str, ...] = Field(
        (), description="Names in client certificates (from client_ca) that gain the servers group"
    )
    tls: bool = Field(True, description="Offer STARTTLS")
    require_tls: bool = Field(False, description="Refuse MAIL before STARTTLS")
    max_message_size: Size = Field(
        10 * 1024 * 1024, description="Largest message accepted (announced in SIZE)"
    )
    max_recipients: int = Field(200, ge=1, le=100000, description="Recipients per message")
    max_header_size: Size = Field(64 * 1024, description="Largest header block")
    max_hop_count: int = Field(30, ge=1, le=500, description="Received headers before a loop is assumed")
    max_connections: int = Field(5000, ge=1, description="Concurrent connections on this connector")
    max_connections_per_source: int = Field(100, ge=1, description="Concurrent connections per client IP")
    max_connections_per_network: int = Field(
        200, ge=1, description="Concurrent connections per client /24 (IPv4) or /64 (IPv6)"
    )
    stress_threshold: float = Field(
        0.8,
        gt=0,
        le=1,
        description=(
            "Share of max_connections at which the connector is under stress: shorter idle timeout, error"
            " limit stress_max_protocol_errors, and a full connector closes idle slot holders for newcomers"
        ),
    )
    stress_idle_timeout: Duration = Field(10.0, description="Idle and command timeout under stress")
    stress_max_protocol_errors: int = Field(
        1, ge=1, description="Bad commands, and junk commands between messages, allowed under stress"
    )
    max_junk_commands: int = Field(
        100, ge=1, description="NOOP, RSET, VRFY and HELP between two messages before 421 4.7.0"
    )
    min_data_rate: Size = Field(
        500, description="Bytes per second a client must average in DATA/BDAT (421 4.4.2); 0: no minimum"
    )
    min_data_rate_grace: Duration = Field(
        30.0, description="Seconds of DATA/BDAT before min_data_rate is enforced"
    )
    connection_timeout: Duration = Field(300.0, description="Longest a session may last")
    idle_timeout: Duration = Field(60.0, description="Longest wait for the next command")
    data_timeout: Duration = Field(180.0, description="Longest wait for more DATA bytes")
    max_protocol_errors: int = Field(5, ge=1, description="Bad commands before the session is closed")
    max_commands: int = Field(1000, ge=10, description="Commands in one session before it is closed")
    tarpit_interval: Duration = Field(5.0, description="Delay before 5xx replies to unauthenticated clients")
    greet_pause: Duration = Field(
        0.0,
        description=(
            "Seconds to wait before the banner; a client that talks first is pregreeting (a protocol"
            " finding). 0: off, since every honest client waits too; 1-3 on an internet connector"
        ),
    )
    bare_lf: Literal["reject", "normalize"] = Field(
        "reject", description="Bare LF or CR in DATA: reject the message, or normalise it to CRLF"
    )
    protocol_log: bool = Field(False, description="Write a protocol log for this connector")

    @field_validator("remote_ranges")
    @classmethod
    def _ranges(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for r in v:
            ipaddress.ip_network(r, strict=False)
        return v

    @field_validator("bindings")
    @classmethod
    def _bindings(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for b in v:
            host, port = split_hostport(b, 25)
            ipaddress.ip_address(host)
            if not 0 <= port <= 65535:
                raise ValueError(f"port out of range in {b!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ReceiveConnectorConfig:
        if self.idle_timeout > self.connection_timeout:
            raise ValueError("idle_timeout must not exceed connection_timeout")
        if self.auth_mechanisms and "users" not in self.permission_groups:
            raise ValueError("auth_mechanisms needs 'users' in permission_groups")
        if self.require_auth and not self.auth_mechanisms:
            raise ValueError("require_auth needs auth_mechanisms")
        if (self.domain_secure_partners or self.trusted_server_names) and self.client_ca is None:
            raise ValueError("domain_secure_partners and trusted_server_names need client_ca")
        if self.domain_secure_partners and "partners" not in self.permission_groups:
            raise ValueError("domain_secure_partners needs 'partners' in permission_groups")
        if self.trusted_server_names and "servers" not in self.permission_groups:
            raise ValueError("trusted_server_names needs 'servers' in permission_groups")
        if (self.implicit_tls or self.domain_secure_partners) and not self.tls:
            raise ValueError("implicit_tls and domain security need tls = true")
        return self


class AddressSpace(_Section):
    domain: Annotated[str, BeforeValidator(_domain)] = Field(
        description="'*', 'example.org' or '*.example.org'"
    )
    cost: int = Field(1, ge=1, le=100, description="Lower cost wins among matching connectors")


def _address_space(value: object) -> object:
    # Exchange writes address spaces as "domain;cost"; accept that as well as tables.
    if isinstance(value, str):
        domain, _, cost = value.partition(";")
        return {"domain": domain, "cost": int(cost) if cost else 1}
    return value


class SendConnectorConfig(_Section):
    name: str = Field(description="Connector name, used in logs and tracking")
    address_spaces: tuple[Annotated[AddressSpace, BeforeValidator(_address_space)], ...] = Field(
        description="Recipient domains this connector routes"
    )
    smart_hosts: tuple[str, ...] = Field((), description="HOST:PORT next hops tried in order (failover)")
    dns_routing: bool = Field(False, description="Route by DNS MX records instead of smart hosts")
    drop_dir: Path | None = Field(None, description="Deliver into this folder as .eml files instead of SMTP")
    port: int = Field(25, ge=1, le=65535, description="Port for MX routing and smart hosts without a port")
    tls: Literal["opportunistic", "required", "verify", "verify_hostname", "none"] = Field(
        "opportunistic",
        description=(
            "Outbound TLS: opportunistic (encrypt if offered), required (encryption only), verify (a CA-valid"
            " certificate), verify_hostname (CA-valid and naming the next hop), none; never clear text when"
            " required or verifying"
        ),
    )
    tls_ca_file: Path | None = Field(
        None, description="Trust anchors for verify modes; empty: the system store"
    )
    tls_client_certificate: bool = Field(
        False, description="Present this gateway's certificate (domain security, mutual TLS with partners)"
    )
    mta_sts: bool = Field(
        False,
        description="Honour the recipient domain's MTA-STS policy (RFC 8461); DNS routing only",
    )
    dane: bool = Field(
        False,
        description=(
            "Authenticate MX hosts by DNSSEC-signed TLSA records (RFC 7672); DNS routing with a validating"
            " resolver ([dns] servers) only"
        ),
    )
    source_address: str = Field("", description="Local IP address outbound connections are made from")
    auth_username: str = Field("", description="Smart-host AUTH user name (AUTH is only ever sent over TLS)")
    auth_password_file: Path | None = Field(
        None, description="File holding the smart-host password (mode 0600)"
    )
    fqdn: str = Field("", description="EHLO name; empty means server.hostname")
    max_message_size: Size = Field(
        10 * 1024 * 1024, description="Largest message sent through this connector"
    )
    connect_timeout: Duration = Field(30.0, description="TCP connect timeout")
    command_timeout: Duration = Field(300.0, description="Timeout for each command reply")
    max_connections: int = Field(20, ge=1, description="Concurrent connections per next hop")
    max_messages_per_connection: int = Field(
        20, ge=1, description="Messages sent before a connection is closed"
    )

    @model_validator(mode="after")
    def _route(self) -> SendConnectorConfig:
        chosen = sum([bool(self.smart_hosts), self.dns_routing, self.drop_dir is not None])
        if chosen != 1:
            raise ValueError("set exactly one of smart_hosts, dns_routing or drop_dir")
        if bool(self.auth_username) != (self.auth_password_file is not None):
            raise ValueError("auth_username and auth_password_file go together")
        if self.auth_username and self.tls in ("none", "opportunistic"):
            raise ValueError("smart-host AUTH needs tls = required, verify or verify_hostname")
        if (self.mta_sts or self.dane) and not self.dns_routing:
            raise ValueError("mta_sts and dane apply to MX hosts: they need dns_routing = true")
        if self.source_address:
            ipaddress.ip_address(self.source_address)
        return self


class QueueConfig(_Section):
    fsync: bool = Field(True, description="fsync spool files and folders before replying 250")
    glitch_retry_count: int = Field(4, ge=0, description="Quick retries after a failure")
    glitch_retry_interval: Duration = Field(60.0, description="Interval of the quick retries")
    transient_retry_interval: Duration = Field(600.0, description="Interval after the quick retries")
    max_retry_interval: Duration = Field(3600.0, description="Cap for the backoff interval")
    delay_notification: Duration = Field(4 * 3600.0, description="Send one delay DSN after this")
    expiration: Duration = Field(2 * 86400.0, description="Bounce a message still undelivered after this")
    poison_threshold: int = Field(
        2, ge=1, description="Delivery crashes before a message is parked as poison"
    )
    min_free_disk: Size = Field(500 * 1024 * 1024, description="Below this free space, MAIL gets 452 4.3.1")
    max_active: int = Field(200, ge=1, description="Messages in delivery at once")
    scan_interval: Duration = Field(5.0, description="How often deferred messages are checked for retry")


class LocalRecipientsConfig(_Section):
    enabled: bool = Field(False, description="Refuse recipients in accepted domains that are not listed")
    file: Path = Field(Path("recipients.txt"), description="One address (or @domain) per line")
    source: Literal["file", "directory"] = Field(
        "file", description="file (the recipients file) or directory (the replica of [directory])"
    )


class SenderFilterConfig(_Section):
    """Blocked senders at MAIL (the live list: 'edgeward antispam sender block')."""

    blocked_senders: tuple[str, ...] = Field((), max_length=800, description="Sender addresses refused")
    blocked_domains: tuple[str, ...] = Field(
        (), max_length=800, description="Sender domains refused, exactly (not their subdomains)"
    )
    blocked_domains_and_subdomains: tuple[str, ...] = Field(
        (), max_length=800, description="Sender domains refused with all their subdomains"
    )
    block_blank_sender: bool = Field(
        False, description="Refuse the blank sender <> (off: delivery reports travel with it)"
    )
    action: Literal["reject", "stamp"] = Field(
        "reject", description="reject (554 5.1.0 Sender denied) or stamp (a SENDER_BLOCKED finding, scored)"
    )
    disconnect: bool = Field(
        True,
        description="After a reject, close the connection as Exchange does (off: the client may try"
        " another sender in the same session)",
    )


class RecipientFilterConfig(_Section):
    """Blocked recipients at RCPT (the live list: 'edgeward antispam recipient block')."""

    blocked_recipients: tuple[str, ...] = Field(
        (), max_length=800, description="Recipient addresses refused with 550 5.1.1"
    )


class RateLimitsConfig(_Section):
    """Per-minute limits counted in the policy store; 0 means no limit; over one: 450 4.7.1."""

    connections_per_ip: int = Field(0, ge=0, description="Connections per minute from one client address")
    messages_per_ip: int = Field(0, ge=0, description="Messages per minute from one client address")
    messages_per_user: int = Field(0, ge=0, description="Messages per minute from one authenticated user")
    messages_per_sender_domain: int = Field(0, ge=0, description="Messages per minute from one sender domain")
    recipients_per_ip: int = Field(0, ge=0, description="Recipients per minute from one client address")
    recipients_per_user: int = Field(0, ge=0, description="Recipients per minute from one authenticated user")
    recipients_per_sender_domain: int = Field(
        0, ge=0, description="Recipients per minute from one sender domain"
    )


class ContentFilterConfig(_Section):
    enabled: bool = Field(True, description="Rate every message with a spam confidence level (SCL 0-9)")
    model: Path | None = Field(None, description="Model file; empty means the model shipped with Edgeward")
    reject_enabled: bool = Field(True, description="Reject messages at or above reject_threshold")
    reject_threshold: int = Field(
        8, ge=0, le=9, description="SCL at which content alone rejects; other findings add to a lower one"
    )
    rejection_response: str = Field(
        "Message rejected as spam by Content Filtering",
        max_length=240,
        description="Text of the 550 5.7.1 reply",
    )
    delete_enabled: bool = Field(False, description="Silently drop messages at or above delete_threshold")
    delete_threshold: int = Field(9, ge=0, le=9, description="SCL at which messages are deleted")
    quarantine_enabled: bool = Field(
        False, description="Quarantine messages at or above quarantine_threshold"
    )
    quarantine_threshold: int = Field(9, ge=0, le=9, description="SCL at which messages are quarantined")
    quarantine_retention: Duration = Field(
        30 * 86400.0,
        description="Older name of [quarantine] retention, honoured when that is not set; 0 keeps forever",
    )
    good_words: tuple[str, ...] = Field((), max_length=800, description="Phrases that make a message SCL 0")
    bad_words: tuple[str, ...] = Field((), max_length=800, description="Phrases that make a message SCL 9")
    bypassed_recipients: tuple[str, ...] = Field((), max_length=100, description="Recipients never filtered")
    bypassed_senders: tuple[str, ...] = Field((), max_length=100, description="Senders never filtered")
    bypassed_sender_domains: tuple[str, ...] = Field(
        (), max_length=100, description="Sender domains never filtered ('*.example.org' allowed)"
    )
    max_size: Size = Field(11 * 1024 * 1024, description="Larger messages are not scanned (Exchange: 11 MB)")
    learning: bool = Field(True, description="Learn from released and reported messages")
    refresh_interval: Duration = Field(
        5.0, description="How often the gateway looks for a model taught by 'spam learn' or a release"
    )


class SpfConfig(_Section):
    """The SPF agent at MAIL (RFC 7208); results are findings weighed by the score table."""

    enabled: bool = Field(True, description="Check SPF for MAIL FROM (HELO for the null sender)")
    fail_action: Literal["score", "reject"] = Field(
        "score",
        description=(
            "SPF fail: 'score' (SPF_FAIL counts towards [policy] thresholds; forwarded mail often"
            " fails SPF) or 'reject' (550 5.7.23 at MAIL, RFC 7372)"
        ),
    )
    temperror_action: Literal["stamp", "tempfail"] = Field(
        "stamp", description="SPF temperror: 'stamp' (a finding only) or 'tempfail' (451 4.4.3 at MAIL)"
    )
    time_limit: Duration = Field(20.0, description="Time allowed for one whole SPF check (RFC 7208 4.6.4)")
    check_helo: bool = Field(
        True, description="Also check the HELO/EHLO name at HELO (SPF_HELO_* findings, RFC 7208 2.3)"
    )


class DmarcConfig(_Section):
    """The sender-auth agent at end of data: DKIM, ARC and DMARC (RFC 6376, 8617, 7489)."""

    enabled: bool = Field(True, description="Verify DKIM and ARC and evaluate DMARC at end of data")
    reject_action: Literal["reject", "quarantine", "score"] = Field(
        "reject",
        description=(
            "DMARC fail under p=reject: 'reject' (550 5.7.1, the domain owner's request), 'quarantine',"
            " or 'score' (DMARC_FAIL_REJECT counts towards [policy] thresholds)"
        ),
    )
    quarantine_action: Literal["reject", "quarantine", "score"] = Field(
        "quarantine", description="DMARC fail under p=quarantine: 'quarantine', 'reject' or 'score'"
    )
    temperror_action: Literal["stamp", "tempfail"] = Field(
        "stamp", description="DMARC temperror: 'stamp' (a finding only) or 'tempfail' (451 4.4.3)"
    )


class ArcConfig(_Section):
    trusted_sealers: tuple[str, ...] = Field(
        (),
        max_length=100,
        description=(
            "Domains (ARC-Seal d=) whose passing ARC chain overrides a DMARC failure of forwarded mail"
        ),
    )
    seal_domain: str = Field(
        "", description="Seal accepted mail with an ARC set as this domain (d=); empty: off"
    )
    seal_selector: str = Field(
        "", description="Selector of the sealing key, published at <selector>._domainkey"
    )
    seal_key: Path | None = Field(None, description="PEM RSA private key for the ARC seal (RFC 8617 4.1.3)")

    @model_validator(mode="after")
    def _seal(self) -> ArcConfig:
        if bool(self.seal_domain) != bool(self.seal_selector) or bool(self.seal_domain) != bool(
            self.seal_key
        ):
            raise ValueError("seal_domain, seal_selector and seal_key are set together, or none of them")
        return self


class ProtocolAnalysisConfig(_Section):
    enabled: bool = Field(
        True, description="Report protocol misbehaviour (pregreet, pipelining ...) as findings"
    )
    errors: int = Field(3, ge=1, description="Refused commands in a session before PROTOCOL_ERRORS")
    junk_commands: int = Field(
        20, ge=1, description="NOOP, RSET, VRFY and HELP in a session before PROTOCOL_JUNK is reported"
    )
    tarpit_max: Duration = Field(
        30.0, description="Longest tarpit; each protocol finding adds one tarpit_interval up to this"
    )


class ReputationConfig(_Section):
    enabled: bool = Field(True, description="Rate client addresses SRL 0-9 (needs the policy store)")
    min_messages: int = Field(20, ge=1, description="Messages seen from an address before it is rated")
    block_threshold: int = Field(7, ge=1, le=9, description="SRL at or above which the address is blocked")
    block_time: Duration = Field(86400.0, description="How long an address at the threshold stays blocked")
    open_proxy_test: bool = Field(
        False, description="Connect back to new clients on proxy ports and try to reach this gateway"
    )
    open_proxy_http_ports: tuple[int, ...] = Field(
        (80, 3128, 8080), description="Ports tried with HTTP CONNECT"
    )
    open_proxy_socks_ports: tuple[int, ...] = Field((1080,), description="Ports tried with SOCKS5")
    open_proxy_timeout: Duration = Field(
        5.0, description="Longest the whole open-proxy test of one client may take"
    )
    open_proxy_cache: Duration = Field(
        86400.0, description="How long the open-proxy result for an address is kept"
    )
    history: Duration = Field(
        30 * 86400.0, description="Window of an address's history, from its first message"
    )


class GreylistConfig(_Section):
    enabled: bool = Field(False, description="Defer the first message of each (network, sender, recipient)")
    min_delay: Duration = Field(300.0, description="A retry sooner than this is deferred again")
    max_delay: Duration = Field(86400.0, description="A retry later than this starts over")
    pass_lifetime: Duration = Field(36 * 86400.0, description="How long a passed triplet is remembered")
    auto_allow_after: int = Field(
        5, ge=0, description="Passes from a network after which it is no longer greylisted; 0: never"
    )
    auto_allow_lifetime: Duration = Field(36 * 86400.0, description="How long a network stays auto-allowed")
    good_srl: int = Field(
        3, ge=0, le=9, description="SPF pass from an address of SRL <= this skips greylisting"
    )


# The shipped agents in pipeline order (``runtime_policy.build_agents``; a test holds the two together).
AGENT_NAMES = (
    "back-pressure", "message-rate", "rate-limits", "message-size", "sender-authority", "sender-login",
    "sender-filter", "connection-filter", "relay-control", "recipient-filter", "local-recipients",
    "safe-senders", "spf", "hop-count", "from-header", "sender-auth", "antivirus", "attachment-filter",
    "content-filter", "transport-rules", "protocol-analysis", "sender-reputation", "greylisting",
    "site-learning",
)  # fmt: skip
# Without relay-control every client may send anywhere: there is no safe reason to drop it, and
# relay rights are granted by a connector's permissions instead.
ALWAYS_ON_AGENTS = frozenset({"relay-control"})


class AgentsConfig(_Section):
    observe_only: bool = Field(False, description="Log what agents would do without acting on it")
    timeout: Duration = Field(30.0, description="Time an agent may take per stage before 451 4.3.0")
    disabled: tuple[str, ...] = Field(
        (), description="Agent names to leave out of the pipeline (relay-control cannot be disabled)"
    )
    from_header: Literal["reject", "quarantine", "off"] = Field(
        "reject",
        description=(
            "Mail without exactly one well-formed From field (RFC 5322 3.6): reject (550 5.6.0),"
            " quarantine, or off"
        ),
    )
    local_recipients: LocalRecipientsConfig = LocalRecipientsConfig()
    sender_filter: SenderFilterConfig = SenderFilterConfig()
    recipient_filter: RecipientFilterConfig = RecipientFilterConfig()
    rate_limits: RateLimitsConfig = RateLimitsConfig()
    content_filter: ContentFilterConfig = ContentFilterConfig()
    protocol: ProtocolAnalysisConfig = ProtocolAnalysisConfig()
    reputation: ReputationConfig = ReputationConfig()
    greylist: GreylistConfig = GreylistConfig()

    @field_validator("disabled")
    @classmethod
    def _known_agents(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in v if name not in AGENT_NAMES]
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise ValueError(f"unknown agent name(s) {names}; the agents are {', '.join(AGENT_NAMES)}")
        if kept := sorted(ALWAYS_ON_AGENTS.intersection(v)):
            raise ValueError(
                f"{', '.join(kept)} cannot be disabled: without it any client may relay mail through this"
                " gateway (an open relay); grant relay with a receive connector's permissions instead"
            )
        return v


# A threshold of [policy]: a score, "off", or unset (for reject, quarantine and discard: take the
# content filter's SCL setting, so configurations written before the score table keep working).
Threshold = float | Literal["off"] | None
# A phishing threshold of [policy]: a PCL (1-8, Exchange's scale) or "off".
PclThreshold = Annotated[int, Field(ge=1, le=8)] | Literal["off"]


class PolicyConfig(_Section):
    """Thresholds turning the total of a transaction's findings into an action; exemptions."""

    stamp: Threshold = Field(None, description="Total at which X-Edgeward-Spam-Flag: YES is added")
    quarantine: Threshold = Field(
        None, description="Total at which the message is quarantined; unset: content_filter's quarantine SCL"
    )
    reject: Threshold = Field(
        None, description="Total at which the message gets 550 5.7.1; unset: content_filter's reject SCL (7)"
    )
    discard: Threshold = Field(
        None, description="Total at which the message is accepted and dropped; unset: content_filter's delete"
    )
    tempfail: Threshold = Field(None, description="Total at which the message gets 451 4.7.1; unset: off")
    rejection_response: str | None = Field(
        None,
        max_length=240,
        description="Text of the 550 5.7.1; unset: content_filter's (filter off: 'Message rejected as spam')",
    )
    ip_allow: tuple[str, ...] = Field(
        (), max_length=1000, description="Client networks (CIDR) exempt from anti-spam agents"
    )
    bypassed_recipients: tuple[str, ...] = Field(
        (), max_length=1000, description="Recipients exempt from anti-spam agents (with content_filter's)"
    )
    bypassed_senders: tuple[str, ...] = Field(
        (), max_length=1000, description="Senders exempt from anti-spam agents (with content_filter's)"
    )
    bypassed_sender_domains: tuple[str, ...] = Field(
        (), max_length=1000, description="Sender domains exempt from anti-spam ('*.example.org' allowed)"
    )
    # Phishing is judged apart from the spam total: it should not wait for a spam score.
    pcl_quarantine: PclThreshold = Field(
        7, description="Phishing level (PCL 1-8) at which the message is quarantined, or 'off'"
    )
    pcl_reject: PclThreshold = Field(
        "off", description="Phishing level (PCL 1-8) at which the message gets 550 5.7.1, or 'off'"
    )

    @field_validator("ip_allow")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"not an IP network: {net!r}") from None
        return v


def _known_scores(v: dict[str, float]) -> dict[str, float]:
    if unknown := unknown_names(v):
        raise ValueError(
            f"unknown finding name(s) {', '.join(unknown)}; see 'edgeward agents list' for the"
            f" {len(SCORE_TABLE)} names"
        )
    return v


# Connection filtering (issue 8 §2.1): the placeholders a rejection text may use.
_REJECTION_FIELDS = frozenset({"ip", "connector", "provider"})


def _rejection_text(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("a rejection text is one line of printable characters")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError as exc:
        raise ValueError(f"bad rejection text {value!r}: {exc}") from None
    if unknown := sorted(names - _REJECTION_FIELDS):
        raise ValueError(
            f"unknown placeholder(s) {unknown} in {value!r}; use {{ip}}, {{connector}}, {{provider}}"
        )
    return value


RejectionText = Annotated[str, Field(min_length=1, max_length=240), AfterValidator(_rejection_text)]


class DnsListProvider(_Section):
    """One DNS block or allow list (DNSBL/DNSWL), asked for the client's reversed address."""

    name: str = Field(
        ..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Name used in findings and replies"
    )
    zone: Annotated[str, BeforeValidator(_domain)] = Field(
        ..., description="Lookup zone, e.g. zen.spamhaus.org"
    )
    match: Literal["any", "addresses", "bitmask"] = Field(
        "addresses", description="Listed on any answer, on one of 'addresses', or on 'bitmask' of 127.0.0.x"
    )
    addresses: tuple[str, ...] = Field(
        ("127.0.0.2",), description="Answers that mean listed (match = addresses)"
    )
    bitmask: int = Field(
        0, ge=0, le=255, description="Bits of the last octet that mean listed (match = bitmask)"
    )
    priority: int = Field(
        0, ge=0, description="Lower is asked first and names the rejection when several list"
    )
    rejection_response: RejectionText = Field(
        "Client {ip} is listed by {provider}",
        description="Text of the 550 5.7.1 at RCPT; placeholders {ip} {connector} {provider}",
    )

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for a in v:
            try:
                ipaddress.IPv4Address(a)
            except ValueError:
                raise ValueError(f"not an IPv4 answer: {a!r}") from None
        return v


class ConnectionFilterConfig(_Section):
    """IP allow/block lists (live, in the policy store) and DNS list providers."""

    enabled: bool = Field(True, description="Check clients against the IP lists and DNS list providers")
    block_providers: tuple[DnsListProvider, ...] = Field((), max_length=20, description="DNSBL providers")
    allow_providers: tuple[DnsListProvider, ...] = Field(
        (),
        max_length=20,
        description="DNSWL providers: a listing suppresses the DNSBL refusal and scores DNSWL_LISTED",
    )
    lookup_timeout: Duration = Field(
        5.0, gt=0, description="Time all provider lookups, started at CONNECT, may take together"
    )
    ip_block_response: RejectionText = Field(
        "External client with IP address {ip} does not have permissions to submit to this server.",
        description="Text of the 550 5.7.1 at RCPT for the IP block list; placeholders {ip} {connector}",
    )
    bypassed_recipients: tuple[str, ...] = Field(
        ("postmaster", "abuse"),
        max_length=100,
        description="Recipients a blocked client still reaches: local part (any accepted domain) or address",
    )
    list_refresh: Duration = Field(
        5.0, gt=0, description="How often the gateway re-reads the IP allow list for exemptions"
    )
    disconnect: bool = Field(
        True,
        description="Close the connection of a blocked or listed client once its recipients are done:"
        " at DATA, when every one was refused (Exchange's behaviour; bypassed recipients still get mail)",
    )

    @model_validator(mode="after")
    def _unique_providers(self) -> ConnectionFilterConfig:
        names = [p.name for p in (*self.allow_providers, *self.block_providers)]
        if dup := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"duplicate DNS list provider names: {', '.join(dup)}")
        return self


def _mailbox(value: object) -> str:
    """A full address (local@domain), lower-cased: how recipients are compared."""
    if not isinstance(value, str) or value.count("@") != 1:
        raise ValueError(f"expected an address such as spam@example.org, found {value!r}")
    local, _, domain = value.strip().lower().partition("@")
    if not local or any(c.isspace() or c in "<>," for c in local):
        raise ValueError(f"not an address: {value!r}")
    return f"{local}@{_domain(domain)}"


class LearningConfig(_Section):
    """Learning from the site's own mail (``filters.agents.site_learning``): strong signals only."""

    enabled: bool = Field(True, description="Learn from the site's own mail (needs content_filter.learning)")
    replies: bool = Field(True, description="Learn as ham authenticated replies to local users' messages")
    correspondents: bool = Field(
        True, description="Learn as ham authenticated mail from addresses local users wrote to"
    )
    releases: bool = Field(True, description="Learn as ham the messages released from quarantine")
    reports: bool = Field(True, description="Learn as spam the messages local users report")
    traps: bool = Field(True, description="Learn as spam what outsiders send to trap addresses")
    spam_report_address: tuple[Annotated[str, BeforeValidator(_mailbox)], ...] = Field(
        (), max_length=20, description="Addresses local users send spam reports to (never delivered)"
    )
    trap_addresses: tuple[Annotated[str, BeforeValidator(_mailbox)], ...] = Field(
        (), max_length=800, description="Addresses no one legitimately writes to; their mail is dropped"
    )
    sent_ttl: Duration = Field(90 * 86400.0, gt=0, description="How long a sent Message-ID is remembered")
    correspondent_ttl: Duration = Field(
        365 * 86400.0, gt=0, description="How long an address a local user wrote to stays a correspondent"
    )
    queue_size: int = Field(
        1000, ge=1, le=100000, description="Messages waiting to be learned; more are dropped and counted"
    )


class LoggingConfig(_Section):
    dir: Path = Field(Path("log"), description="Folder of the tracking, agent and protocol logs")
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Level of the service log"
    )
    max_file_size: Size = Field(10 * 1024 * 1024, description="Rotate a log file at this size")
    max_age: Duration = Field(30 * 86400.0, description="Delete rotated log files older than this")


class StampsConfig(_Section):
    """Headers added to accepted mail besides Edgeward's own X-Edgeward-* stamps."""

    exchange_organization: bool = Field(
        False,
        description=(
            "Also stamp X-MS-Exchange-Organization-SCL, -PCL and -Antispam-Report for an Exchange"
            " organisation behind this gateway (its junk-mail threshold then acts on our SCL)"
        ),
    )


class Config(_Section):
    server: ServerConfig = ServerConfig()
    tls: TlsConfig = TlsConfig()
    accepted_domains: tuple[Annotated[str, BeforeValidator(_domain)], ...] = Field(
        (), description="Domains this gateway accepts mail for from anyone"
    )
    receive_connectors: tuple[ReceiveConnectorConfig, ...] = Field(
        (ReceiveConnectorConfig(name="default"),),
        description=(
            "Receive connectors; among those bound to the address a client reached, the one with the most"
            " specific remote range holding the client's address serves it"
        ),
    )
    send_connectors: tuple[SendConnectorConfig, ...] = Field(
        (), description="Send connectors; the most specific address space wins, then the lowest cost"
    )
    queue: QueueConfig = QueueConfig()
    dns: DnsConfig = DnsConfig()
    mta_sts: MtaStsConfig = MtaStsConfig()
    agents: AgentsConfig = AgentsConfig()
    policy: PolicyConfig = PolicyConfig()
    connection_filter: ConnectionFilterConfig = ConnectionFilterConfig()
    spf: SpfConfig = SpfConfig()
    dmarc: DmarcConfig = DmarcConfig()
    arc: ArcConfig = ArcConfig()
    dkim_sign: DkimSignConfig = DkimSignConfig()
    attachments: AttachmentsConfig = AttachmentsConfig()
    scores: Annotated[dict[str, float], AfterValidator(_known_scores)] = Field(
        default_factory=dict,
        description="Weights by finding name, overriding the shipped score table ('edgeward agents list')",
    )
    logging: LoggingConfig = LoggingConfig()
    learning: LearningConfig = LearningConfig()
    antivirus: AntivirusConfig = AntivirusConfig()
    stamps: StampsConfig = StampsConfig()
    policy_store: PolicyStoreConfig = PolicyStoreConfig()
    notify: NotifyConfig = NotifyConfig()
    quarantine: QuarantineConfig = QuarantineConfig()
    directory: DirectoryConfig = DirectoryConfig()
    web: WebConfig = WebConfig()
    metrics: MetricsConfig = MetricsConfig()
    rules: Annotated[tuple[TransportRule, ...], AfterValidator(check_rules)] = Field(
        (), description="Transport rules ([[rules]]: conditions, exceptions, actions; 'edgeward rules list')"
    )

    @model_validator(mode="after")
    def _names(self) -> Config:
        for kind, items in (("receive", self.receive_connectors), ("send", self.send_connectors)):
            names = [c.name for c in items]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"duplicate {kind} connector names: {', '.join(sorted(dup))}")
        return self

    def resolve(self, path: Path) -> Path:
        """A path from the configuration, made absolute against ``server.data_dir``."""
        return path if path.is_absolute() else self.server.data_dir / path
