"""``edgeward notify``: the administrators' notifications from a shell.

* ``test [-c CONFIG] [--channel email|syslog|webhook] [--json]``: one ``test`` event through
  the configured channels (or the one named), bypassing the rate limit, and each channel's
  result. The e-mail notice is put in the spool, where the running gateway's queue manager
  finds it at its next scan; syslog gets the message; the webhook gets a real signed POST.

Exit codes: 0 every channel tried succeeded, 1 one failed, 2 bad input (no channel configured,
an unknown channel, a configuration that does not load).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Literal

import typer
from rich.text import Text

from edgeward.cli.queue import ConfigOption, console, fail, load
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.errors import ConfigError
from edgeward.notify.build import build_notifier
from edgeward.notify.notifier import ChannelResult
from edgeward.paths import data_paths
from edgeward.queue.spool import Spool

notify_app = typer.Typer(help="Notifications to administrators: test.", no_args_is_help=True)

ChannelName = Literal["email", "syslog", "webhook"]


@notify_app.command("test")
def test(
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    channel: Annotated[
        ChannelName | None, typer.Option("--channel", help="Only this channel: email, syslog or webhook.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Send a test notice through the configured channels and report each result."""
    config = load(config_path)
    queue = config.queue
    accept = None
    if config.notify.admin_addresses:
        # Files the spool writes as root are handed to the spool folder's owner
        # (config.ownership), so the gateway's service user can deliver the notice.
        spool = Spool(data_paths(config)["queue"], fsync=queue.fsync, poison_threshold=queue.poison_threshold)
        accept = spool.accept
    try:
        notifier = build_notifier(config, accept)
    except ConfigError as exc:
        fail(str(exc))
    if notifier is None:
        fail("no notification channel is configured ([notify] admin_addresses, syslog or webhook)")
    names = [c.name for c in notifier.channels]
    if channel is not None and channel not in names:
        fail(f"the {channel} channel is not configured (configured: {', '.join(names)})")

    async def run() -> list[ChannelResult]:
        try:
            return await notifier.test(channel)
        finally:
            for c in notifier.channels:
                await c.close()

    results = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps([{"channel": r.channel, "ok": r.ok, "detail": r.detail} for r in results]))
    else:
        out = console()
        for r in results:
            out.print(Text(f"{r.channel:8} {'ok' if r.ok else 'FAILED'}  {r.detail}"))
    raise typer.Exit(0 if all(r.ok for r in results) else 1)
