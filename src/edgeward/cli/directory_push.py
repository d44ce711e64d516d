"""``edgeward directory subscribe|push|subscriptions|revoke``: the push over mutual TLS.

- ``subscribe`` (gateway) writes the subscription file; ``push --subscription FILE`` (inside
  host) syncs and sends the replica, enrolling with the one-time secret the first time
  (``directory.push``, ``directory.subscription``).
- ``subscriptions [--json]`` lists the enrolled hosts: serial (hex, as ``revoke`` takes it),
  subject, when and from where each enrolled, its last accepted push, whether it is revoked.
- ``revoke SERIAL`` marks a host's certificate revoked; the listener reads the enrolment at
  every push, so the next push with it is refused. Revoking twice says so and exits 0; a
  serial that is not hex, or that no host has, is exit 2.

Run as root, the files under ``state/edgesync`` stay the service user's.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from edgeward.cli.directory import JsonOption, _password, _when, directory_app, entries_progress
from edgeward.cli.queue import ConfigOption, clean, console, fail, load
from edgeward.cli.tables import add_id_column, print_table
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.config.ownership import service_owner
from edgeward.config.schema import Config, parse_duration
from edgeward.directory.replica import read_replica
from edgeward.directory.subscription import Enrolment, Subscription, SubscriptionError, parse_serial
from edgeward.paths import directory_replica_path


@directory_app.command()
def subscribe(
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    out_file: Annotated[Path, typer.Option("--out", help="Subscription file to write (0600).")] = Path(
        "edgesync-subscription.json"
    ),
    gateway: Annotated[
        str, typer.Option("--gateway", help="host:port the inside host reaches; default: push_listen.")
    ] = "",
    lifetime: Annotated[str, typer.Option("--valid", help="How long the one-time secret is valid.")] = "24h",
    reset: Annotated[bool, typer.Option("--reset", help="Forget every enrolled host first.")] = False,
) -> None:
    """Write a subscription file (gateway certificate, one-time secret) for 'directory push'."""
    from edgeward.directory.push import gateway_certificate

    config = load(config_path)
    address = gateway or config.directory.push_listen
    if not address:
        fail("set [directory] push_listen (the push listener) or give --gateway host:port")
    try:
        seconds = parse_duration(lifetime)
    except ValueError as exc:
        fail(f"--valid: {exc}")
    enrolment = _enrolment(config)
    cert, _key = gateway_certificate(config)
    secret, expires = enrolment.new_secret(seconds, reset=reset)
    Subscription(address, cert.read_text(), secret, expires).write(out_file)
    console().print(
        Text(
            f"wrote {out_file}: carry it to the inside host and run 'edgeward directory push --subscription"
            f" {out_file.name}' there before {_when(expires).split(' (')[0]}; it is a secret, delete it after"
        )
    )


def _enrolment(config: Config) -> Enrolment:
    from edgeward.directory.push import enrolment_for  # with the LDAP client: cli.directory says why

    state_dir = config.resolve(Path("state"))
    owner = service_owner(state_dir)
    return enrolment_for(config, (owner.uid, owner.gid) if owner else None)


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts > 0 else ""


def _short(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts > 0 else "-"


@directory_app.command()
def subscriptions(config_path: ConfigOption = DEFAULT_CONFIG_PATH, as_json: JsonOption = False) -> None:
    """The inside hosts enrolled to push: serial, subject, enrolled, last push, revoked."""
    config = load(config_path)
    try:
        clients = _enrolment(config).clients()
    except (OSError, ValueError, TypeError) as exc:
        fail(f"cannot read the enrolled hosts ({exc})", code=1)
    if as_json:
        rows = [
            c.as_json() | {k: _stamp(getattr(c, k)) or None for k in ("enrolled", "last_push", "revoked")}
            for c in clients
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    out = console()
    if not clients:
        out.print(Text("no enrolled host ('directory subscribe' makes a file for one)"))
        return
    table = Table()
    add_id_column(table, "serial")
    for header in ("subject", "enrolled", "last push", "state"):
        table.add_column(header)
    for c in clients:
        state = Text(f"revoked {_short(c.revoked)}", style="red") if c.revoked else Text("active")
        last = f"{_short(c.last_push)} from {clean(c.last_peer)}" if c.last_push else "never"
        table.add_row(
            c.serial_hex, clean(c.subject), f"{_short(c.enrolled)} from {clean(c.peer) or '?'}", last, state
        )
    print_table(out, table, keep=[c.serial_hex for c in clients])


@directory_app.command()
def revoke(
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    serial: Annotated[
        str, typer.Argument(help="Serial of the host's certificate, as 'subscriptions' shows it.")
    ] = "",
) -> None:
    """Refuse the client certificate SERIAL from the next push on."""
    config = load(config_path)
    try:
        number = parse_serial(serial)
        client, already = _enrolment(config).revoke(number)
    except SubscriptionError as exc:
        fail(str(exc))
    when = _stamp(client.revoked)
    note = f"was already revoked at {when}" if already else "revoked: its next push is refused"
    console().print(Text(f"{client.serial_hex} ({clean(client.subject)}) {note}"))


@directory_app.command()
def push(
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    subscription: Annotated[Path, typer.Option("--subscription", help="The file 'subscribe' wrote.")] = Path(
        "edgesync-subscription.json"
    ),
    full: Annotated[bool, typer.Option("--full", help="Read everything, not only the changes.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Apply a sync that removes more than max_delete_share.")
    ] = False,
) -> None:
    """On an inside host: read the directory and send the replica to the gateway over mutual TLS."""
    from edgeward.directory.ldap import DirectoryError
    from edgeward.directory.push import PushError, enrol
    from edgeward.directory.push import push as send_push
    from edgeward.directory.sync import SyncRefused
    from edgeward.directory.sync import sync as run_sync

    config = load(config_path)
    try:
        sub = Subscription.read(subscription)
    except SubscriptionError as exc:
        fail(str(exc))
    password = _password(config)
    path = directory_replica_path(config)
    out = console()
    with entries_progress(out) as progress:
        task = progress.add_task("reading the directory", total=None)
        try:
            run_sync(
                config.directory,
                password,
                path,
                full=full,
                force=force,
                progress=lambda n: progress.advance(task, n),
            )
            progress.update(task, description=f"sending to {sub.gateway}")
            folder = config.resolve(Path("state")) / "edgesync-client"
            identity = (folder / "client.pem", folder / "client.key")
            if not identity[0].exists():
                identity = enrol(sub, folder)
            answer = send_push(sub, read_replica(path), identity, force=force)
        except SyncRefused as exc:
            fail(f"refused: {exc}", code=1)
        except (DirectoryError, PushError, SubscriptionError) as exc:
            fail(f"push failed: {exc}", code=1)
    out.print(Text(f"pushed to {sub.gateway}: {answer['entries']} objects ({answer['removed']} removed)"))
