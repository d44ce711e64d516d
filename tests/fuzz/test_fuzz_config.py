"""Fuzzing the configuration loader (``config.load``).

Inputs: the ``edgeward init`` template and a full configuration mutated as text; TOML built
from the schema's own section and key names with random keys and values of every TOML type
(huge integers, infinities, NUL, nested tables, duration and size strings); and mappings
passed straight to ``parse_config``. Property: the loader returns a ``Config`` or raises
``ConfigError`` (each problem with a non-empty key path, the message naming the file); no
other exception ever leaves it.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from edgeward.cli.init import render
from edgeward.config.load import load_config, parse_config
from edgeward.config.schema import Config, ReceiveConnectorConfig, SendConnectorConfig
from edgeward.errors import ConfigError
from tests.fuzz import seeds
from tests.fuzz.profiles import fuzz_settings

pytestmark = pytest.mark.fuzz

TEMPLATE = render(
    hostname="mx.example.net",
    listen=["0.0.0.0:25"],
    accept_domains=["example.net"],
    relay_from=["192.0.2.0/24"],
    smart_host="10.0.0.5:2525",
)
FULL = (
    TEMPLATE
    + """
[dns]
servers = ["127.0.0.1"]
port = 53
timeout = "5s"

[[send_connectors]]
name = "outbound"
address_spaces = ["*;10"]
dns_routing = true
mta_sts = true
tls = "verify_hostname"
max_message_size = "25MB"
"""
)
SEEDS = (TEMPLATE.encode(), FULL.encode())


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """Section -> key names, from the schema itself."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        args = getattr(annotation, "__args__", ())
        inner = next(
            (a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
        out[name] = sorted(inner.model_fields) if inner is not None else None
    return out


SCHEMA = _fields(Config)
_NESTED = {
    "receive_connectors": sorted(ReceiveConnectorConfig.model_fields),
    "send_connectors": sorted(SendConnectorConfig.model_fields),
}

_SCALAR = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([10**400, -(10**400), 2**64]),
    # Past the 4300 digits that int() and repr() of a decimal accept (built lazily: hypothesis
    # labels a strategy by the repr of its arguments).
    st.integers(4300, 5000).map(lambda e: 10**e),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "10m",
            "4h",
            "2d",
            "90s",
            "1.5ms",
            "9" * 400,
            "9" * 400 + "d",
            "64KB",
            "10MB",
            "1e400",
            "9" * 400 + "gb",
            "0.0.0.0:25",
            "[::1]:587",
            "127.0.0.1/8",
            "example.net",
            "a\x00b",
            "../../etc",
            "",
            " ",
            "*",
            "*;5",
            "x;" + "9" * 5000,
        ]
    ),
    st.datetimes().map(lambda d: d.replace(microsecond=0)),
    st.dates(),
)


def _value() -> st.SearchStrategy[Any]:
    return st.recursive(
        _SCALAR,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.text("abcxyz_", min_size=1, max_size=6), inner, max_size=3),
        ),
        max_leaves=6,
    )


@st.composite
def _config_dict(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from([*SCHEMA, "unknown", "Server"]), max_size=5, unique=True)):
        keys = SCHEMA.get(section)
        if section in _NESTED:
            data[section] = [
                {
                    k: draw(_value())
                    for k in draw(st.lists(st.sampled_from(_NESTED[section]), max_size=6, unique=True))
                }
                for _ in range(draw(st.integers(0, 2)))
            ]
        elif keys:
            names = draw(st.lists(st.sampled_from([*keys, "bogus"]), max_size=4, unique=True))
            data[section] = {k: draw(_value()) for k in names}
        else:
            data[section] = draw(_value())
    return data


def _toml_key(key: str) -> str:
    return key if key and all(c.isalnum() or c in "_-" for c in key) and key.isascii() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**4000 else "0x" + format(value, "x") if value > 0 else "-1"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, str):
        # JSON escapes are TOML basic-string escapes, except that TOML has no \/ (json never writes it).
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _to_toml(data: dict[str, Any]) -> str:
    return "\n".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items()) + "\n"


def _check_load(path: Path) -> None:
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc)
        for location, expected, found in exc.problems:
            assert location and expected, exc.problems
            assert len(found) <= 80
        return
    assert isinstance(config, Config)
    assert config.server.data_dir.is_absolute()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config")


def test_seeds_load(folder: Path) -> None:
    for i, text in enumerate(SEEDS):
        path = folder / f"seed{i}.toml"
        path.write_bytes(text)
        assert isinstance(load_config(path), Config)


@fuzz_settings(1)
@given(seeds.mutated(SEEDS))
def test_mutated_config_text(folder: Path, text: bytes) -> None:
    path = folder / "mutated.toml"
    path.write_bytes(text)
    _check_load(path)


@fuzz_settings(1)
@given(_config_dict())
def test_generated_toml(folder: Path, data: dict[str, Any]) -> None:
    path = folder / "generated.toml"
    path.write_text(_to_toml(data), "utf-8")
    _check_load(path)


@fuzz_settings(1)
@given(_config_dict())
def test_generated_mappings(data: dict[str, Any]) -> None:
    try:
        config = parse_config(data, source="fuzz.toml", base=Path("/srv/edgeward"))
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.toml: ")
        assert exc.problems and all(loc for loc, _, _ in exc.problems)
        return
    assert config.server.data_dir.is_absolute()


@fuzz_settings(1)
@given(st.sampled_from(["[", "{", "a = ["]), st.integers(1, 3000))
def test_deep_nesting(folder: Path, opener: str, depth: int) -> None:
    closer = {"[": "]", "{": "}", "a = [": "]"}[opener]
    body = "x = " + "[" * depth + "]" * depth if opener != "{" else "x = " + "{a=" * depth + "1" + "}" * depth
    path = folder / "deep.toml"
    path.write_text(body + "\n" + opener * (depth % 3) + closer * (depth % 2), "utf-8")
    _check_load(path)
