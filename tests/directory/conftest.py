from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeward.config.directory import DirectoryConfig
from edgeward.testing.slapd import SUFFIX, SYNC_DN, Slapd
from tests.ports import free_port


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[Slapd]:
    if shutil.which("slapd") is None and not Path("/usr/sbin/slapd").exists():
        pytest.skip("slapd is not installed (scripts/install-test-deps.sh installs it)")
    server = Slapd.create(tmp_path / "slapd")
    # Ports below the ephemeral range: no outgoing connection can take them first.
    server.ldap_port, server.ldaps_port = free_port(), free_port()
    server.start()
    yield server
    server.remove()


def directory_config(server: Slapd, **extra: object) -> DirectoryConfig:
    settings: dict[str, object] = {
        "urls": (server.ldaps_url,),
        "base_dn": SUFFIX,
        "bind_dn": SYNC_DN,
        "ca_file": server.ca_file,
        "timeout": 10.0,
    }
    settings.update(extra)
    return DirectoryConfig.model_validate(settings)
