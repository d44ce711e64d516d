"""The ``[directory]`` settings: where recipients come from when the directory is the source.

The pull sync (``edgeward directory sync``) reads Active Directory or OpenLDAP and writes the
replica (``directory.replica``); the SMTP processes read only the replica. The section is in the
gateway's configuration so both sides agree on the replica and its age limits, but the bind
password lives in ``password_file`` (0600, the sync's alone) and no SMTP process opens it.

Decisions:

- ``mapping`` picks a preset of attribute names (``openldap`` or ``ad``); each name can be set
  on its own (an empty string turns the part off). The presets are in ``PRESETS``.
- Plaintext LDAP is refused unless the URL is loopback *and* ``allow_plaintext_loopback`` is
  set; certificates are always verified, against ``ca_file`` or the system store.
- ``max_delete_share`` (10%) bounds what one sync may remove: a wrong base DN or an emptied
  directory is refused without ``--force`` rather than turning every recipient into 550.
- ``list_encoding``: the replica keeps the users' lists as SHA-256 digests whatever the
  directory holds (``directory.lists``); ``sha256`` says the directory's values are digests
  already, made by the same rule.
- A replica older than ``max_age`` raises an alarm; ``stale_action`` = ``keep`` keeps accepting
  by it (the default: a directory outage must not stop mail), ``tempfail`` answers 451 4.3.0.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator


def _duration(value: object) -> float:
    from edgeward.config.schema import parse_duration

    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]

# Attribute names by mapping preset; a setting left unset takes its preset's value.
PRESETS: dict[str, dict[str, str]] = {
    "openldap": {
        "object_filter": "(&(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))"
        "(|(mail=*)(mailAlternateAddress=*)))",
        "address_attributes": "mail mailAlternateAddress",
        "id_attribute": "entryUUID",
        "change_attribute": "modifyTimestamp",
        "user_class": "posixAccount",
        "group_class": "groupOfNames",
        "member_attribute": "member",
        "safe_senders_attribute": "edgewardSafeSender",
        "blocked_senders_attribute": "edgewardBlockedSender",
        "safe_recipients_attribute": "edgewardSafeRecipient",
        "domain_filter": "(&(objectClass=domainRelatedObject)(associatedDomain=*))",
        "domain_attribute": "associatedDomain",
    },
    "ad": {
        "object_filter": "(&(|(objectClass=user)(objectClass=contact)(objectClass=group))(proxyAddresses=*))",
        "address_attributes": "proxyAddresses",
        "id_attribute": "objectGUID",
        "change_attribute": "uSNChanged",
        "user_class": "user",
        "group_class": "group",
        "member_attribute": "member",
        # Exchange keeps the users' lists hashed (msExchSafeSendersHash), in a form not
        # documented; a site publishing them in clear, or hashed by our rule (list_encoding =
        # "sha256"), sets these names.
        "safe_senders_attribute": "",
        "blocked_senders_attribute": "",
        "safe_recipients_attribute": "",
        "domain_filter": "(objectClass=msExchAcceptedDomain)",
        "domain_attribute": "msExchAcceptedDomainName",
    },
}


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DirectoryConfig(_Section):
    urls: tuple[str, ...] = Field(
        (), description="LDAP servers in order of preference: ldaps://host[:port] or ldap://host[:port]"
    )
    base_dn: str = Field("", description="Where recipients are searched (subtree)")
    config_base_dn: str = Field("", description="Where accepted domains are searched; unset: base_dn")
    bind_dn: str = Field("", description="The account the sync binds as (read-only rights suffice)")
    password_file: Path | None = Field(
        None, description="File holding the bind password (0600, read by the sync only)"
    )
    mapping: Literal["openldap", "ad"] = Field("openldap", description="Attribute preset: openldap or ad")
    ca_file: Path | None = Field(None, description="CA certificates the server's is verified against")
    starttls: bool = Field(True, description="For ldap:// URLs: StartTLS before the bind")
    allow_plaintext_loopback: bool = Field(
        False, description="Allow ldap:// without TLS, to a loopback address only"
    )
    timeout: Duration = Field(30.0, description="Connect and per-operation time limit")
    page_size: int = Field(1000, ge=1, le=100000, description="Entries per page (AD serves at most 1000)")
    max_delete_share: float = Field(
        0.1, ge=0, le=1, description="A sync removing more than this share of recipients needs --force"
    )
    max_age: Duration = Field(
        86400.0, description="A replica not refreshed for this long raises the stale alarm; 0: never"
    )
    stale_action: Literal["keep", "tempfail"] = Field(
        "keep", description="With a stale replica: keep accepting by it, or answer 451 4.3.0"
    )
    follow_referrals: bool = Field(False, description="Follow referrals to other servers")
    recipients_interval: Duration = Field(300.0, description="Interval of the recipient sync")
    config_interval: Duration = Field(3600.0, description="Interval of the accepted-domain sync")
    push_listen: str = Field(
        "", description="host:port where the gateway takes pushes over mutual TLS ('directory push'); '': off"
    )
    object_filter: str | None = Field(None, description="Filter of mail objects; unset: the preset's")
    address_attributes: tuple[str, ...] | None = Field(
        None, description="Attributes holding addresses (smtp:/SMTP: prefixes understood); unset: preset"
    )
    id_attribute: str | None = Field(None, description="Stable object id (entryUUID, objectGUID)")
    change_attribute: str | None = Field(
        None, description="Change marker for incremental syncs (modifyTimestamp, uSNChanged)"
    )
    user_class: str | None = Field(None, description="objectClass of users (others are contacts)")
    group_class: str | None = Field(None, description="objectClass of groups")
    member_attribute: str | None = Field(None, description="Attribute of group members (DNs)")
    safe_senders_attribute: str | None = Field(None, description="Per-user safe senders; '': none")
    blocked_senders_attribute: str | None = Field(None, description="Per-user blocked senders; '': none")
    safe_recipients_attribute: str | None = Field(None, description="Per-user safe recipients; '': none")
    list_encoding: Literal["plain", "sha256"] = Field(
        "plain",
        description="How the directory stores the users' lists: plain addresses, or sha256 (each value"
        " the hex SHA-256 of the lower-cased address or @domain, domain in IDNA form); the replica"
        " keeps digests either way",
    )
    domain_filter: str | None = Field(None, description="Filter of accepted-domain objects; '': none")
    domain_attribute: str | None = Field(None, description="Attribute naming an accepted domain")

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for url in v:
            parts = urlsplit(url)
            if parts.scheme not in ("ldap", "ldaps") or not parts.hostname or parts.path not in ("", "/"):
                raise ValueError(f"{url!r}: give ldaps://host[:port] or ldap://host[:port]")
        return v

    @field_validator("push_listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if v:
            host, sep, port = v.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{v!r}: give host:port")
        return v

    @model_validator(mode="after")
    def _plaintext(self) -> DirectoryConfig:
        if not self.starttls:
            for url in self.urls:
                if url.startswith("ldap://") and not (self.allow_plaintext_loopback and is_loopback_url(url)):
                    raise ValueError(
                        f"{url}: plaintext LDAP would send the bind password in clear; use ldaps://,"
                        " starttls = true, or allow_plaintext_loopback for a loopback address"
                    )
        return self

    def attr(self, name: str) -> str:
        """A mapping setting: the configured value, else the preset's."""
        value = getattr(self, name)
        if value is None:
            return PRESETS[self.mapping][name]
        return " ".join(value) if isinstance(value, tuple) else str(value)

    def addresses(self) -> tuple[str, ...]:
        return tuple(self.attr("address_attributes").split())

    @property
    def domains_base(self) -> str:
        return self.config_base_dn or self.base_dn


def audit_directory(cfg: DirectoryConfig, resolve: Callable[[Path], Path]) -> list[str]:
    """Warnings for ``config check``: settings that weaken what the sync promises."""
    out: list[str] = []
    if cfg.password_file is not None:
        path = resolve(cfg.password_file)
        if path.exists() and path.stat().st_mode & 0o077:
            out.append(f"{path} is readable by others; make it mode 0600 (the sync refuses it)")
    if cfg.push_listen and cfg.password_file is not None:
        out.append(
            "push_listen and password_file together: a gateway fed by push should hold no directory"
            " credentials (keep password_file on the inside host only)"
        )
    if cfg.urls and cfg.max_age == 0:
        out.append("max_age = 0: a replica the sync no longer refreshes never raises the stale alarm")
    if cfg.max_delete_share >= 1:
        out.append("max_delete_share = 1: the mass-delete guard is off")
    return out
