"""``edgeward av``: the scan engines from a shell.

Owns the command-line face of :mod:`edgeward.scanning`; the engines and the decision are the
gateway's own (``runtime_policy.build_scan_policy`` and the ``antivirus`` agent), built from the
same configuration, so what is printed is what the gateway would do.

* ``status [-c CONFIG] [--json]``: every configured engine, its version, the age of its
  signatures (``stale`` past ``[antivirus.updates] max_signature_age``) and its health.
* ``test PATH [-c CONFIG] [--json]``: every finding for a file or a whole message (``.eml``):
  every engine's hits and failures (the ``antivirus`` agent), the attachment filter's rule
  matches and the walk's structural findings (nesting, bombs, encrypted archives, hostile names,
  disguised programs), and the reply the gateway would give. A file that is not a message is
  scanned as the one attachment of a message, so archives are unpacked as they would be in mail.

``av update`` (freshclam against the configured mirror, engine reloads) is registered on
``av_app`` by its own module.

Exit codes: ``status`` 0 every engine healthy, 1 one is not (or its signatures are stale);
``test`` 0 the message would pass (blocked attachments stripped, if any), 1 it would be refused,
held or dropped, 3 it could not be scanned (an engine unavailable); 2 bad input for both.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from edgeward.cli.queue import ConfigOption, clean, console, duration, fail, load
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.config.schema import Config
from edgeward.filters.agents.antivirus import Antivirus, message_items
from edgeward.filters.agents.attachments import AttachmentFilter, walk_limits
from edgeward.ports import EngineStatus, ScanItem
from edgeward.runtime_policy import build_scan_policy
from edgeward.scanning.truetype import refine
from edgeward.scanning.updates import signature_status
from edgeward.scanning.walk import walk_message
from edgeward.types import Action, Finding, Outcome

av_app = typer.Typer(help="The scan engines: status, test.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
# The first line of a message is a header field: a name of printable characters but ":" (RFC 5322 2.2).
_FIELD = re.compile(rb"^(?:From [^\r\n]*\r?\n)?[!-9;-~]+:")
MAX_INPUT = 256 * 1024 * 1024


def _statuses(config: Config) -> list[EngineStatus]:
    async def ask() -> list[EngineStatus]:
        policy = build_scan_policy(config)
        engines = list(await asyncio.gather(*(e.scanner.status() for e in policy.engines)))
        # clamd's database age and the last 'av update' (stale past max_signature_age), once
        # updates are configured or have run.
        signatures = signature_status(config)
        return engines + ([signatures] if signatures is not None else [])

    return asyncio.run(ask())


@av_app.command()
def status(config_path: ConfigOption = DEFAULT_CONFIG_PATH, as_json: JsonOption = False) -> None:
    """Every scan engine: version, signature age, health."""
    config = load(config_path)
    av = config.antivirus
    now = time.time()
    rows: list[dict[str, Any]] = []
    for s in _statuses(config):
        age = now - s.signatures_at if s.signatures_at is not None else None
        stale = age is not None and age > av.updates.max_signature_age
        rows.append({"engine": s.engine, "healthy": s.healthy and not stale, "version": s.version,
                     "signatures_at": s.signatures_at, "signature_age": age, "stale": stale,
                     "detail": s.detail})  # fmt: skip
    healthy = bool(rows) and all(r["healthy"] for r in rows)
    if as_json:
        summary = {"enabled": av.enabled, "require": av.require, "on_unavailable": av.on_unavailable}
        typer.echo(json.dumps({**summary, "engines": rows}, indent=2))
    else:
        out = console()
        state = "on" if av.enabled else "off (enable with [antivirus] enabled = true)"
        out.print(Text(f"anti-virus: {state}; bias: {av.require}; unanswered scan: {av.on_unavailable}"))
        table = Table("engine", "health", "version", "signatures", "detail")
        for r in rows:
            health = "ok" if r["healthy"] else ("stale" if r["stale"] else "DOWN")
            shown = duration(r["signature_age"]) + " old" if r["signature_age"] is not None else "age unknown"
            table.add_row(*map(Text, (r["engine"], health, r["version"], shown, clean(r["detail"]))))
        out.print(table)
        if not rows:
            out.print("no scan engine is enabled: with anti-virus on, every message would get 451 4.7.0")
    raise typer.Exit(0 if healthy else 1)


def _as_message(data: bytes, name: str) -> bytes:
    """``data`` as the walk reads it: itself if it is a message, else the attachment of one."""
    if _FIELD.match(data[:1000]) and (b"\n\n" in data or b"\r\n\r\n" in data):
        return data
    msg = EmailMessage()
    msg["Subject"] = "edgeward av test"
    msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@av_app.command()
def test(
    path: Annotated[Path, typer.Argument(help="A file, or a whole message (.eml).")],
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    as_json: JsonOption = False,
) -> None:
    """Every finding of the walk and of every engine for a file or a message, and the reply."""
    config = load(config_path)
    try:
        if path.stat().st_size > MAX_INPUT:
            fail(f"{clean(str(path))} is over {MAX_INPUT // 1024 // 1024} MB")
        data = _as_message(path.read_bytes(), path.name)
    except OSError as exc:
        fail(f"cannot read {clean(str(path))}: {exc.strerror or exc}")
    # The gateway's walk, with its bounds, as the agents share it.
    walk = walk_message(data, walk_limits(config.attachments))
    policy = build_scan_policy(config)
    report = asyncio.run(policy.scan(message_items(data, walk)))
    # In pipeline order: the first final outcome is the answer, as in the gateway.
    outcomes = [("antivirus", Antivirus(policy, config.antivirus).decide(report))]
    if config.attachments.enabled:
        outcomes.append(("attachment-filter", AttachmentFilter(config.attachments).decide(walk)))
    else:
        outcomes.append(("walk", Outcome(findings=tuple(Finding(n, "walk", d) for n, d in walk.findings))))
    final = next((o for _, o in outcomes if o.action.is_final), Outcome())
    found = [(by, f) for by, o in outcomes for f in o.findings]
    result = {
        "items": [_item(i) for i in walk.items],
        "findings": [{"by": by, "name": f.name, "detail": f.detail} for by, f in found],
        "answered": list(report.answered),
        "scanned": report.scanned,
        "action": final.action.value,
        "reply": str(final.reply).strip() if final.reply is not None else "",
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print_test(result)
    if final.action is Action.TEMPFAIL or not report.scanned:
        raise typer.Exit(3)
    raise typer.Exit(1 if final.action.is_final else 0)


def _item(item: ScanItem) -> dict[str, Any]:
    return {"path": item.path, "size": len(item.data), "name": item.name,
            "declared_type": item.declared_type, "true_type": refine(item)}  # fmt: skip


def _print_test(result: dict[str, Any]) -> None:
    out = console()
    items = Table("path", "size", "declared type", "true type")
    for i in result["items"]:
        cells = (clean(i["path"]), str(i["size"]), clean(i["declared_type"]), i["true_type"])
        items.add_row(*map(Text, cells))
    out.print(items)
    findings = Table("finding", "by", "detail")
    for f in result["findings"]:
        findings.add_row(Text(f["name"]), Text(f["by"]), Text(clean(f["detail"])))
    out.print(findings if findings.row_count else Text("no findings"))
    engines = ", ".join(result["answered"]) or "none"
    out.print(Text(f"engines that answered: {engines}; scanned: {'yes' if result['scanned'] else 'NO'}"))
    out.print(Text(f"the gateway would answer: {result['reply'] or result['action']}"))
