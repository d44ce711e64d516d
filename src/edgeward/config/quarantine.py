"""The ``[quarantine]`` settings: how long entries stay, encryption at rest, user digests.

Decisions:

- ``retention`` is 30 days, as Exchange keeps its spam quarantine. The older setting
  ``agents.content_filter.quarantine_retention`` is still honoured: when a file sets it and does
  not set ``[quarantine] retention``, it decides; when both are set, ``[quarantine]`` wins
  (:func:`effective_retention`).
- Encryption at rest is off unless ``encryption_key_file`` names a key file: 32 random bytes,
  created 0600 for the service user at first use when missing. Losing the file loses the
  entries written with it, so back it up with the configuration, not with the quarantine.
- Digests are off by default: they write to every quarantined recipient, which a site turns on
  once ``release_link_base`` points at a front that serves release links.

Security: ``release_link_base`` must be an http(s) URL without whitespace, so a digest's link
cannot be made into something else by the configuration's own text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from edgeward.config.schema import Config


def _duration(value: object) -> float:
    # Imported here because schema imports this module for its root Config.
    from edgeward.config.schema import parse_duration

    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]
_NO_SPACE = re.compile(r"^\S*$")
_ADDRESS = re.compile(r"^[^\s@<>\"(),;:\\\[\]]{1,64}@[A-Za-z0-9.-]{1,253}$")
DEFAULT_RETENTION = 30 * 86400.0


class QuarantineConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    retention: Duration = Field(
        DEFAULT_RETENTION,
        description=(
            "Delete quarantined messages older than this (0 keeps them forever); wins over"
            " agents.content_filter.quarantine_retention, which decides only when this is not set"
        ),
    )
    encryption_key_file: Path | None = Field(
        None,
        description=(
            "Encrypt entries at rest (AES-256-GCM) with the key in this file, created 0600 for the"
            " service user when missing; entries written before stay readable"
        ),
    )
    digest_enabled: bool = Field(False, description="Send each quarantined recipient a daily digest")
    digest_hour: int = Field(7, ge=0, le=23, description="Hour of the day (local time) the digest is sent")
    release_link_base: str = Field(
        "",
        max_length=500,
        description="URL the digest's release links start with; the signed token is appended as ?token=",
    )
    release_link_lifetime: Duration = Field(
        14 * 86400.0, description="How long a digest's release link works (once)"
    )
    digest_sender: str = Field(
        "",
        max_length=254,
        description="From of the digest; if empty, the postmaster of the first accepted domain",
    )

    @field_validator("digest_sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if value and not _ADDRESS.match(value):
            raise ValueError("digest_sender must be a bare address such as postmaster@example.org")
        return value

    @field_validator("release_link_base")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or not _NO_SPACE.match(value):
            raise ValueError("release_link_base must be an http:// or https:// URL without spaces")
        return value


def effective_retention(config: Config) -> float:
    """The retention in force: ``[quarantine] retention`` if the file set it, else the content
    filter's older ``quarantine_retention`` if set, else 30 days."""
    section = config.quarantine
    if "retention" in section.model_fields_set:
        return section.retention
    older = config.agents.content_filter
    if "quarantine_retention" in older.model_fields_set:
        return older.quarantine_retention
    return section.retention
