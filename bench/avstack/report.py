"""The anti-virus benchmark's numbers: one pass's result, medians, Edgeward/amavis ratios, the table."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

STACKS = ("amavis", "edgeward")
KEYS = ("msgs_per_s", "accept_msgs_per_s", "p50_ms", "p99_ms", "cpu_ms_per_msg", "clamd_cpu_ms_per_msg",
        "peak_rss_mb", "client_cpu_ms_per_msg")  # fmt: skip
RATIOS = (
    ("msgs_per_s", "msg/s"),
    ("p99_ms", "p99"),
    ("cpu_ms_per_msg", "CPU/msg"),
    ("peak_rss_mb", "peak RSS"),
)


@dataclass
class PassResult:
    stack: str
    repeat: int
    messages: int
    delivered: int
    refused: int
    msgs_per_s: float  # every message answered and every clean one at the sink
    accept_msgs_per_s: float  # every message answered
    p50_ms: float
    p99_ms: float
    cpu_ms_per_msg: float  # the stack's processes, not clamd
    clamd_cpu_ms_per_msg: float  # the shared clamd, while this stack ran
    peak_rss_mb: float  # summed RSS of the stack's processes, not clamd
    client_cpu_ms_per_msg: float


def summarise(runs: list[PassResult]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name in STACKS:
        mine = [r for r in runs if r.stack == name]
        if mine:
            out[name] = {k: statistics.median(getattr(r, k) for r in mine) for k in KEYS}
            out[name]["peak_rss_mb"] = max(r.peak_rss_mb for r in mine)
    return out


def paired(runs: list[PassResult], key: str) -> list[float]:
    """Edgeward/amavis of ``key`` per repeat: the two passes of a repeat ran back to back."""
    am = {r.repeat: getattr(r, key) for r in runs if r.stack == "amavis"}
    ew = {r.repeat: getattr(r, key) for r in runs if r.stack == "edgeward"}
    return [ew[k] / am[k] for k in sorted(am) if k in ew and am[k]]


def ratios(runs: list[PassResult]) -> dict[str, float]:
    return {label: statistics.median(each) for key, label in RATIOS if (each := paired(runs, key))}


def print_table(summary: dict[str, dict[str, float]], ratio: dict[str, float]) -> None:
    head = (
        f"{'stack':<9} {'msg/s':>7} {'accept/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/msg':>11}"
        f" {'clamd ms/msg':>13} {'peak RSS MB':>12} {'client ms/msg':>14}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for name, s in summary.items():
        print(
            f"{name:<9} {s['msgs_per_s']:>7.1f} {s['accept_msgs_per_s']:>9.1f} {s['p50_ms']:>8.1f}"
            f" {s['p99_ms']:>8.1f} {s['cpu_ms_per_msg']:>11.2f} {s['clamd_cpu_ms_per_msg']:>13.2f}"
            f" {s['peak_rss_mb']:>12.1f} {s['client_cpu_ms_per_msg']:>14.2f}"
        )
    if ratio:
        print(
            "\nEdgeward / amavis (median of the per-repeat ratios; peak RSS of the largest pass): "
            + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items())
            + "\n(msg/s above 1: Edgeward faster; p99, CPU and RSS above 1: Edgeward slower / costlier)"
            + "\nCPU and RSS are each stack's own processes; the shared clamd is not in them."
        )
