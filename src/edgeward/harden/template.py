"""Role templates: what a host running the gateway in one role may expose, run and allow.

A template is a TOML file validated by :class:`RoleTemplate`, in the spirit of the Security
Configuration Wizard's per-role policies: one reviewed file says which ports are open to whom,
which connections go out, which services may run, the kernel settings, the file modes and the
gateway settings the role needs; ``harden analyse`` compares a host with it and ``harden apply``
enforces its firewall, kernel, service and file parts.

Three are shipped (``edge``, ``edge-submission``, ``smarthost``, in ``edgeward/data/templates``);
``harden template import`` stores a site's own next to the configuration
(``<config dir>/templates/NAME.toml``), where it takes precedence over a shipped one of the same
name. Paths in ``files`` may use ``{config}``, ``{config_dir}``, ``{data_dir}`` and ``{log_dir}``,
filled in from the configuration being checked.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["RoleTemplate", "TemplateError", "load_template", "shipped_names", "template_dir"]

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
_SYSCTL = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_*-]+)+$")


class TemplateError(ValueError):
    """A template that cannot be found or read, with a message for the operator."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_ranges(ranges: tuple[str, ...]) -> tuple[str, ...]:
    for text in ranges:
        ipaddress.ip_network(text, strict=False)
    return ranges


class InboundPort(_Part):
    port: int = Field(ge=1, le=65535, description="TCP port accepted from the sources")
    sources: tuple[str, ...] = Field(("0.0.0.0/0", "::/0"), description="Address ranges allowed in")
    purpose: str = Field("", description="What the port is for")
    optional: bool = Field(False, description="The role works without it; not listening is no finding")

    _ranges = field_validator("sources")(_check_ranges)


class OutboundPort(_Part):
    port: int = Field(ge=1, le=65535, description="Destination port")
    protocol: Literal["tcp", "udp"] = Field("tcp", description="Transport protocol")
    destinations: tuple[str, ...] = Field(("0.0.0.0/0", "::/0"), description="Address ranges")
    purpose: str = Field("", description="What the connection is for")

    _ranges = field_validator("destinations")(_check_ranges)


class FileRule(_Part):
    path: str = Field(description="Path; may use {config}, {config_dir}, {data_dir}, {log_dir}")
    max_mode: int = Field(description="No permission bit beyond these (e.g. 0o640)")
    owner: str = Field("", description="Required owner: 'root' or 'service' (server.user); empty: any")
    recursive: bool = Field(False, description="Check (and apply to) files below it too")


class GatewayRules(_Part):
    """Gateway settings the role requires; checked by ``harden analyse``."""

    internet_facing: bool = Field(True, description="A connector takes mail from the internet")
    submission: bool = Field(False, description="Users submit mail: 587/465 with AUTH over TLS")
    relay_internal_only: bool = Field(True, description="Relay rights only for internal ranges")
    content_filter: bool = Field(True, description="The content filter must run and enforce")
    antivirus: bool = Field(True, description="A virus scanner must be configured")


class RoleTemplate(_Part):
    name: str = Field(description="Template name (lower case, digits, '-')")
    description: str = Field("", description="What role the host plays")
    inbound: tuple[InboundPort, ...] = Field((), description="TCP ports open to the network")
    loopback_only: tuple[int, ...] = Field(
        (), description="Ports that must only listen on loopback (console, metrics)"
    )
    outbound: tuple[OutboundPort, ...] = Field((), description="Connections the role makes")
    services_allowed: tuple[str, ...] = Field((), description="systemd units (globs) that may run")
    services_disable: tuple[str, ...] = Field((), description="Units apply stops and disables if present")
    sysctls: dict[str, str] = Field(default_factory=dict, description="Kernel settings and their values")
    files: tuple[FileRule, ...] = Field((), description="Owner and mode rules for the gateway's files")
    gateway: GatewayRules = Field(GatewayRules(), description="Gateway settings the role requires")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("lower-case letters, digits and '-' only, starting with a letter")
        return value

    @field_validator("sysctls")
    @classmethod
    def _sysctls(cls, value: dict[str, str]) -> dict[str, str]:
        for key, setting in value.items():
            if not _SYSCTL.match(key) or not re.fullmatch(r"[0-9a-z ]+", str(setting)):
                raise ValueError(f"{key} = {setting!r} is not a kernel setting")
        return value

    def inbound_ports(self) -> set[int]:
        return {p.port for p in self.inbound}


def shipped_names() -> list[str]:
    folder = resources.files("edgeward.data").joinpath("templates")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def template_dir(config_path: Path) -> Path:
    """Where imported templates live: beside the configuration."""
    return config_path.parent / "templates"


def parse_template(text: str, source: str) -> RoleTemplate:
    try:
        return RoleTemplate.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{source}: not TOML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '-'}: {e['msg']}" for e in exc.errors())
        raise TemplateError(f"{source}: invalid template: {problems}") from None


def template_text(name: str, config_path: Path | None = None) -> tuple[str, str]:
    """(TOML text, where it came from) of the template called ``name``, or a path to one."""
    if name.endswith(".toml") or "/" in name:
        path = Path(name)
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise TemplateError(f"{path}: {exc.strerror}") from None
    if not _NAME.match(name):
        raise TemplateError(f"{name!r} is not a template name")
    if config_path is not None:
        own = template_dir(config_path) / f"{name}.toml"
        try:
            return own.read_text(encoding="utf-8"), str(own)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise TemplateError(f"{own}: {exc.strerror}") from None
    if name not in shipped_names():
        known = ", ".join(shipped_names())
        raise TemplateError(f"no template {name!r} (shipped: {known}; or give a .toml file)")
    shipped = resources.files("edgeward.data").joinpath("templates", f"{name}.toml")
    return shipped.read_text(encoding="utf-8"), f"shipped:{name}"


def load_template(name: str, config_path: Path | None = None) -> RoleTemplate:
    text, source = template_text(name, config_path)
    return parse_template(text, source)
