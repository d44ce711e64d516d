"""``edgeward directory``: sync the directory replica, show it, look addresses up, test the link.

- ``sync [--full] [--force]`` reads the directory (``[directory]``) and swaps in a new replica,
  with a progress bar; a systemd timer runs it every ``recipients_interval`` (the units and why
  a timer rather than the gateway are in docs/architecture.md, "Directory synchronisation"). Run as
  root, the replica is handed to the service user. Exit 1 when the directory cannot be read or
  the mass-delete guard holds the sync back; the previous replica stays in both cases.
- ``status [--json]``: last full, incremental and configuration sync, counts, age, staleness.
- ``lookup ADDRESS [--check-sender ADDR] [--json]``: what the replica knows of an address
  (exit 1: nothing); the users' lists are digests, shown by size, and ``--check-sender`` says
  whether ADDR (or its domain) is on each.
- ``test``: connect, TLS, bind and one search; writes nothing.
- ``subscribe``, ``push``, ``subscriptions`` and ``revoke``, the push over mutual TLS, are in
  ``cli.directory_push``.

Exit codes: 0 done, 1 the action failed, 2 bad input or configuration.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from edgeward.cli.queue import ConfigOption, clean, console, duration, fail, load
from edgeward.cli.tables import print_table
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.config.ownership import service_owner
from edgeward.config.schema import Config
from edgeward.directory.lists import listed
from edgeward.directory.replica import ReplicaState, age, read_replica
from edgeward.paths import directory_replica_path
from edgeward.types import Address

directory_app = typer.Typer(
    help="Directory synchronisation: sync, status, lookup, test, subscribe, push, subscriptions, revoke.",
    no_args_is_help=True,
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def entries_progress(out: Console) -> Progress:
    """The bar of a directory read: entries counted as they arrive (the total is unknown)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed} entries"),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    )


# The LDAP client (ldap3, about 4 MB) is imported by the commands that talk to the directory,
# not with the application: `edgeward serve` is this application too, and never needs it.


def _password(config: Config) -> str:
    from edgeward.directory.ldap import DirectoryError, read_password

    cfg = config.directory
    if not cfg.urls or not cfg.base_dn:
        fail("[directory] needs urls and base_dn")
    try:
        return read_password(config.resolve(cfg.password_file) if cfg.password_file else None)
    except DirectoryError as exc:
        fail(str(exc))


@directory_app.command()
def sync(
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    full: Annotated[bool, typer.Option("--full", help="Read everything, not only the changes.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Apply a sync that removes more than max_delete_share.")
    ] = False,
) -> None:
    """Read the directory and replace the replica (changes only, after the first full sync)."""
    from edgeward.directory.ldap import DirectoryError
    from edgeward.directory.sync import SyncRefused
    from edgeward.directory.sync import sync as run_sync

    config = load(config_path)
    password = _password(config)
    path = directory_replica_path(config)
    owner = service_owner(path.parent)
    out = console()
    with entries_progress(out) as progress:
        task = progress.add_task("reading the directory", total=None)
        try:
            report = run_sync(
                config.directory,
                password,
                path,
                full=full,
                force=force,
                progress=lambda n: progress.advance(task, n),
                owner=(owner.uid, owner.gid) if owner else None,
            )
        except SyncRefused as exc:
            fail(f"refused: {exc}", code=1)
        except DirectoryError as exc:
            fail(f"directory unavailable, the replica is unchanged: {exc}", code=1)
    kind = "full" if report.full else "incremental"
    out.print(
        Text(
            f"{kind} sync: {report.entries} objects ({report.added} added, {report.removed} removed,"
            f" {report.changed} read), {report.domains} accepted domains, in {report.seconds:.1f}s"
        )
    )


def _replica(config: Config) -> ReplicaState:
    path = directory_replica_path(config)
    try:
        return read_replica(path)
    except FileNotFoundError:
        fail(f"{path}: no replica yet (run 'edgeward directory sync')", code=1)
    except Exception as exc:
        fail(f"{path}: cannot read the replica ({exc})", code=1)


def _when(ts: float) -> str:
    if ts <= 0:
        return "never"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(ts))} ({duration(time.time() - ts)} ago)"


@directory_app.command()
def status(config_path: ConfigOption = DEFAULT_CONFIG_PATH, as_json: JsonOption = False) -> None:
    """Last syncs, counts, age of the replica."""
    config = load(config_path)
    state = _replica(config)
    cfg, meta = config.directory, state.meta
    current = age(meta)
    stale = cfg.max_age > 0 and (current is None or current > cfg.max_age)
    info: dict[str, Any] = {
        **asdict(meta),
        "age": current,
        "stale": stale,
        "stale_action": cfg.stale_action,
        "counts": state.counts(),
        "domains": sorted(state.domains),
    }
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    out = console()
    table = Table(show_header=False, box=None)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("source", clean(meta.source) or "-")
    table.add_row("last full sync", _when(meta.last_full))
    table.add_row("last incremental", _when(meta.last_incremental))
    table.add_row("last domain sync", _when(meta.last_config))
    table.add_row("change marker", clean(meta.marker) or "-")
    flag = (
        Text(f"STALE (older than {duration(cfg.max_age)}; {cfg.stale_action})", style="red")
        if stale
        else Text("fresh")
    )
    table.add_row("state", flag)
    lists = (
        Text("SHA-256 digests")
        if meta.list_format == "sha256"
        else Text("in clear (an earlier format; the next sync or push rewrites them hashed)", style="yellow")
    )
    table.add_row("sender lists", lists)
    for name, count in state.counts().items():
        table.add_row(name, str(count))
    table.add_row("accepted domains", clean(", ".join(sorted(state.domains))) or "-")
    print_table(out, table)


_LISTS = ("safe_senders", "blocked_senders", "safe_recipients")


def _address(text: str, what: str) -> Address:
    wanted = text.strip().lower()
    local, at, domain = wanted.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in wanted):
        fail(f"{what}{text!r}: give an address user@domain")
    return Address(local, domain)


@directory_app.command()
def lookup(
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    address: Annotated[str, typer.Argument(help="The address to look up.")] = "",
    check_sender: Annotated[
        str, typer.Option("--check-sender", help="Say whether this address is on each of the user's lists.")
    ] = "",
    as_json: JsonOption = False,
) -> None:
    """What the replica knows of ADDRESS: object, kind, addresses, groups, list sizes.

    The lists are kept as digests, so they are shown by size; --check-sender says whether an
    address (or its domain) is on them."""
    config = load(config_path)
    wanted = str(_address(address, ""))
    sender = _address(check_sender, "--check-sender ") if check_sender else None
    state = _replica(config)
    entry = state.by_address.get(wanted)
    if entry is None:
        if as_json:
            typer.echo(json.dumps({"address": wanted, "found": False}))
        else:
            console().print(Text(f"{clean(wanted)}: not in the replica"))
        raise typer.Exit(1)
    groups = state.groups_of(entry)
    values = dict(zip(_LISTS, (entry.safe, entry.blocked, entry.safe_recipients), strict=True))
    found: dict[str, Any] = {
        "address": wanted,
        "found": True,
        "id": entry.id,
        "dn": entry.dn,
        "kind": entry.kind,
        "addresses": list(entry.addresses),
        "groups": [g.dn for g in groups],
        "lists": {name: len(v) for name, v in values.items()},
    }
    if sender is not None:
        found["sender"] = {"address": str(sender), **{n: listed(v, sender) for n, v in values.items()}}
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    table = Table(show_header=False, box=None)
    table.add_column("what", style="bold")
    table.add_column("value")
    for key in ("id", "dn", "kind", "addresses", "groups"):
        value = found[key]
        text = ", ".join(value) if isinstance(value, list) else str(value)
        table.add_row(key, clean(text) or "-")
    for name, size in found["lists"].items():
        cell = f"{size} {'entry' if size == 1 else 'entries'}"
        if sender is not None:
            on = found["sender"][name]
            cell += f"; {clean(str(sender))} {'is on it' if on else 'is not on it'}"
        table.add_row(name.replace("_", " "), cell)
    print_table(console(), table)


@directory_app.command()
def test(config_path: ConfigOption = DEFAULT_CONFIG_PATH) -> None:
    """Connect, check TLS, bind and search once; nothing is written."""
    from edgeward.directory.ldap import DirectoryError, LdapDirectory
    from edgeward.directory.sync import Mapper

    config = load(config_path)
    password = _password(config)
    cfg = config.directory
    out = console()
    try:
        with LdapDirectory(cfg, password) as directory:
            conn = directory.conn
            assert conn is not None
            sock = conn.socket
            tls = f"{sock.version()} {sock.cipher()[0]}" if hasattr(sock, "version") else "none (loopback)"
            out.print(Text(f"connected: {directory.url}"))
            out.print(Text(f"TLS: {tls}, certificate verified"))
            out.print(Text(f"bound as: {cfg.bind_dn}"))
            conn.search(
                cfg.base_dn, cfg.attr("object_filter"), attributes=Mapper(cfg).attributes(), paged_size=1
            )
            entries = [r for r in conn.response or () if r.get("type") == "searchResEntry"]
            out.print(Text(f"search of {cfg.base_dn}: {'an entry found' if entries else 'no entry matched'}"))
    except DirectoryError as exc:
        fail(f"directory test failed: {exc}", code=1)
    except Exception as exc:  # an LDAP error of the one search
        fail(f"directory test failed: {exc}", code=1)
