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
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from edgeward.config.antispam import (
    AGENT_NAMES,
    ALWAYS_ON_AGENTS,
    AgentsConfig,
    ArcConfig,
    ConnectionFilterConfig,
    ContentFilterConfig,
    DmarcConfig,
    DnsListProvider,
    GreylistConfig,
    LocalRecipientsConfig,
    PclThreshold,
    PolicyConfig,
    ProtocolAnalysisConfig,
    RateLimitsConfig,
    RecipientFilterConfig,
    RejectionText,
    ReputationConfig,
    SenderFilterConfig,
    SpfConfig,
    Threshold,
    known_scores,
)
from edgeward.config.antivirus import AntivirusConfig
from edgeward.config.attachments import AttachmentsConfig
from edgeward.config.base import (
    Duration,
    Section,
    Size,
    normalize_domain,
    parse_duration,
    parse_size,
    split_hostport,
)
from edgeward.config.directory import DirectoryConfig
from edgeward.config.dkim_sign import DkimSignConfig
from edgeward.config.metrics import MetricsConfig
from edgeward.config.notify import NotifyConfig
from edgeward.config.policy_store import PolicyStoreConfig
from edgeward.config.quarantine import QuarantineConfig
from edgeward.config.rules import TransportRule, check_rules
from edgeward.config.web import WebConfig

# The sections moved to config/antispam.py and config/base.py are still importable from here.
__all__ = [
    "AGENT_NAMES",
    "ALWAYS_ON_AGENTS",
    "AUTO_RECEIVERS_CAP",
    "MAX_RECEIVERS",
    "AddressSpace",
    "AgentsConfig",
    "ArcConfig",
    "Config",
    "ConnectionFilterConfig",
    "ContentFilterConfig",
    "DmarcConfig",
    "DnsConfig",
    "DnsListProvider",
    "Duration",
    "GreylistConfig",
    "LearningConfig",
    "LocalRecipientsConfig",
    "LoggingConfig",
    "MtaStsConfig",
    "PclThreshold",
    "PolicyConfig",
    "ProtocolAnalysisConfig",
    "QueueConfig",
    "RateLimitsConfig",
    "ReceiveConnectorConfig",
    "RecipientFilterConfig",
    "RejectionText",
    "ReputationConfig",
    "Right",
    "Section",
    "SendConnectorConfig",
    "SenderFilterConfig",
    "ServerConfig",
    "Size",
    "SpfConfig",
    "StampsConfig",
    "Threshold",
    "TlsConfig",
    "parse_duration",
    "parse_size",
    "split_hostport",
]

Right = Literal["submit", "relay", "bypass_antispam", "send_as_accepted", "keep_internal_headers"]


MAX_RECEIVERS = 64
AUTO_RECEIVERS_CAP = 8


class ServerConfig(Section):
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


class TlsConfig(Section):
    store: Path = Field(
        Path("tls"),
        description="Certificate store; 'edgeward cert' manages it, a self-signed one is made at first start",
    )
    handshake_timeout: Duration = Field(30.0, description="Time allowed for a TLS handshake")


class DnsConfig(Section):
    servers: tuple[str, ...] = Field(
        (),
        description=(
            "Resolver addresses; empty means /etc/resolv.conf. DANE trusts the DNSSEC 'authenticated data'"
            " flag of these servers, so for DANE list a validating resolver on this host or a trusted path"
        ),
    )
    port: int = Field(53, ge=1, le=65535, description="Port of the resolvers")
    timeout: Duration = Field(5.0, description="Time allowed for one DNS query")


class MtaStsConfig(Section):
    https_port: int = Field(
        443, ge=1, le=65535, description="Port of policy hosts (RFC 8461 says 443; others are for labs)"
    )
    ca_file: Path | None = Field(
        None, description="Trust anchors for policy hosts and MX certificates; empty: the system store"
    )
    fetch_timeout: Duration = Field(10.0, description="Time allowed to fetch one policy")


class ReceiveConnectorConfig(Section):
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
    domain_secure_partners: tuple[Annotated[str, BeforeValidator(normalize_domain)], ...] = Field(
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


class AddressSpace(Section):
    domain: Annotated[str, BeforeValidator(normalize_domain)] = Field(
        description="'*', 'example.org' or '*.example.org'"
    )
    cost: int = Field(1, ge=1, le=100, description="Lower cost wins among matching connectors")


def _address_space(value: object) -> object:
    # Exchange writes address spaces as "domain;cost"; accept that as well as tables.
    if isinstance(value, str):
        domain, _, cost = value.partition(";")
        return {"domain": domain, "cost": int(cost) if cost else 1}
    return value


class SendConnectorConfig(Section):
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


class QueueConfig(Section):
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


def _mailbox(value: object) -> str:
    """A full address (local@domain), lower-cased: how recipients are compared."""
    if not isinstance(value, str) or value.count("@") != 1:
        raise ValueError(f"expected an address such as spam@example.org, found {value!r}")
    local, _, domain = value.strip().lower().partition("@")
    if not local or any(c.isspace() or c in "<>," for c in local):
        raise ValueError(f"not an address: {value!r}")
    return f"{local}@{normalize_domain(domain)}"


class LearningConfig(Section):
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


class LoggingConfig(Section):
    dir: Path = Field(Path("log"), description="Folder of the tracking, agent and protocol logs")
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Level of the service log"
    )
    max_file_size: Size = Field(10 * 1024 * 1024, description="Rotate a log file at this size")
    max_age: Duration = Field(30 * 86400.0, description="Delete rotated log files older than this")


class StampsConfig(Section):
    """Headers added to accepted mail besides Edgeward's own X-Edgeward-* stamps."""

    exchange_organization: bool = Field(
        False,
        description=(
            "Also stamp X-MS-Exchange-Organization-SCL, -PCL and -Antispam-Report for an Exchange"
            " organisation behind this gateway (its junk-mail threshold then acts on our SCL)"
        ),
    )


class Config(Section):
    server: ServerConfig = ServerConfig()
    tls: TlsConfig = TlsConfig()
    accepted_domains: tuple[Annotated[str, BeforeValidator(normalize_domain)], ...] = Field(
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
    scores: Annotated[dict[str, float], AfterValidator(known_scores)] = Field(
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
