"""What every configuration section shares: the frozen, strict base model and the value types.

Durations (``"90s"``, ``"10m"``, ``"4h"``, ``"2d"``) and sizes (``"64KB"``, ``"10MB"``) are
parsed here for every section, and domain names normalised (lower case, IDNA, no trailing
dot), so that a value means the same wherever it appears in the file.
"""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "Duration", "Section", "Size", "normalize_domain", "parse_duration", "parse_size", "split_hostport",
]  # fmt: skip


class Section(BaseModel):
    """A configuration section: immutable once loaded, and an unknown key is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


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


def normalize_domain(value: object) -> str:
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
