"""The anti-spam agents' sections: sender and recipient filtering, rate limits, the content
filter, SPF, DMARC, ARC, protocol analysis, sender reputation, greylisting, the agent list,
the ``[policy]`` thresholds and the connection filter with its DNS lists.

Defaults follow Exchange 2007's Edge Transport where it has one (its order of agents and its
SCL thresholds), and are stricter where Exchange's were not secure.
"""

from __future__ import annotations

import ipaddress
import os
import string
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from edgeward.config.base import Duration, Section, Size, normalize_domain
from edgeward.config.scores import SCORE_TABLE, unknown_names

# Scoring workers under load: beyond two, the receiving process's own work is the limit.
AUTO_SCORING_WORKERS = 2


class LocalRecipientsConfig(Section):
    enabled: bool = Field(False, description="Refuse recipients in accepted domains that are not listed")
    file: Path = Field(Path("recipients.txt"), description="One address (or @domain) per line")
    source: Literal["file", "directory"] = Field(
        "file", description="file (the recipients file) or directory (the replica of [directory])"
    )


class SenderFilterConfig(Section):
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


class RecipientFilterConfig(Section):
    """Blocked recipients at RCPT (the live list: 'edgeward antispam recipient block')."""

    blocked_recipients: tuple[str, ...] = Field(
        (), max_length=800, description="Recipient addresses refused with 550 5.1.1"
    )


class RateLimitsConfig(Section):
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


class ContentFilterConfig(Section):
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
    workers: Literal["auto"] | Annotated[int, Field(ge=0, le=16)] = Field(
        "auto",
        description=(
            "Worker processes per receiving process that score messages while it is saturated; 0:"
            " always in the receiving process; auto: the cores the receiving processes leave, 1 to 2"
        ),
    )
    worker_start_load: float = Field(
        0.05, ge=0.0, le=16.0,
        description="Scoring load (share of a core, over the last seconds) at which the workers start",
    )  # fmt: skip
    worker_idle_stop: Duration = Field(
        60.0,
        description="The workers stop once the load stayed under a quarter of worker_start_load this long",
    )
    worker_timeout: Duration = Field(
        30.0,
        description="A message not scored by a worker in this time gets 451 4.3.0; the worker is replaced",
    )
    worker_memory_limit: Size = Field(
        1024**3, description="Address-space limit of a worker; a message needing more gets 451 4.3.0"
    )

    def worker_count(self, receivers: int) -> int:
        """How many scoring workers each of ``receivers`` receiving processes gets on this host.

        On one core none. Otherwise the cores the receiving processes leave, and at least one:
        on 2 cores the delivery process leaves most of its core (a quarter busy at 20
        sessions), and a worker only runs while its receiving process is saturated."""
        if self.workers != "auto":
            return self.workers
        cores = len(os.sched_getaffinity(0))
        if cores < 2:
            return 0
        return max(1, min(AUTO_SCORING_WORKERS, cores - receivers))


class SpfConfig(Section):
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


class DmarcConfig(Section):
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


class ArcConfig(Section):
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


class ProtocolAnalysisConfig(Section):
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


class ReputationConfig(Section):
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


class GreylistConfig(Section):
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


class AgentsConfig(Section):
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


class PolicyConfig(Section):
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


def known_scores(v: dict[str, float]) -> dict[str, float]:
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


class DnsListProvider(Section):
    """One DNS block or allow list (DNSBL/DNSWL), asked for the client's reversed address."""

    name: str = Field(
        ..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Name used in findings and replies"
    )
    zone: Annotated[str, BeforeValidator(normalize_domain)] = Field(
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


class ConnectionFilterConfig(Section):
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
