"""The entry point of ``serve``'s children: the delivery process and the other receiving ones.

The supervisor starts them as ``python -m edgeward serve --config FILE --role deliver|receive
...`` (``supervisor.Child``). ``__main__`` sends such a command line here rather than through
the Typer application, which imports every command's module (the agents, the scanners, the
web console): a delivery process started that way held about 120 MB, one started here about
60 MB (``bench/memory_bench.py``). The options are hidden ones, written only by the supervisor;
``edgeward serve --role`` through the full application runs the same ``run`` below.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from edgeward import eventloop
from edgeward.config.load import DEFAULT_CONFIG_PATH, load_config
from edgeward.config.schema import Config
from edgeward.errors import EdgewardError

__all__ = ["ROLES", "count_metrics", "log_to_stderr", "main", "run"]

ROLES = ("deliver", "receive")


def log_to_stderr(config: Config) -> None:
    """Every process of ``serve`` logs to standard error, its PID in each line."""
    logging.basicConfig(
        level=config.logging.level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[{os.getpid()}]: %(message)s",
        stream=sys.stderr,
    )


def count_metrics(config: Config) -> None:
    """Count in the gateway's shared metrics folder (``edgeward.metrics``), as the service user."""
    from edgeward import metrics
    from edgeward.paths import data_paths

    metrics.enable(metrics.metrics_dir(data_paths(config)["state"]))


def run(
    config: Config,
    config_path: Path,
    role: str,
    *,
    notify_fd: int,
    receiver: str = "",
    listen_fds: str = "",
    slots_fd: int = -1,
) -> None:
    """Run one child of ``serve`` (already unprivileged: it refuses to run as root)."""
    from edgeward.server.privileges import refuse_root

    log_to_stderr(config)
    refuse_root()
    count_metrics(config)  # in the folder the first process reset at start
    if role == "deliver":
        from edgeward.supervisor import serve_delivery

        eventloop.run(serve_delivery(config, config_path, notify_fd), config.server.event_loop)
        return
    from edgeward.supervisor import serve_receiver

    index, _, count = receiver.partition("/")
    fds = [int(fd) for fd in listen_fds.split(",") if fd]
    eventloop.run(
        serve_receiver(config, config_path, int(index), int(count), fds, notify_fd, slots_fd),
        config.server.event_loop,
    )


def main(argv: Sequence[str]) -> int:
    """``serve --config FILE --role ROLE ...`` as the supervisor writes it; the exit status."""
    parser = argparse.ArgumentParser(prog="edgeward serve", add_help=False)
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG_PATH)
    parser.add_argument("--role", choices=ROLES, required=True)
    parser.add_argument("--notify-fd", type=int, default=-1)
    parser.add_argument("--receiver", default="")
    parser.add_argument("--listen-fds", default="")
    parser.add_argument("--slots-fd", type=int, default=-1)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        run(
            config, args.config, args.role, notify_fd=args.notify_fd, receiver=args.receiver,
            listen_fds=args.listen_fds, slots_fd=args.slots_fd,
        )  # fmt: skip
    except OSError as exc:
        print(f"error: cannot start: {exc}", file=sys.stderr)
        return 2
    except EdgewardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
