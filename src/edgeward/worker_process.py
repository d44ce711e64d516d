"""What the gateway's worker processes share: how they start, and their memory bound.

The Office engine and the content filter run work in fresh interpreters
(``python -m edgeward.<module> FD LIMIT`` on a socket pair): not ``multiprocessing``, since a
forked child would inherit the event loop's threads and sockets, and a spawned one would
import the gateway's main module again.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import edgeward

__all__ = ["limit_address_space", "spawn"]


def spawn(module: str, memory_limit: int) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """``python -m module FD LIMIT`` on one end of a socket pair, and the other end.

    Its standard output goes nowhere (oletools prints now and then; the gateway's stdout is not
    a worker's to write); its errors reach the gateway's standard error."""
    ours, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", module, str(theirs.fileno()), str(memory_limit)],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=_environment(),
            close_fds=True,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, ours


def _environment() -> dict[str, str]:
    """The gateway's environment, with this package importable whatever started the gateway."""
    env = dict(os.environ)
    package_root = str(Path(edgeward.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    # A worker does one piece of work at a time: BLAS threads would only reserve address space
    # (against its limit) and compete with the gateway for the cores.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


def limit_address_space(limit: int) -> None:
    """Bound the worker's address space (``RLIMIT_AS``) to ``limit`` bytes; 0: no bound. So a
    decompression bomb ends in ``MemoryError`` in the worker, not in the host's OOM killer
    choosing the gateway."""
    if limit > 0:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
