"""``edgeward user``: the accounts that may use SMTP AUTH (add, remove, list, passwd, disable, enable)
and the sender addresses each may use (``user address add|remove|list``; see ``auth.addresses``).

The commands act on the state database directly (``<data_dir>/state/edgeward.db`` from the
configuration, or ``--state``), so they work whether or not the gateway runs: SQLite's WAL mode
lets the CLI write while the gateway reads. Mount with ``app.add_typer(user_app, name="user")``.

Passwords are read from a hidden prompt, asked twice, or with ``--password-stdin`` from the first
line of standard input (for scripts; never from the command line, where ``ps`` and shell history
would show them). Errors the operator can fix exit with code 2.

Security: no command prints a password or a hash; names are printed with control characters
escaped and nothing is read as Rich markup.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edgeward.auth.addresses import AccountAddresses, normalize_address
from edgeward.auth.users import UserError, UserInfo, UserStore
from edgeward.cli.tables import print_table
from edgeward.config.load import DEFAULT_CONFIG_PATH, load_config
from edgeward.errors import ConfigError
from edgeward.state.sqlite import DB_FILENAME, StateStore, StateStoreError

__all__ = ["user_app"]

user_app = typer.Typer(help="Accounts for SMTP AUTH.", no_args_is_help=True)
address_app = typer.Typer(help="The sender addresses an account may use after AUTH.", no_args_is_help=True)
user_app.add_typer(address_app, name="address")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Configuration file.")]
StateOption = Annotated[
    Path | None,
    typer.Option("--state", help="State database (default: <data_dir>/state/edgeward.db)."),
]
NameArgument = Annotated[str, typer.Argument(help="User name (compared case-insensitively).")]
AddressOption = Annotated[
    list[str] | None,
    typer.Option(
        "--address", "-a", help="A sender address (or @domain) the account may use; repeat for more."
    ),
]
AddressArgument = Annotated[str, typer.Argument(help="An address (local@domain) or @domain.")]
StdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
]


def _fail(message: str, *, code: int = 2) -> NoReturn:
    Console(stderr=True, highlight=False, soft_wrap=True).print(Text(f"error: {message}"))
    raise typer.Exit(code)


def _say(message: str) -> None:
    Console(highlight=False).print(Text(message))


def _clean(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _db_path(config: Path, state: Path | None) -> Path:
    if state is not None:
        return state
    try:
        loaded = load_config(config)
    except ConfigError as exc:
        _fail(str(exc))
    return loaded.resolve(Path("state")) / DB_FILENAME


@contextmanager
def _users(config: Path, state: Path | None, *, create: bool = False) -> Iterator[UserStore]:
    path = _db_path(config, state)
    store = StateStore(path, create=create)
    try:
        store.connect()
    except StateStoreError as exc:
        _fail(str(exc))
    try:
        yield UserStore(store)
    except (UserError, StateStoreError) as exc:
        _fail(str(exc))
    finally:
        store.close()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # The whole line: cutting it short would silently store a different password.
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        _fail("the password is empty")
    return password


@user_app.command("add")
def add(
    name: NameArgument,
    address: AddressOption = None,
    password_stdin: StdinOption = False,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    state: StateOption = None,
) -> None:
    """Add an account (the state database is created if needed).

    It may send as its name when the name is an address, and as each --address.
    """
    with _users(config, state, create=True) as users:
        # Check the name and addresses before asking for a password typed in vain.
        if users.get(name) is not None:
            _fail(f"user {_clean(name)!r} exists")
        for value in address or ():
            normalize_address(value)
        info = users.add(name, _read_password(password_stdin))
        addresses = AccountAddresses(users.state)
        for value in address or ():
            addresses.add(info.name, value)
    _say(f"added user {_clean(info.name)}")


@address_app.command("add")
def address_add(
    name: NameArgument,
    address: AddressArgument,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    state: StateOption = None,
) -> None:
    """Let an account send as an address (or as any address of @domain)."""
    with _users(config, state) as users:
        stored = AccountAddresses(users.state).add(name, address)
    _say(f"{_clean(name)} may send as {_clean(stored)}")


@address_app.command("remove")
def address_remove(
    name: NameArgument,
    address: AddressArgument,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    state: StateOption = None,
) -> None:
    """Take an address away from an account."""
    with _users(config, state) as users:
        AccountAddresses(users.state).remove(name, address)
    _say(f"{_clean(name)} may no longer send as {_clean(address)}")


@address_app.command("list")
def address_list(
    name: NameArgument, config: ConfigOption = DEFAULT_CONFIG_PATH, state: StateOption = None
) -> None:
    """The addresses an account may send as (its name too, when that is an address)."""
    with _users(config, state) as users:
        if users.get(name) is None:
            _fail(f"no user {_clean(name)!r}")
        added = AccountAddresses(users.state).list(name)
    for value in added:
        _say(_clean(value))
    if not added:
        _say("no addresses added")


@user_app.command("remove")
def remove(name: NameArgument, config: ConfigOption = DEFAULT_CONFIG_PATH, state: StateOption = None) -> None:
    """Remove an account."""
    with _users(config, state) as users:
        users.remove(name)
    _say(f"removed user {_clean(name)}")


@user_app.command("passwd")
def passwd(
    name: NameArgument,
    password_stdin: StdinOption = False,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    state: StateOption = None,
) -> None:
    """Set a new password."""
    with _users(config, state) as users:
        if users.get(name) is None:
            _fail(f"no user {_clean(name)!r}")
        password = _read_password(password_stdin)
        users.set_password(name, password)
    _say(f"password of {_clean(name)} changed")


@user_app.command("disable")
def disable(
    name: NameArgument, config: ConfigOption = DEFAULT_CONFIG_PATH, state: StateOption = None
) -> None:
    """Refuse AUTH for an account, keeping its password."""
    with _users(config, state) as users:
        users.disable(name)
    _say(f"disabled user {_clean(name)}")


@user_app.command("enable")
def enable(name: NameArgument, config: ConfigOption = DEFAULT_CONFIG_PATH, state: StateOption = None) -> None:
    """Allow AUTH again for a disabled account."""
    with _users(config, state) as users:
        users.enable(name)
    _say(f"enabled user {_clean(name)}")


@user_app.command("list")
def list_users(
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array.")] = False,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    state: StateOption = None,
) -> None:
    """List accounts (names and state; never hashes)."""
    path = _db_path(config, state)
    if path.exists():
        with _users(config, path) as users:
            found = users.list()
    else:
        found = []  # no database yet: nobody was ever added
    if as_json:
        sys.stdout.write(json.dumps([_as_dict(u) for u in found], indent=2) + "\n")
        return
    if not found:
        _say("no users")
        return
    table = Table("name", "state", "created", "updated")
    for u in found:
        table.add_row(
            Text(_clean(u.name)), "disabled" if u.disabled else "enabled", _when(u.created), _when(u.updated)
        )
    print_table(Console(highlight=False), table, keep=[_clean(u.name) for u in found])


def _as_dict(user: UserInfo) -> dict[str, object]:
    return {
        "name": user.name,
        "disabled": user.disabled,
        "created": _when(user.created),
        "updated": _when(user.updated),
    }


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
