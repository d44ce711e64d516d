"""``edgeward web``: serve the web console over HTTPS, and manage its accounts and API tokens.

``edgeward web -c FILE [--listen ADDR:PORT]`` serves ``web.app`` with uvicorn on ``[web]
listen`` (loopback by default), with the certificate bound to the ``https`` service in the
certificate store (``edgeward cert enable THUMB --service https``), or else the store's
default self-signed one (created as ``serve`` does if there is none yet), under the same TLS
policy as the SMTP listeners (``tls.context.server_context``). Started as root, it reads the
key and binds the socket, then runs as ``server.user`` as ``serve`` does.

With ``[web] enabled``, ``serve`` binds the console's socket before it drops its privileges
and starts ``edgeward web --socket-fd N`` as a supervised child (``children.py``), which
serves on the inherited socket, already unprivileged; SIGHUP makes it read its certificate
again (a renewal), SIGTERM stops it gracefully.

``web user add|list|remove`` manage console accounts (``admin``, ``readonly``, or ``user``
with ``--address`` for each address it receives; passwords from a hidden prompt asked twice,
or ``--password-stdin``), ``web token add|list|remove`` the API tokens (the secret is printed
once, at creation; a ``user`` token names its ``--account``). ``web user totp`` and ``web
audit`` are in ``cli.web_accounts``. Every change is written to the audit log. Both live in ``<state>/web.db``
(``web.auth``); run as root, the file is handed to the owner of the state folder.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from edgeward.auth.users import UserError
from edgeward.cli.queue import ConfigOption, clean, console, fail, load
from edgeward.cli.tables import add_id_column, print_table
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.config.schema import Config
from edgeward.config.web import split_listen
from edgeward.errors import EdgewardError
from edgeward.logs.audit import audit
from edgeward.web.auth import ROLES, Account, ApiToken, WebAccounts

__all__ = ["web_app"]

log = logging.getLogger("edgeward.web")
web_app = typer.Typer(help="The web console: serve it, its accounts, API tokens and audit log.")
user_app = typer.Typer(help="Console accounts (admin, readonly, or user: own quarantine only).",
                       no_args_is_help=True)  # fmt: skip
token_app = typer.Typer(help="API tokens for /api/v1.", no_args_is_help=True)
web_app.add_typer(user_app, name="user")
web_app.add_typer(token_app, name="token")

RoleOption = Annotated[str, typer.Option("--role", help=f"One of: {', '.join(ROLES)}.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _accounts(config: Config) -> WebAccounts:
    return WebAccounts(config.resolve(Path("state")))


def _date(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _certificate(config: Config) -> tuple[Path, Path]:
    from edgeward.tls.errors import NoBinding
    from edgeward.tls.store import CertificateStore

    store = CertificateStore(config.resolve(config.tls.store))
    try:
        return store.binding_for("https")
    except NoBinding:
        return store.ensure_default(config.server.hostname)


@web_app.callback(invoke_without_command=True)
def web(
    ctx: typer.Context,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    listen: Annotated[
        str | None, typer.Option("--listen", help="ADDR:PORT to listen on (default: web.listen).")
    ] = None,
    socket_fd: Annotated[int, typer.Option("--socket-fd", hidden=True)] = -1,
) -> None:
    """Serve the web console over HTTPS (the certificate bound to 'https', else the default one)."""
    if ctx.invoked_subcommand is not None:
        return
    cfg = load(config)
    if socket_fd >= 0:  # started by `serve`, on the socket it bound, already unprivileged
        _serve_inherited(cfg, socket_fd)
        return
    try:
        host, port = split_listen(listen or cfg.web.listen)
    except ValueError as exc:
        fail(f"--listen: {exc}")
    try:
        _serve(cfg, config, host, port)
    except (EdgewardError, OSError) as exc:
        fail(f"cannot start: {exc}", code=1)


def _serve(cfg: Config, config_path: Path, host: str, port: int) -> None:
    """Serve ``serve``'s way: key read and socket bound while still root, then run as the
    service user (``server.user``), with no capabilities, refusing to go on as root."""
    from edgeward.paths import data_paths
    from edgeward.server.privileges import drop_capabilities, drop_privileges, refuse_root

    paths = data_paths(cfg)
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    context, cert = _tls(cfg)
    sock = bind_console(host, port)
    drop_privileges(cfg.server.user, cfg.server.group, own=tuple(paths.values()), readable=(config_path,))
    drop_capabilities()
    refuse_root()
    _run(cfg, sock, context, cert)


def bind_console(host: str, port: int) -> socket.socket:
    """The console's listening socket (bound while still root: the port may be privileged)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)


def _serve_inherited(cfg: Config, fd: int) -> None:
    from edgeward.server.privileges import refuse_root

    logging.basicConfig(level=cfg.logging.level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s %(name)s[{os.getpid()}]: %(message)s")  # fmt: skip
    refuse_root()
    try:
        _run(cfg, socket.socket(fileno=fd), *_tls(cfg))
    except (EdgewardError, OSError) as exc:
        fail(f"cannot start: {exc}", code=1)


def _tls(cfg: Config) -> tuple[ssl.SSLContext, Path]:
    from edgeward.tls.context import server_context

    cert, key = _certificate(cfg)
    # The gateway's own listener policy (TLS 1.2+, ECDHE with AEAD only), not uvicorn's defaults.
    return server_context(cert, key), cert


def _run(cfg: Config, sock: socket.socket, context: ssl.SSLContext, cert: Path) -> None:
    """Serve on ``sock`` until SIGTERM; SIGHUP reads the certificate again."""
    import uvicorn

    from edgeward.web.app import create_app

    def reload_certificate(_sig: int, _frame: object) -> None:
        try:
            context.load_cert_chain(*_certificate(cfg))  # new handshakes use it
        except (EdgewardError, OSError, ssl.SSLError) as exc:
            log.error("SIGHUP: kept the old certificate: %s", exc)

    signal.signal(signal.SIGHUP, reload_certificate)
    app = create_app(cfg)
    app.state.console.stats.refresh_in_background()  # the dashboard's first read, off the first request
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    console().print(Text(f"web console on https://{shown}:{port}/ (certificate {cert})"))
    server = uvicorn.Server(uvicorn.Config(
        app, ssl_certfile=str(cert), ssl_context_factory=lambda _config, _default: context,
        log_level="warning", server_header=False, proxy_headers=False, timeout_graceful_shutdown=10,
    ))  # fmt: skip
    server.run(sockets=[sock])


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        fail("the password is empty")
    return password


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="Account name (compared case-insensitively).")],
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    role: RoleOption = "readonly",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
    address: Annotated[
        list[str] | None, typer.Option("--address", help="An address an end user receives (repeat).")
    ] = None,
) -> None:
    """Add a console account."""
    if role not in ROLES:
        fail(f"--role must be one of {', '.join(ROLES)}")
    if (role == "user") != bool(address):
        fail("--address is for end users (--role user), who need at least one")
    cfg = load(config)
    accounts = _accounts(cfg)
    if any(a.name == name.casefold() for a in accounts.list()):
        fail(f"a console account named {clean(name)!r} exists already")
    try:
        from edgeward.web.enduser import check_address

        addresses = [check_address(a) for a in address or ()]
        account = accounts.add(name, _password(password_stdin), role)
        accounts.endusers.add_addresses(account.name, addresses)
    except UserError as exc:
        fail(str(exc))
    audit(cfg, "account.add", target=account.name, detail=" ".join([account.role, *addresses]))
    console().print(Text(f"added console account {clean(account.name)} ({account.role})"))


def _print_named(
    rows: Sequence[Account] | Sequence[ApiToken],
    as_json: bool,
    extra: Sequence[tuple[str, Callable[[str], bool | list[str]]]] = (),
) -> None:
    """Accounts or tokens: name, role and when made (and ``extra`` fields of a name), as JSON
    or a table."""
    if as_json:
        typer.echo(json.dumps([{"name": r.name, "role": r.role, "created": r.created,
                                **{key: get(r.name) for key, get in extra}} for r in rows]))  # fmt: skip
        return
    table = Table()
    add_id_column(table, "Name")
    table.add_column("Role")
    table.add_column("Created")
    for key, _get in extra:
        table.add_column(key.capitalize())
    for r in rows:
        cells = [get(r.name) for _key, get in extra]
        shown = [("yes" if c else "") if isinstance(c, bool) else clean(", ".join(c)) for c in cells]
        table.add_row(Text(clean(r.name)), r.role, _date(r.created), *map(Text, shown))
    print_table(console(), table, keep=[clean(r.name) for r in rows])


@user_app.command("list")
def user_list(config: ConfigOption = DEFAULT_CONFIG_PATH, as_json: JsonOption = False) -> None:
    """List the console accounts (with TOTP and, for end users, their addresses)."""
    accounts = _accounts(load(config))
    enrolled = accounts.totp.names()
    extra = (
        ("totp", lambda name: name in enrolled),
        ("addresses", lambda n: list(accounts.endusers.addresses(n))),
    )
    _print_named(accounts.list(), as_json, extra)


@user_app.command("remove")
def user_remove(
    name: Annotated[str, typer.Argument(help="Account name.")], config: ConfigOption = DEFAULT_CONFIG_PATH
) -> None:
    """Remove a console account (its sessions end at once)."""
    cfg = load(config)
    try:
        _accounts(cfg).remove(name)
    except UserError as exc:
        fail(str(exc))
    audit(cfg, "account.remove", target=name.casefold())
    console().print(Text(f"removed console account {clean(name)}"))


@token_app.command("add")
def token_add(
    name: Annotated[str, typer.Argument(help="A name for the token (what uses it).")],
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    role: RoleOption = "readonly",
    account: Annotated[
        str | None, typer.Option("--account", help="The end-user account a user token acts for.")
    ] = None,
) -> None:
    """Make an API token; the secret is printed once, on standard output."""
    cfg = load(config)
    try:
        secret = _accounts(cfg).add_token(name, role, account)
    except UserError as exc:
        fail(str(exc))
    audit(cfg, "token.add", target=name, detail=role + (f" for {account}" if account else ""))
    typer.echo(secret)


@token_app.command("list")
def token_list(config: ConfigOption = DEFAULT_CONFIG_PATH, as_json: JsonOption = False) -> None:
    """List the API tokens (names and roles; secrets are not kept)."""
    _print_named(_accounts(load(config)).tokens(), as_json)


@token_app.command("remove")
def token_remove(
    name: Annotated[str, typer.Argument(help="Token name.")], config: ConfigOption = DEFAULT_CONFIG_PATH
) -> None:
    """Revoke an API token."""
    cfg = load(config)
    try:
        _accounts(cfg).remove_token(name)
    except UserError as exc:
        fail(str(exc))
    audit(cfg, "token.remove", target=name)
    console().print(Text(f"removed API token {clean(name)}"))


from edgeward.cli import web_accounts as _web_accounts  # noqa: E402  (registers totp and audit)

_web_accounts.register(web_app, user_app)
