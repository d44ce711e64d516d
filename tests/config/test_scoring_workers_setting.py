"""``[agents.content_filter] workers``: a number, or auto (the cores the receivers leave, 1 to 2)."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from edgeward.config.schema import ContentFilterConfig, ServerConfig


@pytest.mark.parametrize(("cores", "expected"), [(1, 0), (2, 1), (3, 1), (4, 1), (8, 1), (64, 2)])
def test_auto_with_the_automatic_receivers(
    monkeypatch: pytest.MonkeyPatch, cores: int, expected: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    receivers = ServerConfig().receiver_count()
    assert ContentFilterConfig().worker_count(receivers) == expected


@pytest.mark.parametrize(("cores", "receivers", "expected"), [(2, 2, 1), (4, 1, 2), (8, 2, 2), (8, 7, 1)])
def test_auto_takes_the_cores_left_over(
    monkeypatch: pytest.MonkeyPatch, cores: int, receivers: int, expected: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    assert ContentFilterConfig().worker_count(receivers) == expected


def test_a_number_is_taken_as_it_is_within_bounds() -> None:
    assert ContentFilterConfig(workers=0).worker_count(4) == 0
    assert ContentFilterConfig(workers=3).worker_count(1) == 3
    with pytest.raises(ValidationError):
        ContentFilterConfig(workers=-1)
    with pytest.raises(ValidationError):
        ContentFilterConfig(workers=17)
