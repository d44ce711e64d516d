"""``edgeward quarantine``: list, show, release and delete quarantined messages.

Releasing puts the message back in the queue for its original recipients, and, with learning
on, teaches the classifier that it was not spam (Exchange's "release as not junk").
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from edgeward.cli.queue import ConfigOption, clean, console, duration, fail, load
from edgeward.cli.tables import print_table
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.config.schema import Config
from edgeward.quarantine.store import QuarantineStore
from edgeward.queue.model import MessageRecord, RecipientRecord
from edgeward.queue.spool import Spool

quarantine_app = typer.Typer(help="Quarantined messages: list, show, release, delete.", no_args_is_help=True)

QidArgument = Annotated[str, typer.Argument(help="Quarantine id, as shown by 'quarantine list'.")]


def _store(config: Config) -> QuarantineStore:
    return QuarantineStore(config.resolve(Path("quarantine")), fsync=config.queue.fsync)


@quarantine_app.command("list")
def list_(
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The quarantined messages, oldest first."""
    entries = _store(load(config_path)).list()
    if as_json:
        typer.echo(json.dumps([asdict(e) for e in entries], indent=2))
        return
    table = Table("id", "age", "SCL", "sender", "recipients", "subject", "reason")
    now = time.time()
    for e in entries:
        table.add_row(*map(Text, (e.qid, duration(now - e.quarantined_at), str(e.scl),  # mail text: no markup
                      clean(e.mail_from or "<>"), clean(", ".join(e.recipients))[:60], clean(e.subject)[:60],
                      e.reason)))  # fmt: skip
    print_table(console(), table, keep=[e.qid for e in entries])
    console().print(f"{len(entries)} message(s) in quarantine")


@quarantine_app.command()
def show(qid: QidArgument, config_path: ConfigOption = DEFAULT_CONFIG_PATH) -> None:
    """An entry and the headers of its message (as escaped text, never rendered)."""
    try:
        entry, data = _store(load(config_path)).get(qid)
    except KeyError:
        fail(f"no quarantined message with id {clean(qid)}")
    typer.echo(json.dumps(asdict(entry), indent=2))
    head = data.split(b"\r\n\r\n", 1)[0][:65536]
    typer.echo(clean(head.decode("utf-8", "replace")).replace("\\x0d\\x0a", "\n"))


@quarantine_app.command()
def release(
    qid: QidArgument,
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    learn: Annotated[
        bool, typer.Option("--learn/--no-learn", help="Teach the classifier it was not spam.")
    ] = True,
) -> None:
    """Deliver a quarantined message to its recipients after all."""
    config = load(config_path)
    store = _store(config)
    try:
        entry, data = store.get(qid)
    except KeyError:
        fail(f"no quarantined message with id {clean(qid)}")
    spool = Spool(config.resolve(Path("queue")), fsync=config.queue.fsync)
    record = MessageRecord(
        id=spool.new_id(), mail_from=entry.mail_from,
        recipients=tuple(RecipientRecord(address=r) for r in entry.recipients),
        received_at=time.time(), size=len(data), client_ip=entry.client_ip, connector="quarantine",
    )  # fmt: skip
    msg_id = asyncio.run(spool.accept(record, data))
    store.delete(qid)
    typer.echo(f"released {qid} as queue id {msg_id}")
    if learn and config.agents.content_filter.learning:
        from edgeward.runtime import build_classifier

        build_classifier(config).learn(data, is_spam=False)
        typer.echo("the classifier learned it as not spam")


@quarantine_app.command()
def delete(qid: QidArgument, config_path: ConfigOption = DEFAULT_CONFIG_PATH) -> None:
    """Delete a quarantined message for good."""
    try:
        _store(load(config_path)).delete(qid)
    except KeyError:
        fail(f"no quarantined message with id {clean(qid)}")
    typer.echo(f"deleted {qid}")
