"""``edgeward quarantine``: list, show, release and delete quarantined messages.

Releasing puts the message back in the queue for its original recipients, with the envelope,
Message-ID and DSN parameters it arrived with, and, with learning on, teaches the classifier
that it was not spam (Exchange's "release as not junk"). Release and delete are written to the
tracking log (RELEASE, REMOVE; ``cli.adminlog``); run as root, everything written is given to
the service user that owns the data folders, so the running gateway can read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from edgeward.cli.adminlog import track_admin, track_record
from edgeward.cli.queue import ConfigOption, clean, console, duration, fail, load
from edgeward.cli.tables import print_table
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.config.schema import Config
from edgeward.quarantine.store import QuarantineEntry, QuarantineError, QuarantineStore, release_record
from edgeward.queue.spool import Spool

quarantine_app = typer.Typer(help="Quarantined messages: list, show, release, delete.", no_args_is_help=True)

QidArgument = Annotated[str, typer.Argument(help="Quarantine id, as shown by 'quarantine list'.")]


def _store(config: Config) -> QuarantineStore:
    def corrupt(name: str, reason: str) -> None:
        track_admin(config, "CORRUPT", msg_id=name, detail=f"quarantine: {reason}")

    return QuarantineStore(config.resolve(Path("quarantine")), fsync=config.queue.fsync, on_corrupt=corrupt)


def _get(store: QuarantineStore, qid: str) -> tuple[QuarantineEntry, bytes]:
    try:
        return store.get(qid)
    except KeyError:
        fail(f"no quarantined message with id {clean(qid)}")
    except QuarantineError as exc:
        fail(str(exc), code=1)


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
    entry, data = _get(_store(load(config_path)), qid)
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
    entry, data = _get(store, qid)
    queue = config.queue
    spool = Spool(config.resolve(Path("queue")), fsync=queue.fsync, poison_threshold=queue.poison_threshold)
    record = release_record(entry, data, msg_id=spool.new_id(), now=time.time())
    msg_id = asyncio.run(spool.accept(record, data))
    track_record(config, "RELEASE", record, detail=f"from quarantine {qid} by administrator")
    # Deleted meanwhile (by retention or another administrator): released all the same.
    with contextlib.suppress(KeyError):
        store.delete(qid)
    typer.echo(f"released {qid} as queue id {msg_id}")
    learning = config.learning
    if learn and config.agents.content_filter.learning and learning.enabled and learning.releases:
        from edgeward.content.state import SqliteModelStateStore
        from edgeward.runtime import build_classifier, content_state_path

        build_classifier(config).learn(data, is_spam=False)
        # Counted for 'spam status' (the release path of the learning ledger).
        with SqliteModelStateStore(content_state_path(config)) as ledger:
            ledger.record_learned("release", False, time.time())
        typer.echo("the classifier learned it as not spam")


@quarantine_app.command()
def delete(qid: QidArgument, config_path: ConfigOption = DEFAULT_CONFIG_PATH) -> None:
    """Delete a quarantined message for good."""
    config = load(config_path)
    store = _store(config)
    try:
        entry: QuarantineEntry | None = store.get(qid)[0]
    except (KeyError, QuarantineError):
        entry = None  # deleting is how an unusable entry is got rid of, so go on
    try:
        store.delete(qid)
    except KeyError:
        fail(f"no quarantined message with id {clean(qid)}")
    if entry is not None:
        track_admin(
            config, "REMOVE", msg_id=qid, sender=entry.mail_from, recipients=entry.recipients,
            client_ip=entry.client_ip, size=entry.size, detail="from quarantine by administrator",
        )  # fmt: skip
    else:
        track_admin(config, "REMOVE", msg_id=qid, detail="from quarantine by administrator")
    typer.echo(f"deleted {qid}")
