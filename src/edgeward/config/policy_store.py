"""``[policy_store]``: where the anti-spam agents keep what they share (see ``state/``).

``backend = "sqlite"`` (the default) is ``DATA_DIR/state/policy.db``, shared by the processes
of one machine. ``backend = "redis"`` shares reputation, greylisting, rate counters and the
live lists between every gateway pointed at the same server and ``prefix``.

Security: the password is never part of the TOML (a configuration is shown, copied and
checked in); ``password_file`` names a file the gateway's user reads, and a file other users
can read is refused (:func:`read_password`). ``config check`` warns about ``redis://`` to a
host that is not this one: the password and the lists would cross the network in clear.
"""

from __future__ import annotations

import ipaddress
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from edgeward.errors import ConfigError

SCHEMES = ("redis", "rediss", "unix")


def _duration(value: object) -> float:
    # schema.py imports this module for its one field, so its parser is looked up when used.
    from edgeward.config.schema import parse_duration

    return parse_duration(value)


class PolicyStoreConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Literal["sqlite", "redis"] = Field(
        "sqlite",
        description=(
            "sqlite: DATA_DIR/state/policy.db, this machine only; redis: one store shared by every"
            " gateway using the same server and prefix"
        ),
    )
    url: str = Field(
        "redis://127.0.0.1:6379/0",
        description=(
            "Redis server: redis://host:port/db, rediss:// for TLS, unix:///path/redis.sock (no password)"
        ),
    )
    password_file: Path | None = Field(
        None, description="File holding the Redis password (mode 0600, readable by the gateway's user)"
    )
    ca_file: Path | None = Field(
        None, description="CA certificates for a rediss:// server; empty means the system's"
    )
    prefix: str = Field(
        "edgeward:",
        max_length=200,
        description="Prefix of every key, so deployments can share a server (none may begin another's)",
    )
    timeout: Annotated[float, BeforeValidator(_duration), Field(gt=0)] = Field(
        2.0, description="Limit for connecting, for each reply and for waiting for a free connection"
    )
    max_connections: int = Field(16, ge=1, le=1024, description="Connections to Redis per process")

    @model_validator(mode="before")
    @classmethod
    def _hide_password(cls, data: object) -> object:
        # An error message echoes what it refuses, and it reaches logs: a password written in the
        # URL is masked before anything can report it.
        if isinstance(data, dict) and isinstance(data.get("url"), str):
            return {**data, "url": _redacted(data["url"])}
        return data

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise ValueError(f"url must start with {', '.join(s + '://' for s in SCHEMES)}")
        if parts.password or "password" in parse_qs(parts.query):
            raise ValueError("url must not hold the password; put it in password_file")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("url names no host")
        return url

    @model_validator(mode="after")
    def _tls(self) -> PolicyStoreConfig:
        parts = urlsplit(self.url)
        if self.ca_file is not None and parts.scheme != "rediss":
            raise ValueError("ca_file applies to rediss:// only")
        return self


def _redacted(url: str) -> str:
    try:
        parts = urlsplit(url)
        if not parts.password and "password" not in parse_qs(parts.query):
            return url
    except ValueError:
        return url
    netloc = parts.netloc
    if parts.password:
        user = parts.username or ""
        netloc = f"{user}:***@{netloc.rpartition('@')[2]}"
    query = "&".join(
        "password=***" if pair.split("=", 1)[0] == "password" else pair for pair in parts.query.split("&")
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def read_password(config: PolicyStoreConfig, resolve: Callable[[Path], Path]) -> str | None:
    """The password from ``password_file`` (first line), or None; refuses a file others can read."""
    if config.password_file is None:
        return None
    path = resolve(config.password_file)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o007:
            raise ConfigError(
                f"policy_store.password_file: {path} is readable by other users (mode {mode:04o});"
                " make it 0600 for the gateway's user"
            )
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"policy_store.password_file: cannot read {path} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"policy_store.password_file: {path} is not UTF-8 text") from None
    password = text.splitlines()[0].strip() if text.strip() else ""
    if not password:
        raise ConfigError(f"policy_store.password_file: {path} is empty")
    return password


def audit_policy_store(config: PolicyStoreConfig, resolve: Callable[[Path], Path]) -> list[str]:
    """Warnings for ``config check``: legal settings that weaken the store."""
    if config.backend != "redis":
        return []
    found: list[str] = []
    parts = urlsplit(config.url)
    remote = parts.scheme != "unix" and not _loopback(parts.hostname or "")
    if parts.scheme == "redis" and remote:
        found.append(
            f"{config.url} is reached without TLS: the password and the lists cross the network in"
            " clear; use rediss://"
        )
    if config.password_file is not None:
        path = resolve(config.password_file)
        mode = path.stat().st_mode if path.exists() else 0
        if mode & 0o007:
            found.append(f"{path} is readable by other users: serve refuses it; make it mode 0600")
        elif mode & 0o070:
            found.append(f"{path} is readable by its group; make it mode 0600")
    if config.password_file is None and remote:
        found.append("no password_file: any host that reaches the server can change the lists")
    return found


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
