"""The ``edgeward`` command: one Typer app with a sub-command per area.

``init``, ``serve``, ``config`` and ``agents`` live here; queue, tracking, certificates and
the spam classifier have their own modules, mounted below. Errors the operator can fix are
printed as one clear message with exit code 2, never as a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
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
from edgeward.cli.harden import harden_app
from edgeward.cli.init import default_hostname, render, write_config
from edgeward.cli.install_service import install_service
from edgeward.cli.notify import notify_app
from edgeward.cli.quarantine import quarantine_app
from edgeward.cli.queue import queue_app
from edgeward.cli.rules import rules_app
from edgeward.cli.spam import spam_app
from edgeward.cli.track import track_app
from edgeward.cli.user import user_app
from edgeward.cli.web import web_app
from edgeward.config.load import DEFAULT_CONFIG_PATH, load_config
from edgeward.config.schema import Config
from edgeward.errors import ConfigError, EdgewardError

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
    quarantine_app, name="quarantine", help="Quarantined messages: search, show, release, purge, digests."
)
app.add_typer(
    user_app, name="user", help="Accounts for SMTP AUTH: add, remove, list, passwd, disable, enable."
)
app.add_typer(av_app, name="av", help="The scan engines: status, test, update.")
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
    from edgeward.runtime import data_paths
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
    if role not in ("deliver", "receive"):
        _refuse_unsafe(config, config_path)
    logging.basicConfig(
        level=config.logging.level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[{os.getpid()}]: %(message)s",
        stream=sys.stderr,
    )
    try:
        if role == "deliver":  # started by the receiving process, already unprivileged
            from edgeward.server.privileges import refuse_root
            from edgeward.supervisor import serve_delivery

            refuse_root()
            eventloop.run(serve_delivery(config, config_path, notify_fd), config.server.event_loop)
            return
        if role == "receive":  # another receiving process, started by the first
            from edgeward.server.privileges import refuse_root
            from edgeward.supervisor import serve_receiver

            refuse_root()
            index, _, count = receiver.partition("/")
            fds = [int(fd) for fd in listen_fds.split(",") if fd]
            eventloop.run(
                serve_receiver(config, config_path, int(index), int(count), fds, notify_fd, slots_fd),
                config.server.event_loop,
            )
            return
        _serve(config, config_path)
    except OSError as exc:
        raise fail(f"cannot start: {exc}") from None
    except EdgewardError as exc:
        raise fail(str(exc)) from None


def _serve(config: Config, config_path: Path) -> None:
    from edgeward.runtime import Gateway, data_paths, tls_contexts
    from edgeward.server.listener import bind_sockets
    from edgeward.server.privileges import drop_capabilities, drop_privileges, refuse_root
    from edgeward.supervisor import serve_split

    paths = data_paths(config)
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
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
    drops = tuple(config.resolve(c.drop_dir) for c in config.send_connectors if c.drop_dir is not None)
    drop_privileges(
        config.server.user, config.server.group, own=(*paths.values(), *drops), readable=(config_path,)
    )
    drop_capabilities()
    refuse_root()
    if config.server.delivery_process:
        eventloop.run(
            serve_split(config, config_path, sockets, [o for o in others if o]), config.server.event_loop
        )
    else:
        eventloop.run(
            Gateway(config, config_path=config_path).serve_until_signalled(sockets), config.server.event_loop
        )


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
    from edgeward.filters.base import Stage, describe, is_antispam
    from edgeward.filters.scoring import Thresholds
    from edgeward.queue.spool import Spool
    from edgeward.runtime import build_agents
    from edgeward.runtime_policy import STORE_AGENTS, pipeline_listing
    from edgeward.state.policy import default_policy_path
    from edgeward.state.stores import policy_store_for

    config = _load(config_path)
    spool = Spool(config.resolve(Path("queue")), fsync=False)
    # Never opened here (a root shell must not create it). Without the SQLite file the
    # store-backed agents are listed in their place as off: none runs until `serve` creates it.
    # A Redis store exists outside this machine, so it is listed as the gateway runs it.
    store_path = default_policy_path(config.server.data_dir)
    redis = config.policy_store.backend == "redis"
    store = policy_store_for(config) if redis or store_path.exists() else None
    agents = build_agents(config, spool, policy_store=store)
    rows = pipeline_listing(config, agents, policy_store=store is not None)
    mode = "observe-only" if config.agents.observe_only else "enforcing"
    if as_json:
        doc = {
            "mode": mode,
            "timeout": config.agents.timeout,
            "policy_store": {
                "backend": config.policy_store.backend,
                "path": None if redis else str(store_path),
                "present": store is not None,
            },
            "agents": [
                {
                    "name": row.name,
                    "stages": [s.value for s in Stage if row.agent and s in row.agent.stages],
                    "fail_open": bool(row.agent and row.agent.fail_open),
                    "exemptible": bool(row.agent and is_antispam(row.agent)),
                    "needs_policy_store": row.name in STORE_AGENTS,
                    "off": row.off or None,
                    "off_without_store": row.without_store or None,
                }
                for row in rows
            ],
            "thresholds": Thresholds.from_config(config).values,
            "pcl_thresholds": Thresholds.from_config(config).pcl,
            "scores": {n: {"weight": w, "description": d} for n, w, _, d in _score_rows(config)},
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    for i, row in enumerate(rows, 1):
        if row.agent is None:
            typer.echo(f"{i:>2}. {row.name:<20} (off: {row.off} at {store_path}; `serve` creates it)")
            continue
        part = f" ({row.without_store} off: no policy store)" if row.without_store else ""
        typer.echo(f"{i:>2}. {describe(row.agent)}{part}")
    typer.echo(f"mode: {mode}; per-stage timeout {config.agents.timeout:g}s (451 4.3.0 on timeout or error)")
    typer.echo("anti-spam agents are skipped for exempt clients, senders and recipients; hard ones never")
    typer.echo("")
    typer.echo("thresholds (total score -> action): " + _thresholds_line(config))
    pcl = Thresholds.from_config(config).pcl
    typer.echo("phishing (PCL -> action): " + ", ".join(f"{n} {v or 'off'}" for n, v in pcl.items()))
    typer.echo("score table ('*' overridden in [scores]):")
    for name, weight, marker, description in _score_rows(config):
        typer.echo(f"  {name:<30} {weight:>6g}{marker} {description}")


def _thresholds_line(config: Config) -> str:
    from edgeward.filters.scoring import Thresholds

    values = Thresholds.from_config(config).values
    return ", ".join(f"{n} {'off' if v is None else f'{v:g}'}" for n, v in values.items())


def _score_rows(config: Config) -> list[tuple[str, float, str, str]]:
    from edgeward.config.scores import SCORE_TABLE

    return [
        (name, config.scores.get(name, d.weight), "*" if name in config.scores else " ", d.description)
        for name, d in SCORE_TABLE.items()
    ]


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
