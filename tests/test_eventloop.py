"""serve's event loop: uvloop where installed (auto), the stdlib loop when asked or without it."""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

import pytest

from edgeward import eventloop


def _loop_module(choice: eventloop.EventLoopChoice) -> str:
    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    eventloop.run(main(), choice)
    return seen[0]


def test_auto_takes_uvloop_and_asyncio_the_stdlib_loop() -> None:
    pytest.importorskip("uvloop")
    assert _loop_module("auto").startswith("uvloop")
    assert _loop_module("asyncio").startswith("asyncio")


def test_without_uvloop_auto_falls_back_and_uvloop_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_uvloop(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uvloop":
            raise ImportError("no uvloop here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    assert _loop_module("auto").startswith("asyncio")
    with pytest.raises(ImportError):
        _loop_module("uvloop")
