"""``edgeward install-service``: the Debian layout and the hardened unit (see ``harden.install``).

Registered on the main app by ``cli.main``. Every action is printed; with ``--dry-run`` nothing
else happens. Errors the operator can fix exit with code 2.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from edgeward.harden.install import Layout, plan, run, unit_differs

err = Console(stderr=True, soft_wrap=True)


def install_service(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the actions, change nothing")] = False,
    root: Annotated[Path, typer.Option("--root", help="Install below this folder instead of /")] = Path("/"),
    hostname: Annotated[
        str | None, typer.Option("--hostname", help="FQDN for a new configuration (default: this host's)")
    ] = None,
) -> None:
    """Create the service user, /etc/edgeward, /var/{lib,spool,log}/edgeward and edgeward.service."""
    from edgeward.cli.init import default_hostname

    layout = Layout(root.resolve())
    actions = plan(layout, hostname=hostname or default_hostname())
    for action in actions:
        typer.echo(("would: " if dry_run else "") + action.describe())
    if unit_differs(layout):
        typer.echo(f"note: {layout.unit} differs from the shipped unit and is left as it is")
    if not actions:
        typer.echo("nothing to do: the layout is in place")
    if dry_run:
        return
    if os.geteuid() != 0:
        err.print("[red]error:[/red] install-service must run as root (or use --dry-run)")
        raise typer.Exit(2)
    try:
        run(actions, layout)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        err.print(f"[red]error:[/red] {detail}", highlight=False)
        raise typer.Exit(2) from None
    if layout.root == Path("/") and actions:
        typer.echo("next: systemctl daemon-reload && systemctl enable --now edgeward")
