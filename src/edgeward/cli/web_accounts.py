"""``edgeward web user totp enable|disable NAME``, ``web user address add|remove NAME ADDR``
and ``edgeward web audit``.

``totp enable`` makes a new secret (replacing any: the way to re-enrol a lost phone), prints
the ``otpauth://`` URI and the secret once on standard output, for an authenticator app to
take (no QR code: no QR library is shipped), and from the next login the account is asked for
a code after its password. ``totp disable`` removes it. Both are written to the audit log.

``web audit [--actor X] [--action A] [--since T] [--until T] [--limit N] [--json]`` prints the
audit log, newest first; times are ISO-8601 or ages such as ``2h``, as for ``edgeward track``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from edgeward.auth.users import UserError
from edgeward.cli.queue import ConfigOption, clean, console, fail, load
from edgeward.cli.tables import print_table
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.logs.audit import audit, audit_query, read_audit
from edgeward.web.auth import WebAccounts
from edgeward.web.enduser import check_address
from edgeward.web.totp import otpauth_uri

__all__ = ["register"]

totp_app = typer.Typer(help="TOTP second factor for a console account.", no_args_is_help=True)
address_app = typer.Typer(help="The addresses of an end-user account.", no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(help="Account name.")]


@totp_app.command("enable")
def totp_enable(name: NameArg, config: ConfigOption = DEFAULT_CONFIG_PATH) -> None:
    """Enrol the account in TOTP (a new secret, shown once; replaces an old one)."""
    cfg = load(config)
    accounts = WebAccounts(cfg.resolve(Path("state")))
    account = accounts.get(name)
    if account is None:
        fail(f"no console account named {clean(name)!r}")
    secret = accounts.totp.enable(account.name)
    audit(cfg, "totp.enable", target=account.name)
    typer.echo(otpauth_uri(secret, account.name, f"Edgeward {cfg.server.hostname}"))
    typer.echo(f"secret: {secret}")
    console().print(Text("Shown once: add it to an authenticator app now; logins ask for its code."))


@totp_app.command("disable")
def totp_disable(name: NameArg, config: ConfigOption = DEFAULT_CONFIG_PATH) -> None:
    """Remove the account's TOTP secret (password-only logins again, unless required)."""
    cfg = load(config)
    accounts = WebAccounts(cfg.resolve(Path("state")))
    account = accounts.get(name)
    if account is None:
        fail(f"no console account named {clean(name)!r}")
    if not accounts.totp.disable(account.name):
        fail(f"{clean(account.name)!r} has no TOTP enrolled")
    audit(cfg, "totp.disable", target=account.name)
    console().print(Text(f"TOTP disabled for {clean(account.name)}"))


@address_app.command("add")
def address_add(
    name: NameArg,
    addresses: Annotated[list[str], typer.Argument(help="Addresses the end user receives.")],
    config: ConfigOption = DEFAULT_CONFIG_PATH,
) -> None:
    """Give an end user more addresses."""
    cfg = load(config)
    accounts = WebAccounts(cfg.resolve(Path("state")))
    account = accounts.get(name)
    if account is None or account.role != "user":
        fail(f"no end-user account named {clean(name)!r}")
    try:
        checked = [check_address(a) for a in addresses]
    except UserError as exc:
        fail(str(exc))
    accounts.endusers.add_addresses(account.name, checked)
    audit(cfg, "account.address.add", target=account.name, detail=" ".join(checked))
    console().print(
        Text(f"{clean(account.name)} receives {clean(', '.join(accounts.endusers.addresses(account.name)))}")
    )


@address_app.command("remove")
def address_remove(
    name: NameArg,
    address: Annotated[str, typer.Argument(help="The address to take away.")],
    config: ConfigOption = DEFAULT_CONFIG_PATH,
) -> None:
    """Take an address from an end user (its mail is no longer theirs to see)."""
    cfg = load(config)
    accounts = WebAccounts(cfg.resolve(Path("state")))
    account = accounts.get(name)
    if account is None:
        fail(f"no console account named {clean(name)!r}")
    try:
        accounts.endusers.remove_address(account.name, address)
    except UserError as exc:
        fail(str(exc))
    audit(cfg, "account.address.remove", target=account.name, detail=address.strip().lower())
    console().print(Text(f"removed {clean(address)} from {clean(account.name)}"))


def audit_command(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    actor: Annotated[str, typer.Option("--actor", help="Part of the actor's name.")] = "",
    action: Annotated[str, typer.Option("--action", help="Action prefix (login, message.release ...).")] = "",
    since: Annotated[str, typer.Option("--since", help="ISO-8601 or an age such as 2h.")] = "",
    until: Annotated[str, typer.Option("--until", help="ISO-8601 or an age such as 2h.")] = "",
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000, help="At most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the audit log of administrative actions, newest first."""
    cfg = load(config)
    try:
        query = audit_query(actor, action, since, until, size=limit)
    except ValueError as exc:
        fail(str(exc))
    entries, total = read_audit(cfg, query)
    if as_json:
        typer.echo(json.dumps(entries))
        return
    table = Table()
    for header in ("Time", "Actor", "Via", "From", "Action", "Target", "Detail"):
        table.add_column(header)
    for e in entries:
        table.add_row(*(Text(clean(str(e[k]))) for k in ("time", "actor", "via", "source", "action",
                                                          "target", "detail")))  # fmt: skip
    print_table(console(), table, keep=[])
    if total > len(entries):
        console().print(Text(f"{len(entries)} of {total} shown; narrow the search or raise --limit"))


def register(web_app: typer.Typer, user_app: typer.Typer) -> None:
    user_app.add_typer(totp_app, name="totp")
    user_app.add_typer(address_app, name="address")
    web_app.command("audit")(audit_command)
