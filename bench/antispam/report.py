"""The anti-spam benchmark's numbers: one pass's result, CPU by process, medians and ratios."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from relay.procs import CLK_TCK, _stat, process_tree


@dataclass
class PassResult:
    stack: str
    repeat: int
    messages: int
    msgs_per_s: float
    accept_msgs_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_msg: float
    dns_cpu_ms_per_msg: float
    client_cpu_ms_per_msg: float
    postscreen_passes: int | None = None
    postscreen_passes_new: int | None = None  # of those, clients whose tests ran in this pass
    cpu_ms_per_msg_by_process: dict[str, float] = field(default_factory=dict)


def own_ticks(roots: list[int]) -> dict[int, tuple[str, int]]:
    """pid -> (command name, own user+system ticks) of every live process under ``roots``."""
    out: dict[int, tuple[str, int]] = {}
    for root in roots:
        for pid, name in process_tree(root).items():
            st = _stat(pid)
            if st is not None:
                out[pid] = (_label(pid, name), int(st[13]) + int(st[14]))
    return out


def _label(pid: int, name: str) -> str:
    """The command name, or for a Python process what it runs (both Edgeward processes, and
    policyd-spf, are "python" to the kernel)."""
    if not name.startswith("python"):
        return name
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return name
    args = [a.decode(errors="replace") for a in argv if a]
    if "serve" in args:
        return "edgeward deliver" if "deliver" in args else "edgeward receive"
    scripts = [Path(a).name for a in args[1:] if not a.startswith("-")]
    return scripts[0] if scripts else name


def by_process(
    before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]], total: float, n: int
) -> dict[str, float]:
    """CPU ms per message by command name; what processes that exited during the pass used
    (counted in their parent's children time) is the remainder, "exited"."""
    ms: dict[str, float] = {}
    for pid, (name, ticks) in after.items():
        used = ticks - before[pid][1] if pid in before and before[pid][0] == name else ticks
        ms[name] = ms.get(name, 0.0) + used * 1000.0 / CLK_TCK / n
    rest = total * 1000.0 / n - sum(ms.values())
    if rest > 0.005:
        ms["exited"] = rest
    return dict(sorted(ms.items(), key=lambda kv: -kv[1]))


def summarise(runs: list[PassResult]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name in ("postfix", "edgeward"):
        mine = [r for r in runs if r.stack == name]
        if not mine:
            continue
        out[name] = {
            k: statistics.median(getattr(r, k) for r in mine)
            for k in ("msgs_per_s", "accept_msgs_per_s", "p50_ms", "p99_ms", "cpu_ms_per_msg",
                      "dns_cpu_ms_per_msg", "client_cpu_ms_per_msg")
        }  # fmt: skip
    return out


def paired(runs: list[PassResult], key: str) -> list[float]:
    """Edgeward/Postfix of ``key`` per repeat: the two passes of a repeat ran back to back."""
    pf = {r.repeat: getattr(r, key) for r in runs if r.stack == "postfix"}
    ew = {r.repeat: getattr(r, key) for r in runs if r.stack == "edgeward"}
    return [ew[k] / pf[k] for k in sorted(pf) if k in ew and pf[k]]


def print_table(summary: dict[str, dict[str, float]], ratios: dict[str, float]) -> None:
    head = (
        f"{'stack':<9} {'msg/s':>8} {'accept/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/msg':>11}"
        f" {'DNS ms/msg':>11} {'client ms/msg':>14}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for name, s in summary.items():
        print(
            f"{name:<9} {s['msgs_per_s']:>8.1f} {s['accept_msgs_per_s']:>9.1f} {s['p50_ms']:>8.2f}"
            f" {s['p99_ms']:>8.2f} {s['cpu_ms_per_msg']:>11.2f} {s['dns_cpu_ms_per_msg']:>11.3f}"
            f" {s['client_cpu_ms_per_msg']:>14.2f}"
        )
    if ratios:
        print(
            "\nEdgeward / Postfix (median of the per-repeat ratios): "
            + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
            + "\n(msg/s above 1: Edgeward faster; p99 and CPU above 1: Edgeward slower / costlier)"
        )
