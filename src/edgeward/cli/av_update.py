"""``edgeward av update``: fetch signatures now, reload clamd, check YARA rules and hash lists.

One round of :func:`edgeward.scanning.updates.update_signatures` (freshclam against
``[antivirus.updates] mirror`` with a generated configuration, ``RELOAD`` to clamd when a
database changed), then the YARA rules are compiled and the hash list parsed, so a broken rule
is reported here before the gateway (which reloads both by itself when their files change)
keeps its last good set. freshclam's lines are shown as progress; ``--json`` prints the
report instead.

Run as root, freshclam writes the databases as the owner of clamd's database folder and the
round's record (``DATA_DIR/state/av-update.json``, read by ``av status``) is handed to the
service user.

Exit codes: 0 updated (or already up to date) and fresh; 1 the update failed, a reload failed
or the signatures are older than ``max_signature_age``; 2 bad configuration.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict

import typer
from rich.console import Console
from rich.text import Text

from edgeward.cli.av import JsonOption, av_app
from edgeward.cli.queue import ConfigOption, clean, console, duration, load
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.config.schema import Config
from edgeward.scanning.hashlist import HashListEngine
from edgeward.scanning.updates import Reloadable, UpdateReport, update_signatures
from edgeward.scanning.yara_engine import YaraEngine

__all__ = ["update"]


def _engines(config: Config) -> list[Reloadable]:
    av = config.antivirus
    engines: list[Reloadable] = []
    if av.yara.enabled:
        engines.append(YaraEngine(config.resolve(av.yara.rules_dir)))
    if av.hashes.file is not None:
        engines.append(HashListEngine(config.resolve(av.hashes.file)))
    return engines


def _sizes(engines: list[Reloadable]) -> dict[str, str]:
    sizes: dict[str, str] = {}
    for engine in engines:
        if isinstance(engine, YaraEngine):
            sizes[engine.name] = f"{engine.rule_count} rules"
        elif isinstance(engine, HashListEngine):
            sizes[engine.name] = f"{engine.size} hashes"
    return sizes


@av_app.command()
def update(config_path: ConfigOption = DEFAULT_CONFIG_PATH, as_json: JsonOption = False) -> None:
    """Fetch signatures (freshclam), reload clamd, check YARA rules and hash lists."""
    config = load(config_path)
    engines = _engines(config)
    out = console()
    if as_json:
        report = asyncio.run(update_signatures(config, engines=engines))
    else:
        with out.status("freshclam: starting", spinner="dots") as progress:

            def show(line: str) -> None:
                progress.update(Text(f"freshclam: {line[:100]}"))

            report = asyncio.run(update_signatures(config, engines=engines, on_line=show))
    sizes = _sizes(engines)
    if as_json:
        typer.echo(json.dumps({**asdict(report), "sizes": sizes}, indent=2))
    else:
        _print(out, report, sizes, config)
    raise typer.Exit(0 if report.ok and not report.stale else 1)


def _print(out: Console, report: UpdateReport, sizes: dict[str, str], config: Config) -> None:
    up = config.antivirus.updates
    source = up.mirror or "ClamAV's mirrors"
    code = "stopped" if report.freshclam_code is None else f"exit {report.freshclam_code}"
    out.print(Text(f"freshclam ({source}): {code}"))
    for change in report.changed or ["no database changed"]:
        out.print(Text(f"  {clean(change)}"))
    if report.clamd:
        out.print(Text(f"clamd: {clean(report.clamd)}"))
    for name, result in report.engines.items():
        size = f", {sizes[name]}" if name in sizes else ""
        out.print(Text(f"{name}: {clean(result)}{size}"))
    if report.signatures_at is not None:
        age = duration(max(0.0, time.time() - report.signatures_at))
        flag = " (STALE)" if report.stale else ""
        out.print(Text(f"signatures: newest is {age} old{flag}"))
    else:
        out.print(Text("signatures: none in the database folder (STALE)"))
    for error in report.errors:
        out.print(Text(f"error: {clean(error)}", style="red"))
