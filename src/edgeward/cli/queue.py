"""``edgeward queue``: the queue viewer and its actions (Exchange's Queue Viewer and queue cmdlets).

``list``, ``show``, ``retry``, ``hold``, ``release``, ``remove`` and ``export`` act on the spool
directly, so they work whether or not the gateway runs: every spool operation is an atomic
rename, and the running queue manager rescans its folders. Run as root, every file they write
is given to the spool's owner (the service user), and ``hold``, ``release`` and ``remove`` write
HOLD, RELEASE and REMOVE events to the tracking log; they go through ``queue.admin``, as the web
console's queue viewer does, so both refuse the same states and track alike.

Security: everything shown comes from mail senders; control characters are escaped before they
reach the terminal and nothing is interpreted as Rich markup. ``export`` writes a new 0600 file
and never overwrites one.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edgeward.cli.tables import print_table
from edgeward.config.load import DEFAULT_CONFIG_PATH, load_config
from edgeward.config.schema import Config
from edgeward.errors import ConfigError, QueueError
from edgeward.logs.adminlog import track_admin, track_record
from edgeward.logs.why import escape_controls as clean
from edgeward.ports import SystemClock
from edgeward.queue.admin import QueueAdmin, header_lines
from edgeward.queue.model import MessageRecord, QueueState, RecipientRecord, record_to_dict
from edgeward.queue.spool import Spool

__all__ = ["clean", "console", "duration", "err_console", "fail", "load", "queue_app"]

queue_app = typer.Typer(help="View and act on the message queue.", no_args_is_help=True)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Configuration file.")]
SpoolOption = Annotated[
    Path | None,
    typer.Option("--spool", help="Spool folder (default: <data_dir>/queue from the configuration)."),
]
IdArgument = Annotated[str, typer.Argument(help="Queue id, as shown by 'queue list'.")]
# -- helpers shared with the other CLI commands (``cli.track``) ---------------------------------


def console() -> Console:
    return Console(highlight=False)


def err_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, *, code: int = 2) -> NoReturn:
    """Print ``message`` to standard error and exit (2: bad input, 1: the action failed)."""
    err_console().print(Text(message))
    raise typer.Exit(code)


def load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc))


def duration(seconds: float) -> str:
    """``90`` -> ``1m30s``; ``93784`` -> ``1d2h``: two units at most, for tables."""
    seconds = max(int(seconds), 0)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts[:2])


# -- commands ----------------------------------------------------------------------------------


def tracking_config(config_path: Path, spool_dir: Path | None) -> Config | None:
    """The configuration naming the tracking log, if there is one (``--spool`` may go without)."""
    if spool_dir is None or config_path.exists():
        return load(config_path)
    return None


def open_spool(config_path: Path, spool_dir: Path | None) -> Spool:
    fsync, threshold = True, 2
    config = tracking_config(config_path, spool_dir)
    if config is not None:
        fsync, threshold = config.queue.fsync, config.queue.poison_threshold
    if spool_dir is None:
        assert config is not None
        spool_dir = config.resolve(Path("queue"))
    if not spool_dir.is_dir():
        fail(f"no queue at {spool_dir}")

    def corrupt(msg_id: str, reason: str) -> None:
        track_admin(config, "CORRUPT", msg_id=msg_id, detail=f"queue {reason}")

    return Spool(spool_dir, fsync=fsync, poison_threshold=threshold, on_corrupt=corrupt)


def _unknown(msg_id: str) -> NoReturn:
    fail(f"no message with id {clean(msg_id)} in the queue")


def _as_json(record: MessageRecord) -> dict[str, Any]:
    out = record_to_dict(record)
    del out["v"]
    out["state"] = record.state.value
    return out


def _next_attempt(record: MessageRecord, now: float) -> str:
    if record.state is QueueState.HOLD:
        return f"held ({record.hold_reason})"
    if record.state is QueueState.ACTIVE:
        return "in delivery"
    if record.state is QueueState.CORRUPT:
        return "never (corrupt)"
    if record.state is QueueState.INCOMING or record.next_attempt_at <= now:
        return "due"
    return f"in {duration(record.next_attempt_at - now)}"


@queue_app.command("list")
def list_messages(
    state: Annotated[
        QueueState | None, typer.Option("--state", "-s", case_sensitive=False, help="Only this state.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    spool_dir: SpoolOption = None,
) -> None:
    """List queued messages, oldest first."""
    spool = open_spool(config, spool_dir)
    records = spool.list(state)
    if as_json:
        typer.echo(json.dumps([_as_json(r) for r in records], indent=2, ensure_ascii=False))
        return
    now = SystemClock().now()
    counts = spool.counts()
    table = Table(
        caption=", ".join(f"{s.value} {counts[s]}" for s in QueueState),
        caption_justify="left",
    )
    for column in ("ID", "State", "Age", "Sender", "Rcpts", "Size", "Attempts", "Next attempt", "Last reply"):
        table.add_column(column, no_wrap=column in ("ID", "State"))
    for r in records:
        table.add_row(
            *(
                Text(clean(cell))
                for cell in (
                    r.id,
                    r.state.value,
                    duration(now - r.received_at),
                    r.mail_from or "<>",
                    str(len(r.recipients)),
                    str(r.size),
                    str(r.attempts),
                    _next_attempt(r, now),
                    r.last_reply,
                )
            )
        )
    print_table(console(), table, keep=[clean(r.id) for r in records])


@queue_app.command()
def show(
    msg_id: IdArgument,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of tables.")] = False,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    spool_dir: SpoolOption = None,
) -> None:
    """Show one message: envelope, per-recipient status and headers."""
    spool = open_spool(config, spool_dir)
    try:
        record = spool.load(msg_id)
    except KeyError:
        _unknown(msg_id)
    headers = list(header_lines(spool, msg_id))  # none when a corrupt entry's data is gone
    if as_json:
        typer.echo(json.dumps({**_as_json(record), "headers": headers}, indent=2, ensure_ascii=False))
        return
    out = console()
    now = SystemClock().now()
    meta = Table(show_header=False, box=None)
    meta.add_column(style="bold")
    meta.add_column()
    fields = {
        "id": record.id,
        "state": record.state.value + (f" ({record.hold_reason})" if record.hold_reason else ""),
        "sender": record.mail_from or "<>",
        "received": f"{duration(now - record.received_at)} ago",
        "client": f"{record.client_ip} ({record.client_helo})",
        "connector": record.connector,
        "message-id": record.message_id,
        "size": str(record.size),
        "attempts": str(record.attempts),
        "next attempt": _next_attempt(record, now),
        "dsn": f"envid={record.envid} ret={record.ret}",
        "crashes": str(record.crash_count),
    }
    for key, value in fields.items():
        meta.add_row(key, Text(clean(value)))
    print_table(out, meta, keep=[clean(record.id), clean(record.message_id)])
    rcpts = Table("Recipient", "Status", "Attempts", "Last reply", "Notify")
    for r in record.recipients:
        cells = (r.address, r.status.value, str(r.attempts), r.last_reply, ",".join(r.notify) or "default")
        rcpts.add_row(*(Text(clean(c)) for c in cells))
    out.print(rcpts)
    out.print(Text("\n".join(clean(h) for h in headers) or "(no message data)"))


@queue_app.command()
def retry(
    msg_id: Annotated[str | None, typer.Argument(help="Queue id; or use --all.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every deferred message.")] = False,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    spool_dir: SpoolOption = None,
) -> None:
    """Make deferred messages due now."""
    if (msg_id is None) == (not all_):
        fail("give a queue id or --all (not both)")
    spool = open_spool(config, spool_dir)
    try:
        count = spool.retry(msg_id)
    except KeyError:
        _unknown(msg_id or "")
    if msg_id is not None and count == 0:
        state = spool.load(msg_id).state.value
        err_console().print(Text(f"message {clean(msg_id)} is {state}, not deferred: nothing to retry"))
        return
    typer.echo(f"{count} message(s) will be retried now")


def _act(action: str, msg_id: str, config: Path, spool_dir: Path | None, **kw: str) -> MessageRecord:
    """``queue.admin``'s ``action`` (tracked, as the web console's), and the record as it is
    afterwards (or was, if removed)."""
    spool = open_spool(config, spool_dir)
    admin = QueueAdmin(lambda: spool, tracking_config(config, spool_dir))
    try:
        record: MessageRecord = getattr(admin, action)(msg_id, by="administrator", **kw)
    except KeyError:
        _unknown(msg_id)
    except QueueError as exc:
        fail(str(exc), code=1)
    return record


@queue_app.command()
def hold(
    msg_id: IdArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why, shown by 'queue list'.")] = "admin",
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    spool_dir: SpoolOption = None,
) -> None:
    """Hold a message: it is not delivered until released."""
    _act("hold", msg_id, config, spool_dir, reason=reason)
    typer.echo(f"held {msg_id}")


@queue_app.command()
def release(
    msg_id: IdArgument, config: ConfigOption = DEFAULT_CONFIG_PATH, spool_dir: SpoolOption = None
) -> None:
    """Release a held (or repaired corrupt) message for delivery now."""
    _act("release", msg_id, config, spool_dir)
    typer.echo(f"released {msg_id}")


@queue_app.command()
def remove(
    msg_id: IdArgument,
    ndr: Annotated[
        bool, typer.Option("--ndr/--no-ndr", help="Send a non-delivery report to the sender.")
    ] = False,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    spool_dir: SpoolOption = None,
) -> None:
    """Delete a message from the queue (with --ndr, tell the sender it was not delivered)."""
    settings = tracking_config(config, spool_dir)
    if not ndr:
        _act("remove", msg_id, config, spool_dir)
        typer.echo(f"removed {msg_id}")
        return
    spool = open_spool(config, spool_dir)
    try:
        data = spool.export(msg_id)
        record = spool.remove(msg_id)
    except KeyError:
        _unknown(msg_id)
    except QueueError as exc:
        fail(str(exc), code=1)
    typer.echo(f"removed {msg_id}")
    if not record.mail_from:
        track_record(settings, "REMOVE", record, detail="by administrator; no report to a null sender")
        typer.echo("no report: the sender is null")
        return
    hostname = settings.server.hostname if settings is not None else "localhost"
    dsn_id = asyncio.run(_removal_ndr(spool, record, data, hostname))
    track_record(settings, "REMOVE", record, detail=f"by administrator; failure notice queued as {dsn_id}")
    typer.echo(f"non-delivery report queued as {dsn_id}")


async def _removal_ndr(spool: Spool, record: MessageRecord, data: bytes, hostname: str) -> str:
    """Queue a failure DSN (RFC 3464) to the sender for the recipients still undelivered."""
    from edgeward.delivery.dsn import build_dsn

    reason = "550 5.3.0 Message deleted from the queue by the administrator"
    body = build_dsn(record, [(r, reason) for r in record.recipients if not r.done], "failure", data,
                     hostname, time.time())  # fmt: skip
    dsn = MessageRecord(id="", mail_from="", recipients=(RecipientRecord(record.mail_from),),
                        received_at=time.time(), size=len(body), connector="dsn")  # fmt: skip
    return await spool.accept(dsn, body)


@queue_app.command()
def export(
    msg_id: IdArgument,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this new file.")] = None,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    spool_dir: SpoolOption = None,
) -> None:
    """Write the raw message (RFC 5322, CRLF) to standard output or a file."""
    spool = open_spool(config, spool_dir)
    try:
        data = spool.export(msg_id)
    except KeyError:
        _unknown(msg_id)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        fail(f"{output} exists; not overwriting it")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}", code=1)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    err_console().print(Text(f"wrote {len(data)} bytes to {output}"))
