"""Loading a TOML file into a validated ``Config``.

Errors name the file, the key, what was expected and what was found, so an administrator can
fix a configuration without reading code. Relative paths in the file are resolved against
the folder that holds it, so a configuration tree can be moved as a whole.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgeward.config.schema import Config
from edgeward.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/edgeward/edgeward.toml")


def _describe(value: Any) -> str:
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        # repr() refuses integers past sys.get_int_max_str_digits() (4300 digits by default)
        # and very deep nesting; the problem must still be reported, with its key.
        text = (
            f"an integer of {value.bit_length()} bits"
            if isinstance(value, int)
            else f"a {type(value).__name__}"
        )
    return text if len(text) <= 80 else text[:77] + "..."


def parse_config(data: dict[str, Any], *, source: str = "<config>", base: Path | None = None) -> Config:
    """Validate a mapping (as read from TOML) and resolve ``server.data_dir`` against ``base``."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems = tuple(
            (
                ".".join(str(p) for p in err["loc"]) or "(top level)",
                err["msg"].removeprefix("Value error, "),  # pydantic's label says nothing to an admin
                _describe(err.get("input")),
            )
            for err in exc.errors()
        )
        lines = [f"{source}: {len(problems)} problem(s) in the configuration"]
        lines += [f"  {loc}: {expected} (found {found})" for loc, expected, found in problems]
        raise ConfigError("\n".join(lines), problems) from None
    if base is not None and not config.server.data_dir.is_absolute():
        try:
            data_dir = (base / config.server.data_dir).resolve()
        except (OSError, ValueError, RuntimeError) as exc:
            # A NUL in the path (ValueError) or a symlink loop (RuntimeError) is the file's fault.
            found = _describe(str(config.server.data_dir))
            problem = ("server.data_dir", f"a usable folder ({exc})", found)
            raise ConfigError(
                f"{source}: server.data_dir: {problem[1]} (found {found})", (problem,)
            ) from None
        server = config.server.model_copy(update={"data_dir": data_dir})
        config = config.model_copy(update={"server": server})
    return config


def load_config(path: Path) -> Config:
    """Read and validate the configuration file at ``path``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the configuration is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except ValueError as exc:
        # tomllib lets int() refuse a decimal of more than 4300 digits with a plain ValueError.
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively.
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    return parse_config(data, source=str(path), base=path.parent.resolve())
