from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import SMTP_SINK, SmtpSink, shared_tmpdir


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = shared_tmpdir("edgeward-faults-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sink(workdir: Path) -> Iterator[SmtpSink]:
    if not Path(SMTP_SINK).exists():
        pytest.skip("Postfix's smtp-sink is not installed (scripts/install-test-deps.sh installs it)")
    s = SmtpSink(workdir).start()
    yield s
    s.stop()
