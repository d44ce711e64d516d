"""``edgeward track``: search the message tracking log (Exchange's Get-MessageTrackingLog).

Criteria combine (all must match); addresses match case-insensitively; ``--since``/``--until``
take ISO-8601 dates or times (UTC unless they carry an offset) or an age such as ``30m``, ``2h``,
``3d``, ``1w``. Mount with ``app.add_typer(track_app, name="track")``.

Security: entries come from mail senders; the table escapes control characters and no text is
read as Rich markup.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from edgeward.cli.queue import clean, console, err_console, fail, load
from edgeward.cli.tables import add_id_column, print_table
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.logs.tracking import TrackingEvent, search
from edgeward.logs.why import explain, findings_cell
from edgeward.logs.why import parse_when as _parse_when
from edgeward.ports import Clock

__all__ = ["explain", "findings_cell", "parse_when", "track", "track_app", "why"]

track_app = typer.Typer(help="Search the message tracking log.")


def parse_when(text: str, clock: Clock | None = None) -> datetime:
    """:func:`edgeward.logs.why.parse_when`, as a command-line parameter error."""
    try:
        return _parse_when(text, clock)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _event(value: str | None) -> TrackingEvent | None:
    if value is None:
        return None
    try:
        return TrackingEvent(value.upper())
    except ValueError:
        names = ", ".join(e.value for e in TrackingEvent)
        raise typer.BadParameter(f"unknown event {value!r}; one of {names}") from None


@track_app.callback(invoke_without_command=True)
def track(
    ctx: typer.Context,
    sender: Annotated[str | None, typer.Option("--sender", help="Envelope sender.")] = None,
    recipient: Annotated[str | None, typer.Option("--recipient", help="One of the recipients.")] = None,
    message_id: Annotated[str | None, typer.Option("--message-id", help="Message-ID header value.")] = None,
    msg_id: Annotated[str | None, typer.Option("--id", help="Queue id.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO date/time or age (2h, 3d).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO date/time or age (2h, 3d).")] = None,
    event: Annotated[str | None, typer.Option("--event", help="RECEIVE, SEND, DEFER, FAIL ...")] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Stop after this many (0: all).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    config: Annotated[Path, typer.Option("--config", "-c", help="Configuration file.")] = DEFAULT_CONFIG_PATH,
    log_dir: Annotated[
        Path | None, typer.Option("--log-dir", help="Log folder (default: logging.dir).")
    ] = None,
) -> None:
    """Search the message tracking log, oldest entries first (``track why`` explains one message)."""
    if ctx.invoked_subcommand is not None:
        return
    wanted_event = _event(event)
    since_dt = parse_when(since) if since else None
    until_dt = parse_when(until) if until else None
    if log_dir is None:
        cfg = load(config)
        log_dir = cfg.resolve(cfg.logging.dir)
    if not log_dir.is_dir():
        fail(f"no log folder at {log_dir}")
    found = search(
        log_dir,
        sender=sender,
        recipient=recipient,
        message_id=message_id,
        msg_id=msg_id,
        since=since_dt,
        until=until_dt,
        event=wanted_event,
    )
    rows = []
    for n, entry in enumerate(found, 1):
        if as_json:
            typer.echo(json.dumps(entry, ensure_ascii=False))
        else:
            rows.append(entry)
        if n == limit:
            break
    if as_json:
        return
    if not rows:
        err_console().print("no matching entries")
        return
    table = Table("Time", "Event")
    add_id_column(table, "ID")
    for column in ("Sender", "Recipients", "Reply / detail", "Findings"):
        table.add_column(column, overflow="fold")
    for e in rows:
        reply = " ".join(str(x) for x in (e.get("reply"), e.get("detail"), e.get("next_hop")) if x)
        cells = (
            str(e.get("time", "")),
            str(e.get("event", "")),
            str(e.get("msg_id", "")),
            str(e.get("sender", "")) or "<>",
            ", ".join(str(r) for r in e.get("recipients") or ()),
            reply,
            findings_cell(e),
        )
        table.add_row(*(Text(clean(c)) for c in cells))
    print_table(console(), table, keep=[clean(str(e.get("msg_id", ""))) for e in rows])


@track_app.command("why")
def why(
    msg_id: Annotated[str | None, typer.Argument(help="Queue id.")] = None,
    message_id: Annotated[str | None, typer.Option("--message-id", help="Message-ID header value.")] = None,
    config: Annotated[Path, typer.Option("--config", "-c", help="Configuration file.")] = DEFAULT_CONFIG_PATH,
    log_dir: Annotated[
        Path | None, typer.Option("--log-dir", help="Log folder (default: logging.dir).")
    ] = None,
) -> None:
    """Why a message was received, quarantined or refused: every finding, its agent, stage and
    score, and the rule that decided (a threshold and the total, or an agent's hard decision)."""
    if (msg_id is None) == (message_id is None):
        raise typer.BadParameter("give a queue id or --message-id, not both")
    if log_dir is None:
        cfg = load(config)
        log_dir = cfg.resolve(cfg.logging.dir)
    if not log_dir.is_dir():
        fail(f"no log folder at {log_dir}")
    found = list(search(log_dir, msg_id=msg_id, message_id=message_id))
    if message_id is not None:  # the queue ids it had, so the events without a Message-ID count too
        ids = {str(e.get("msg_id")) for e in found if e.get("msg_id")}
        found = [e for i in sorted(ids) for e in search(log_dir, msg_id=i)] or found
    lines = explain(found)
    if not lines:
        fail(f"no verdict for {msg_id or message_id} in the tracking log")
    for line in lines:
        typer.echo(line)
