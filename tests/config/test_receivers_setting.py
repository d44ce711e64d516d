"""``[server] receivers``: a number, or auto (the cores less the delivery process's, 1 to 8)."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from edgeward.config.schema import ServerConfig


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 1), (3, 2), (4, 3), (64, 8)])
def test_auto_leaves_a_core_to_the_delivery_process(
    monkeypatch: pytest.MonkeyPatch, cores: int, expected: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    assert ServerConfig().receiver_count() == expected


def test_a_number_is_taken_as_it_is_within_bounds() -> None:
    assert ServerConfig(receivers=3).receiver_count() == 3
    with pytest.raises(ValidationError):
        ServerConfig(receivers=0)
    with pytest.raises(ValidationError):
        ServerConfig(receivers="many")
