"""``edgeward harden``: role templates, the host and gateway audit, apply, rollback, history.

Mount with ``app.add_typer(harden_app, name="harden")``. ``template`` and ``analyse`` are safe
as any user; ``apply`` and ``rollback`` refuse without root. Errors the operator can fix exit
with code 2; ``analyse`` exits 1 when it finds something of high severity.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.config.schema import Config
from edgeward.harden.template import (
    RoleTemplate,
    TemplateError,
    parse_template,
    shipped_names,
    template_dir,
    template_text,
)

if TYPE_CHECKING:
    from edgeward.harden.analyse import Report

__all__ = ["harden_app"]

harden_app = typer.Typer(help="Host hardening by role template.", no_args_is_help=True)
template_app = typer.Typer(help="Role templates: list, export, import.", no_args_is_help=True)
harden_app.add_typer(template_app, name="template")

err = Console(stderr=True, soft_wrap=True)
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Configuration file")]


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    return typer.Exit(2)


@template_app.command("list")
def template_list(
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text")] = False,
) -> None:
    """Print the shipped templates and the ones imported beside the configuration."""
    own = sorted(p.stem for p in template_dir(config_path).glob("*.toml"))
    names = sorted({*shipped_names(), *own})
    if as_json:
        typer.echo(json.dumps([{"name": n, "source": "imported" if n in own else "shipped"} for n in names]))
        return
    for name in names:
        typer.echo(f"{name:<20} {'imported' if name in own else 'shipped'}")


@template_app.command("export")
def template_export(
    name: Annotated[str, typer.Argument(help="Template name")],
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout")] = None,
) -> None:
    """Print a template (or write it to --out) for review and import on other gateways."""
    try:
        text, _ = template_text(name, config_path)
    except TemplateError as exc:
        raise _fail(str(exc)) from None
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _fail(f"{out}: {exc.strerror}") from None
    typer.echo(f"wrote {out}")


@template_app.command("import")
def template_import(
    file: Annotated[Path, typer.Argument(help="Template file (TOML)")],
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    force: Annotated[bool, typer.Option("--force", help="Replace an imported one of the same name")] = False,
) -> None:
    """Validate a template and store it beside the configuration, where the gateway's group reads it."""
    try:
        text, source = template_text(str(file) if "/" in str(file) else f"./{file}")
        template = parse_template(text, source)
    except TemplateError as exc:
        raise _fail(str(exc)) from None
    folder = template_dir(config_path)
    target = folder / f"{template.name}.toml"
    if target.exists() and not force:
        raise _fail(f"{target} exists (use --force to replace it)")
    try:
        _write_like_config(target, text, config_path)
    except OSError as exc:
        raise _fail(f"{target}: {exc.strerror}") from None
    typer.echo(f"imported {template.name} to {target}")


def _write_like_config(target: Path, text: str, config_path: Path) -> None:
    """Write 0640 with the configuration file's owner and group (root:edgeward on Debian)."""
    target.parent.mkdir(mode=0o750, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        if os.geteuid() == 0 and config_path.exists():
            st = config_path.stat()
            os.fchown(fh.fileno(), st.st_uid, st.st_gid)
            os.chown(target.parent, st.st_uid, st.st_gid)
        fh.write(text)
    os.replace(tmp, target)


TemplateOpt = Annotated[str, typer.Option("--template", "-t", help="Role template name or .toml file")]


@harden_app.command("analyse")
def analyse_cmd(
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    template_name: TemplateOpt = "edge",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
    no_dns: Annotated[bool, typer.Option("--no-dns", help="Skip the DNS checks")] = False,
) -> None:
    """Compare this host and the gateway configuration with a role template (read-only).

    Exit codes: 0 no high-severity finding, 1 at least one, 2 the template cannot be read.
    """
    from rich.table import Table
    from rich.text import Text

    from edgeward.cli.tables import add_id_column, print_table
    from edgeward.harden.template import load_template

    try:
        template = load_template(template_name, config_path)
    except TemplateError as exc:
        raise _fail(str(exc)) from None
    report = _analyse_with_progress(template, config_path, dns=not no_dns, bar=not as_json)
    high = any(f.rule.severity == "high" for f in report.findings)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        raise typer.Exit(1 if high else 0)
    out = Console(soft_wrap=False, highlight=False)
    table = Table(title=f"harden analyse: template {template.name}")
    add_id_column(table, "id")
    for header in ("severity", "found", "fix"):
        table.add_column(header)
    colour = {"high": "red", "medium": "yellow", "low": "cyan"}
    for f in report.findings:
        sev = f.rule.severity
        table.add_row(f.id, Text(sev, colour[sev]), Text(f"{f.rule.title}: {f.found}"), Text(f.rule.fix))
    if report.findings:
        print_table(out, table, keep=[f.id for f in report.findings])
    else:
        out.print("no findings")
    for line in report.notes.checked:
        out.print(Text(f"checked: {line}"))
    for line in report.notes.not_checked:
        out.print(Text(f"not checked: {line}", "yellow"))
    raise typer.Exit(1 if high else 0)


def _analyse_with_progress(template: RoleTemplate, config_path: Path, *, dns: bool, bar: bool) -> Report:
    """Run analyse with a bar on stderr while it works, only where a person watches a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgeward.harden.analyse import analyse

    console = Console(stderr=True)
    if not bar or not console.is_terminal:
        return analyse(template, config_path, dns=dns)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:  # fmt: skip
        task = progress.add_task("analysing", total=None)

        def step(what: str, done: int, total: int) -> None:
            text = f"checking {what}" if done < total else "analysed"
            progress.update(task, description=text, completed=done, total=total)

        return analyse(template, config_path, dns=dns, progress=step)


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise _fail(f"harden {what} changes the firewall, kernel settings and file modes: run it as root")


def _load_config(config_path: Path) -> Config:
    from edgeward.config.load import load_config
    from edgeward.errors import ConfigError

    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


@harden_app.command("apply")
def apply_cmd(
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    template_name: TemplateOpt = "edge",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the change, make none")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Apply without asking")] = False,
    root: Annotated[Path, typer.Option("--root", help="Write files below this folder (tests)")] = Path("/"),
) -> None:
    """Show the change as a diff, record a rollback point, then apply the template to this host."""
    from edgeward.harden.apply import COVERS, apply, plan
    from edgeward.harden.template import load_template

    if not dry_run:
        _need_root("apply")
    config = _load_config(config_path)
    try:
        template = load_template(template_name, config_path)
        change = plan(template, config, config_path, root.resolve())
    except TemplateError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot read the current state: {exc}") from None
    for line in change.diff():
        typer.echo(line)
    for note in change.notes:
        typer.echo(f"note: {note}")
    if change.empty():
        typer.echo(f"nothing to change: the host matches template {template.name}")
        return
    if dry_run:
        return
    if not yes and not typer.confirm("apply these changes?", default=False):
        raise typer.Exit(1)
    try:
        point = apply(change, config)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise _fail(f"apply failed: {exc}; 'edgeward harden rollback' restores the recorded state") from None
    for line in change.not_changed:
        typer.echo(f"not changed: {line}")
    typer.echo(f"applied template {template.name}; rollback point {point.stem}")
    typer.echo(COVERS)


@harden_app.command("rollback")
def rollback_cmd(
    point: Annotated[str | None, typer.Argument(help="Point id (default: newest not rolled back)")] = None,
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
) -> None:
    """Restore the state recorded before an apply."""
    from edgeward.harden.apply import COVERS, rollback

    _need_root("rollback")
    config = _load_config(config_path)
    try:
        done = rollback(config, point)
    except LookupError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"rollback failed: {exc}") from None
    for line in done.get("not_restored") or []:  # type: ignore[attr-defined]
        typer.echo(f"not restored: {line}")
    typer.echo(f"restored rollback point {done['id']} (template {done['template']})")
    typer.echo(COVERS)


@harden_app.command("history")
def history_cmd(
    config_path: ConfigOpt = DEFAULT_CONFIG_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """List the rollback points, oldest first."""
    import time

    from rich.table import Table

    from edgeward.cli.tables import add_id_column, print_table
    from edgeward.harden.apply import history

    points = history(_load_config(config_path))
    if as_json:
        typer.echo(json.dumps(points, indent=2))
        return
    if not points:
        typer.echo("no rollback points")
        return
    table = Table()
    add_id_column(table, "point")
    for header in ("created (UTC)", "template", "state"):
        table.add_column(header)
    for p in points:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(p["created"])))  # type: ignore[arg-type]
        state = "rolled back" if p.get("rolled_back") else ""
        table.add_row(str(p["id"]), created, str(p["template"]), state)
    print_table(Console(), table, keep=[str(p["id"]) for p in points])
