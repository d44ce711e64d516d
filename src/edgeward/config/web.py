"""The ``[web]`` settings: where the console listens, who may scrape ``/metrics``, sessions.

Decisions:

- The console listens on loopback by default (``127.0.0.1:8443``): an administrator reaches
  it through an SSH tunnel or a reverse proxy until they choose to expose it.
- ``/metrics`` has no login (Prometheus scrapes without one) and is answered only to the
  networks in ``metrics_allow``, loopback by default; everything else gets 403.
- A session lasts ``session_lifetime`` from login (8 hours: a working day) and is not
  extended by use, so a stolen cookie is worth one day at most.
- Logins are throttled per account and per source address: ``login_max_failures`` failures
  within ``login_window`` lock that account or address out until the window has passed.
- ``serve`` starts the console as a supervised child only when ``enabled`` is set: a gateway
  does not open an administrative port nobody asked for.
- TOTP is optional per administrator; ``require_totp_for_admins`` turns it into a rule (an
  administrator without a second factor cannot log in). ``config check`` warns when the
  console listens beyond loopback without that rule.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator


def _duration(value: object) -> float:
    # Imported here because schema imports this module for its root Config.
    from edgeward.config.schema import parse_duration

    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]


def split_listen(value: str) -> tuple[str, int]:
    """``("127.0.0.1", 8443)`` from ``127.0.0.1:8443`` or ``[::1]:8443``; ``ValueError`` if neither."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not ADDR:PORT")
    host = host.removeprefix("[").removesuffix("]")
    ipaddress.ip_address(host)  # an address, not a name: what is bound is what is configured
    return host, int(port)


class WebConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(
        False, description="Whether 'edgeward serve' starts the console as a supervised child"
    )
    listen: str = Field("127.0.0.1:8443", description="ADDR:PORT the web console listens on (HTTPS)")
    metrics_allow: tuple[str, ...] = Field(
        ("127.0.0.1/8", "::1/128"),
        description="Networks allowed to read /metrics without a login (Prometheus)",
    )
    session_lifetime: Duration = Field(
        8 * 3600.0, description="How long a console login lasts (not extended by use)"
    )
    login_max_failures: int = Field(
        5, ge=1, le=1000, description="Failed logins per account or source address before a lockout"
    )
    login_window: Duration = Field(
        900.0, description="Window in which failed logins are counted, and how long a lockout lasts"
    )
    require_totp_for_admins: bool = Field(
        False, description="Refuse administrators' logins unless they have TOTP enrolled"
    )
    page_size_max: int = Field(
        100, ge=1, le=1000, description="Most entries one page of a list (pages or /api/v1) holds"
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @field_validator("metrics_allow")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for net in value:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not an address or network") from None
        return value
