"""The ``[notify]`` settings: who hears about incidents, through which channels, how often.

Channels are on when configured: e-mail when ``admin_addresses`` lists someone, syslog when
``[notify.syslog] enabled``, the webhook when ``[notify.webhook] url`` is set. With none of
them nothing is built and nothing runs.

Decisions:

- ``notify_senders`` is off: telling the envelope sender of an infected message writes to an
  address malware forged in nearly every case (backscatter). A rejected message needs no
  notice from us anyway: the sending server already tells its sender.
- One notice per kind per ``interval`` (10 minutes); events in between are counted into the
  next notice, so an outbreak is one mail every 10 minutes with its count, never a mail storm.
- The webhook key comes from a file (``key_file``, 0600 like every key), never from the
  configuration itself, which is readable by the service's group.

Security: URLs and syslog addresses admit no whitespace or line breaks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from edgeward.config.redact import SECRET


def _duration(value: object) -> float:
    # Imported here because schema imports this module for its root Config.
    from edgeward.config.schema import parse_duration

    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]
_ADDRESS = re.compile(r"^[^\s@<>]{1,64}@[^\s@<>]{1,253}$")
_NO_SPACE = re.compile(r"^\S*$")

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "local0": 16, "local1": 17, "local2": 18,
    "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SyslogConfig(_Section):
    enabled: bool = Field(False, description="Send notices to syslog as RFC 5424 messages")
    transport: Literal["udp", "tcp", "unix"] = Field(
        "unix", description="udp (RFC 5426), tcp with octet counting (RFC 6587) or a unix datagram socket"
    )
    address: str = Field(
        "/dev/log", description="host:port for udp/tcp (port 514 if none), a socket path for unix"
    )
    facility: str = Field("mail", description="Syslog facility: mail, daemon, local0 ... local7")
    app_name: str = Field("edgeward", description="APP-NAME of the messages")
    sd_id: str = Field(
        "edgeward@32473",
        description="SD-ID of the structured data holding the event fields (name@private-enterprise-number)",
    )
    timeout: Duration = Field(5.0, description="Time a TCP connect and send may take")

    @field_validator("facility")
    @classmethod
    def _facility(cls, value: str) -> str:
        if value not in FACILITIES:
            raise ValueError(f"unknown facility {value!r}; one of {', '.join(FACILITIES)}")
        return value

    @field_validator("app_name", "sd_id", "address")
    @classmethod
    def _printable(cls, value: str) -> str:
        # RFC 5424 §6: header fields and SD-IDs are PRINTUSASCII without spaces; SD-IDs also
        # exclude '=', ']' and '"'.
        if not value or not value.isascii() or not _NO_SPACE.match(value) or len(value) > 255:
            raise ValueError(f"expected printable ASCII without spaces, found {value!r}")
        return value

    @field_validator("sd_id")
    @classmethod
    def _sd_id(cls, value: str) -> str:
        if len(value) > 32 or any(c in value for c in '="]'):
            raise ValueError("an SD-ID has at most 32 characters and no '=', ']' or '\"'")
        return value


class WebhookConfig(_Section):
    url: str = Field(
        "",
        description="http:// or https:// URL to POST each notice to as JSON; empty: off",
        json_schema_extra=SECRET,  # many receivers' URLs are the credential (a token in the path)
    )
    key_file: Path | None = Field(
        None,
        description=(
            "File holding the HMAC-SHA256 key for X-Edgeward-Signature (required with url;"
            " 0600, readable by server.user)"
        ),
    )
    ca_file: Path | None = Field(
        None, description="CA certificates to verify an https URL (the system's if unset)"
    )
    timeout: Duration = Field(10.0, description="Time one POST may take")
    retries: int = Field(8, ge=0, le=100, description="Attempts after the first before a notice is dropped")
    backoff: Duration = Field(2.0, description="Pause before the first retry; it doubles each time")
    max_backoff: Duration = Field(300.0, description="Longest pause between retries")
    queue_size: int = Field(
        200, ge=1, le=100_000, description="Notices kept for retrying; when full the oldest is dropped"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or not _NO_SPACE.match(value):
            raise ValueError(f"expected an http:// or https:// URL, found {value!r}")
        if not value.isascii():
            raise ValueError("the URL must be ASCII (punycode the host, percent-encode the path)")
        return value

    @model_validator(mode="after")
    def _key(self) -> WebhookConfig:
        # An unsigned webhook would let anyone who finds the URL forge incidents.
        if self.url and self.key_file is None:
            raise ValueError("key_file is required with url: every notice is signed")
        return self


class NotifyConfig(_Section):
    admin_addresses: tuple[str, ...] = Field(
        (), description="Administrators who get notices by e-mail through the gateway's own queue"
    )
    notify_senders: bool = Field(
        False,
        description=(
            "Also tell the envelope sender of a quarantined or discarded infected message"
            " (backscatter: senders of malware are nearly always forged)"
        ),
    )
    templates: Path | None = Field(
        None, description="Folder of templates (<kind>.txt) replacing the shipped ones by name"
    )
    interval: Duration = Field(
        600.0, description="At most one notice per kind per interval; the rest are counted into the next"
    )
    queue_size: int = Field(
        1000, ge=1, le=1_000_000, description="Events waiting to be sent; more are counted and dropped"
    )
    quarantine_growth_threshold: int = Field(
        0, ge=0, description="Notify when more entries than this were quarantined in 24 hours; 0: off"
    )
    quarantine_check_interval: Duration = Field(
        3600.0, description="How often the quarantine's growth is checked"
    )
    syslog: SyslogConfig = SyslogConfig()
    webhook: WebhookConfig = WebhookConfig()

    @field_validator("admin_addresses")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            if not _ADDRESS.match(address):
                raise ValueError(f"not an e-mail address: {address!r}")
        return value

    @property
    def any_channel(self) -> bool:
        return bool(self.admin_addresses) or self.syslog.enabled or bool(self.webhook.url)
