"""``edgeward quarantine rekey`` and ``reindex``: the quarantine's key and its search index.

* ``rekey [-c CONFIG] [--json]``: see :mod:`edgeward.quarantine.rekey`. Prints how many files
  were sealed again, the entries under a key we do not hold and the damaged ones (each by id),
  and whether the old key was retired. A running gateway follows the new key by itself.

* ``reindex [-c CONFIG] [--json]``: build the search index (``quarantine.index``) again from
  the entries' files, with a progress bar. Searches rebuild a damaged index by themselves;
  this is for after restoring the folder from a backup, or to check the count.

Exit codes (rekey): 0 every entry is under the new key, 1 some are not (unknown key,
damaged), 2 bad input (encryption is off, a key file that cannot be used).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from edgeward.cli.quarantine import quarantine_app, service
from edgeward.cli.queue import ConfigOption, console, fail, load
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.errors import ConfigError
from edgeward.quarantine.crypto import KeyMismatch
from edgeward.quarantine.rekey import rekey

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@quarantine_app.command("rekey")
def rekey_command(config_path: ConfigOption = DEFAULT_CONFIG_PATH, as_json: JsonOption = False) -> None:
    """Make a new encryption key and seal every entry again under it (old keys readable until done)."""
    config = load(config_path)
    key_file = config.quarantine.encryption_key_file
    if key_file is None:
        fail("the quarantine is not encrypted: set [quarantine] encryption_key_file first")
    store = service(config).store
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console(), transient=True, disable=as_json) as bar:  # fmt: skip
        task = bar.add_task("sealing again", total=None)
        try:
            report = rekey(store, config.resolve(key_file),
                           progress=lambda n, total: bar.update(task, completed=n, total=total))  # fmt: skip
        except ConfigError as exc:
            fail(str(exc))
    left = len(report.unknown_key) + len(report.damaged)
    if as_json:
        typer.echo(json.dumps(asdict(report)))
        raise typer.Exit(1 if left else 0)
    out = console()
    summary = f"new key id {report.key_id}: {report.resealed} file(s) sealed again"
    summary += f" ({report.plaintext} were not encrypted), {report.under_new_key} under the new key"
    out.print(Text(summary))
    for qid in report.unknown_key:
        out.print(Text(f"{qid}: sealed under a key this host does not hold; left as it is"))
    for qid in report.damaged:
        out.print(Text(f"{qid}: damaged (fails authentication); left as it is"))
    if report.kept:
        out.print(Text(f"{report.kept} old key(s) kept: files still use them"))
    elif report.retired:
        out.print(Text(f"{report.retired} old key(s) retired"))
    raise typer.Exit(1 if left else 0)


@quarantine_app.command("reindex")
def reindex_command(config_path: ConfigOption = DEFAULT_CONFIG_PATH, as_json: JsonOption = False) -> None:
    """Build the search index again from the entries' files."""
    config = load(config_path)
    svc = service(config)
    total = sum(1 for p in svc.store.root.glob("*.json") if not p.name.startswith("."))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console(), transient=True, disable=as_json) as bar:  # fmt: skip
        task = bar.add_task("indexing", total=total)
        try:
            count = svc.reindex(progress=lambda n: bar.update(task, completed=n))
        except (ConfigError, KeyMismatch) as exc:
            fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"indexed": count, "files": total}))
    else:
        console().print(Text(f"indexed {count} of {total} entries"))
