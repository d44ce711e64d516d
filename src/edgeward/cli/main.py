"""The ``edgeward`` command: one Typer app with a sub-command per area.

``init``, ``serve``, ``config`` and ``agents`` live here; queue, tracking, certificates and
the spam classifier have their own modules, mounted below. Errors the operator can fix are
printed as one clear message with exit code 2, never as a traceback.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from edgeward import __version__, eventloop
from edgeward.cli.antispam import antispam_app
from edgeward.cli.av import av_app
from edgeward.cli.av_update import update as _av_update  # noqa: F401  (registers 'av update')
from edgeward.cli.cert import cert_app
from edgeward.cli.directory import directory_app
from edgeward.cli.directory_push import push as _directory_push  # noqa: F401  (registers subscribe, push, ...)
from edgeward.cli.dkim import dkim_app
from edgeward.cli.harden import harden_app
from edgeward.cli.init import default_hostname, render, write_config
from edgeward.cli.install_service import install_service
from edgeward.cli.notify import notify_app
from edgeward.cli.quarantine import quarantine_app
from edgeward.cli.quarantine_keys import rekey_command as _rekey  # noqa: F401  (registers 'quarantine rekey')
from edgeward.cli.queue import queue_app
from edgeward.cli.rules import rules_app
from edgeward.cli.spam import spam_app
from edgeward.cli.track import track_app
from edgeward.cli.user import user_app
from edgeward.cli.web import web_app
from edgeward.config.load import DEFAULT_CONFIG_PATH, load_config
from edgeward.config.schema import Config
from edgeward.errors import ConfigError, EdgewardError
from edgeward.roles import count_metrics, log_to_stderr

app = typer.Typer(help="Edgeward: a secure-by-default mail edge gateway.", no_args_is_help=True)
config_app = typer.Typer(help="Show and check the configuration.", no_args_is_help=True)
agents_app = typer.Typer(help="The agent pipeline.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(agents_app, name="agents")
app.add_typer(
    queue_app, name="queue", help="The queue viewer: list, show, retry, hold, release, remove, export."
)
app.add_typer(antispam_app, name="antispam", help="Query the anti-spam checks: spf.")
app.add_typer(cert_app, name="cert", help="Certificates: new, request, import, list, enable, remove, renew.")
app.add_typer(spam_app, name="spam", help="The content classifier: train, eval, classify, learn.")
app.add_typer(track_app, name="track", help="Search the message tracking log.")
app.add_typer(
    quarantine_app, name="quarantine", help="Quarantined messages: search, release, purge, digests, rekey."
)
app.add_typer(
    user_app, name="user", help="Accounts for SMTP AUTH: add, remove, list, passwd, disable, enable."
)
app.add_typer(av_app, name="av", help="The scan engines: status, test, update.")
app.add_typer(dkim_app, name="dkim", help="DKIM signing of outbound mail: keygen, record.")
app.add_typer(notify_app, name="notify", help="Notifications to administrators: test.")
app.add_typer(rules_app, name="rules", help="Transport rules: list, test.")
app.add_typer(
    directory_app,
    name="directory",
    help="Directory sync (EdgeSync): sync, status, lookup, test, subscribe, push.",
)
app.command("install-service")(install_service)
app.add_typer(harden_app, name="harden", help="Host hardening by role: template, analyse, apply, rollback.")
app.add_typer(web_app, name="web", help="The web console over HTTPS: serve it; its accounts and API tokens.")

err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Configuration file")]


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    return typer.Exit(2)


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit(0)


@app.callback()
def _main(
    # Eager, so it answers before Click asks for a sub-command ("Missing command").
    version: Annotated[
        bool, typer.Option("--version", help="Print the version", is_eager=True, callback=_print_version)
    ] = False,
) -> None:
    """Edgeward: a secure-by-default mail edge gateway."""


@app.command()
def init(
    directory: Annotated[Path, typer.Option("--dir", help="Folder for the configuration and data")],
    hostname: Annotated[str | None, typer.Option("--hostname", help="FQDN of this gateway")] = None,
    listen: Annotated[list[str] | None, typer.Option("--listen", help="ADDR:PORT to listen on")] = None,
    accept_domain: Annotated[
        list[str] | None, typer.Option("--accept-domain", help="Accepted domain")
    ] = None,
    relay_from: Annotated[
        list[str] | None, typer.Option("--relay-from", help="CIDR allowed to relay")
    ] = None,
    smart_host: Annotated[
        str | None, typer.Option("--smart-host", help="HOST:PORT for accepted domains")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing configuration")] = False,
) -> None:
    """Write DIR/edgeward.toml, a self-signed certificate and the data folders."""
    from edgeward.paths import data_paths
    from edgeward.tls.store import CertificateStore

    fqdn = hostname or default_hostname()
    try:
        text = render(
            hostname=fqdn,
            listen=listen or ["0.0.0.0:25"],
            accept_domains=accept_domain or [fqdn.split(".", 1)[-1]],
            relay_from=relay_from or [],
            smart_host=smart_host,
        )
        target = directory / "edgeward.toml"
        config = write_config(target, text, force=force)
    except (ValueError, FileExistsError) as exc:
        raise fail(str(exc)) from None
    except ConfigError as exc:
        raise fail(str(exc)) from None
    for path in data_paths(config).values():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for connector in config.send_connectors:
        if connector.drop_dir is not None:
            config.resolve(connector.drop_dir).mkdir(parents=True, exist_ok=True, mode=0o750)
    store = CertificateStore(config.resolve(config.tls.store))
    cert, _key = store.ensure_default(fqdn)
    typer.echo(f"wrote {target}")
    typer.echo(f"certificate {cert} for {fqdn}")
    typer.echo(f"start with: edgeward serve --config {target}")


@app.command()
def serve(
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    role: Annotated[str, typer.Option("--role", hidden=True)] = "",
    notify_fd: Annotated[int, typer.Option("--notify-fd", hidden=True)] = -1,
    receiver: Annotated[str, typer.Option("--receiver", hidden=True)] = "",
    listen_fds: Annotated[str, typer.Option("--listen-fds", hidden=True)] = "",
    slots_fd: Annotated[int, typer.Option("--slots-fd", hidden=True)] = -1,
) -> None:
    """Run the gateway in the foreground (SIGTERM drains, SIGHUP reloads)."""
    config = _load(config_path)
    try:
        if role:  # a child started by serve itself (edgeward.roles), already unprivileged
            from edgeward.roles import ROLES, run

            if role not in ROLES:
                raise fail(f"--role must be one of {', '.join(ROLES)}")
            run(
                config, config_path, role, notify_fd=notify_fd, receiver=receiver,
                listen_fds=listen_fds, slots_fd=slots_fd,
            )  # fmt: skip
            return
        _refuse_unsafe(config, config_path)
        log_to_stderr(config)
        _serve(config, config_path)
    except OSError as exc:
        raise fail(f"cannot start: {exc}") from None
    except EdgewardError as exc:
        raise fail(str(exc)) from None


def _serve(config: Config, config_path: Path) -> None:
    from edgeward import metrics
    from edgeward.children import ConsoleProcess, serve_with_console
    from edgeward.paths import data_paths
    from edgeward.runtime import Gateway
    from edgeward.runtime_receive import tls_contexts
    from edgeward.server.listener import bind_sockets
    from edgeward.server.privileges import drop_capabilities, drop_privileges, refuse_root
    from edgeward.supervisor import serve_split

    paths = data_paths(config)
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Every counter starts at zero with the service; inside state/, so handed over with it.
    metrics.reset(metrics.metrics_dir(paths["state"]))
    # The certificate is made (if missing) while we may still be root, so its key is written
    # before the folder is handed over.
    tls_contexts(config)
    receivers = config.server.receiver_count() if config.server.delivery_process else 1
    sockets = bind_sockets(config.receive_connectors, reuse_port=receivers > 1)
    # The other receiving processes' own sockets on the same bindings, bound while we may be root.
    others = [
        bind_sockets(config.receive_connectors, reuse_port=True, shared_only=True)
        for _ in range(receivers - 1)
    ]
    console_sock = _bind_console(config)
    drops = tuple(config.resolve(c.drop_dir) for c in config.send_connectors if c.drop_dir is not None)
    drop_privileges(
        config.server.user, config.server.group, own=(*paths.values(), *drops), readable=(config_path,)
    )
    drop_capabilities()
    refuse_root()
    count_metrics(config)  # before the delivery process starts: it inherits the folder
    console = ConsoleProcess(config_path, console_sock) if console_sock is not None else None
    if config.server.delivery_process:
        eventloop.run(
            serve_split(config, config_path, sockets, [o for o in others if o], console),
            config.server.event_loop,
        )
    elif console is not None:
        gateway = Gateway(config, config_path=config_path)
        grace = config.server.shutdown_grace
        eventloop.run(serve_with_console(gateway, sockets, console, grace), config.server.event_loop)
    else:
        eventloop.run(
            Gateway(config, config_path=config_path).serve_until_signalled(sockets), config.server.event_loop
        )


def _bind_console(config: Config) -> socket.socket | None:
    """With ``[web] enabled``: the console's socket, and its certificate made if missing, both
    while still root (``cli.web``)."""
    if not config.web.enabled:
        return None
    from edgeward.cli.web import _certificate, bind_console
    from edgeward.config.web import split_listen

    _certificate(config)
    return bind_console(*split_listen(config.web.listen))


@config_app.command("show")
def config_show(
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    defaults: Annotated[bool, typer.Option("--defaults", help="Print the built-in defaults")] = False,
) -> None:
    """Print the effective configuration as JSON (or the defaults with their descriptions)."""
    if defaults:
        typer.echo(json.dumps(_describe_defaults(), indent=2, default=str))
        return
    config = _load(config_path)
    typer.echo(json.dumps(config.model_dump(mode="json"), indent=2))


def _refuse_unsafe(config: Config, config_path: Path) -> None:
    """``serve`` does not start what ``config check`` calls an error (an open relay)."""
    from edgeward.config.check import audit, errors

    found = errors(audit(config))
    for problem in found:
        err.print(Text.assemble(("error: ", "red"), str(problem)))
    if found:
        raise fail(f"{config_path}: refusing to serve an unsafe configuration (see 'edgeward config check')")


@config_app.command("check")
def config_check(
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    strict: Annotated[bool, typer.Option("--strict", help="Treat warnings as errors")] = False,
) -> None:
    """Validate the configuration and audit it for unsafe settings.

    Exit codes: 0 no errors (warnings may be printed), 1 unsafe (errors, such as an open relay;
    with --strict also warnings), 2 the file cannot be read or is invalid.
    """
    from edgeward.config.check import audit

    config = _load(config_path)
    problems = audit(config)
    n_errors = sum(p.severity == "error" for p in problems)
    for p in problems:
        label = ("error: ", "red") if p.severity == "error" else ("warning: ", "yellow")
        err.print(Text.assemble(label, str(p)))
    n_warnings = len(problems) - n_errors
    counts = ", ".join(f"{n} {word}(s)" for n, word in ((n_errors, "error"), (n_warnings, "warning")) if n)
    if n_errors or (strict and n_warnings):
        typer.echo(f"{config_path}: UNSAFE ({counts})")
        raise typer.Exit(1)
    typer.echo(f"{config_path}: OK" + (f" ({counts})" if counts else ""))


@agents_app.command("list")
def agents_list(
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text")] = False,
) -> None:
    """Print the effective agent pipeline in the order it runs."""
    from edgeward.agents_listing import pipeline, score_rows
    from edgeward.filters.base import describe
    from edgeward.filters.scoring import Thresholds

    config = _load(config_path)
    listing = pipeline(config)
    if as_json:
        typer.echo(json.dumps(listing.document(), indent=2))
        return
    store_path = listing.store_path
    for i, row in enumerate(listing.rows, 1):
        if row.agent is None:
            typer.echo(f"{i:>2}. {row.name:<20} (off: {row.off} at {store_path}; `serve` creates it)")
            continue
        part = f" ({row.without_store} off: no policy store)" if row.without_store else ""
        typer.echo(f"{i:>2}. {describe(row.agent)}{part}")
    typer.echo(
        f"mode: {listing.mode}; per-stage timeout {config.agents.timeout:g}s (451 4.3.0 on timeout or error)"
    )
    typer.echo("anti-spam agents are skipped for exempt clients, senders and recipients; hard ones never")
    typer.echo("")
    typer.echo("thresholds (total score -> action): " + _thresholds_line(config))
    pcl = Thresholds.from_config(config).pcl
    typer.echo("phishing (PCL -> action): " + ", ".join(f"{n} {v or 'off'}" for n, v in pcl.items()))
    typer.echo("score table ('*' overridden in [scores]):")
    for r in score_rows(config):
        typer.echo(f"  {r.name:<30} {r.weight:>6g}{'*' if r.overridden else ' '} {r.description}")


def _thresholds_line(config: Config) -> str:
    from edgeward.filters.scoring import Thresholds

    values = Thresholds.from_config(config).values
    return ", ".join(f"{n} {'off' if v is None else f'{v:g}'}" for n, v in values.items())


def _describe_defaults() -> dict[str, object]:
    def walk(model: type[object], instance: object) -> dict[str, object]:
        out: dict[str, object] = {}
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            value = getattr(instance, name)
            if hasattr(type(value), "model_fields"):
                out[name] = walk(type(value), value)
            else:
                dumped = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
                if isinstance(value, tuple):
                    dumped = [v.model_dump(mode="json") if hasattr(v, "model_dump") else v for v in value]
                out[name] = {"default": dumped, "description": field.description or ""}
        return out

    from edgeward.config.scores import SCORE_TABLE

    out = walk(Config, Config())
    # The score table is code, not a default of the schema's empty override mapping: print it whole.
    out["scores"] = {
        name: {"default": d.weight, "description": d.description} for name, d in SCORE_TABLE.items()
    }
    return out
