"""Process, port and CPU helpers shared by the relay benchmark.

Every long-lived child runs in its own session (``start_new_session=True``) so that a Ctrl-C in
the terminal reaches only the benchmark, which then stops each child in order; and so that a
whole tree (a relay and its workers) can be killed with one ``killpg`` if it does not stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A failure that makes a measurement meaningless (a relay that does not start, lost mail)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_smtp_banner(port: int, timeout: float, alive: subprocess.Popen[bytes] | None = None) -> str:
    """Wait until 127.0.0.1:port answers with a 220 banner; return the banner line.

    A listening socket is not enough: a server may accept before it is ready to talk, and the
    first timed connection must not pay for start-up.
    """
    deadline = time.monotonic() + timeout
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise BenchError(f"process exited with status {alive.returncode} before port {port} answered")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
                s.settimeout(5.0)
                line = s.makefile("rb").readline().decode("ascii", "replace").strip()
                if line.startswith("220"):
                    with contextlib.suppress(OSError):
                        s.sendall(b"QUIT\r\n")
                    return line
                last_error = f"unexpected greeting {line!r}"
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.1)
    raise BenchError(f"127.0.0.1:{port} gave no 220 banner within {timeout:.0f}s ({last_error})")


def kill_group(pgid: int, grace: float, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to a process group, then SIGKILL whatever is left after ``grace`` seconds."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def group_alive(pgid: int) -> bool:
    """True while any process of the group exists (zombies of our own children excluded)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) succeeds on zombies too; look for a live member.
    for pid in _pids():
        st = _stat(pid)
        if st is not None and int(st[4]) == pgid and st[2] != "Z":
            return True
    return False


def stop_popen(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Stop a child started with ``start_new_session=True`` and its whole process group."""
    if proc.poll() is None:
        kill_group(proc.pid, grace)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat, 0-based, with the command name (which may hold spaces) as one field."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    left, right = raw.find("("), raw.rfind(")")
    return [raw[:left].strip(), raw[left + 1 : right], *raw[right + 2 :].split()]


def process_tree(root: int) -> dict[int, str]:
    """PID -> command name of ``root`` and all its live descendants."""
    parent: dict[int, int] = {}
    names: dict[int, str] = {}
    for pid in _pids():
        st = _stat(pid)
        if st is None or st[2] == "Z":
            continue
        parent[pid] = int(st[3])
        names[pid] = st[1]
    tree = {root} if root in names else set()
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return {pid: names[pid] for pid in tree}


def cpu_seconds(root: int) -> float:
    """User+system CPU of ``root``'s tree: live processes plus the reaped children they waited for.

    A worker that exits between two samples moves its time into its parent's cutime/cstime, so
    the difference of two samples counts it exactly once.
    """
    ticks = 0
    for pid in process_tree(root):
        st = _stat(pid)
        if st is not None:
            ticks += sum(int(v) for v in st[13:17])
    return ticks / CLK_TCK


def count_processes(root: int) -> Counter[str]:
    """Live processes of ``root``'s tree by command name."""
    return Counter(process_tree(root).values())


def rss_bytes(root: int) -> int:
    """Resident memory of ``root``'s whole tree (the sum of each process's VmRSS)."""
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


def filesystem_of(path: Path) -> tuple[str, str]:
    """(mount point, filesystem type) holding ``path``, from /proc/mounts (longest prefix wins)."""
    target = str(path.resolve())
    best = ("/", "unknown")
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            mnt = parts[1].replace("\\040", " ")
            inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best[0]):
                best = (mnt, parts[2])
    return best


def kill_processes_in(folder: Path) -> list[int]:
    """SIGKILL every process whose working directory lies in ``folder``; return their pids.

    The last line of clean-up: Postfix daemons chdir to their queue directory and Edgeward runs in
    its own folder, so this finds a relay's processes even when an interrupt came before their
    pid was known (e.g. between ``postfix start`` and the master writing its pid file).
    """
    prefix = str(folder.resolve()).rstrip("/") + "/"
    own = os.getpid()
    killed = []
    for pid in _pids():
        if pid == own:
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)")
        except OSError:
            continue
        if (cwd + "/").startswith(prefix):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed
