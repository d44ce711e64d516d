"""drop_capabilities: started as the service user with CAP_NET_BIND_SERVICE (as the unit does)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)

PROBE = """
import socket, sys
from edgeward.server.privileges import drop_capabilities

def bind_low():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 1023)); return "bound"
    except PermissionError:
        return "refused"
    except OSError:
        return "bound"  # in use: the permission check passed
    finally:
        s.close()

before = bind_low()
drop_capabilities()
caps = [l for l in open("/proc/self/status") if l.startswith(("CapEff", "CapPrm", "CapAmb"))]
print(before, bind_low(), *(int(l.split()[1], 16) for l in caps))
"""


def test_ambient_bind_capability_is_gone_after_dropping() -> None:
    user = pwd.getpwnam("edgeward")
    cmd = [
        "setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
        "--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service",
        sys.executable, "-c", PROBE,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["bound", "refused", "0", "0", "0"]
