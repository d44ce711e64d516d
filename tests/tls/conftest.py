"""Fixtures for the TLS tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from tls_helpers import FakeClock

from edgeward.tls.store import CertificateStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    return tmp_path / "data" / "tls"


@pytest.fixture
def store(store_root: Path, clock: FakeClock) -> CertificateStore:
    return CertificateStore(store_root, clock=clock)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()
