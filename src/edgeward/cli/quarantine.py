"""``edgeward quarantine``: list, search, show, export, release and delete quarantined messages.

Every command is a thin front over ``quarantine.service``, which a web console will share.
Releasing puts the message back in the queue for its original recipients (or the ones named
with ``--to``), with the envelope, Message-ID and DSN parameters it arrived with, and, with
learning on, teaches the classifier that it was not spam (Exchange's "release as not junk").
Release, delete and purge are written to the tracking log (RELEASE, REMOVE; ``logs.adminlog``);
run as root, everything written is given to the service user that owns the data folders, so
the running gateway can read it.
``digest`` builds the users' digests (``quarantine.digest``), printing them with ``--dry-run``
and queueing them with ``--send``, as the gateway does daily when ``digest_enabled`` is on.

Everything from mail is printed escaped: control characters as ``\\xNN``, and never as Rich
markup.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from edgeward.cli.queue import ConfigOption, clean, console, duration, fail, load
from edgeward.cli.tables import print_table
from edgeward.cli.track import parse_when
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.config.schema import Config
from edgeward.errors import ConfigError
from edgeward.logs.adminlog import track_admin
from edgeward.logs.audit import audit
from edgeward.quarantine.crypto import KeyMismatch
from edgeward.quarantine.service import Page, QuarantineService, Search, open_store
from edgeward.quarantine.store import QuarantineError
from edgeward.queue.spool import Spool

quarantine_app = typer.Typer(
    help="Quarantined messages: list, search, show, export, release, delete, purge, digest, rekey, reindex.",
    no_args_is_help=True,
)

QidArgument = Annotated[str, typer.Argument(help="Quarantine id, as shown by 'quarantine list'.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
LimitOption = Annotated[int, typer.Option("--limit", min=1, help="At most this many entries.")]
OffsetOption = Annotated[int, typer.Option("--offset", min=0, help="Skip this many (paging).")]


def _learner(config: Config) -> Callable[[bytes], None] | None:
    learning = config.learning
    if not (config.agents.content_filter.learning and learning.enabled and learning.releases):
        return None

    def learn(data: bytes) -> None:
        from edgeward.content.state import SqliteModelStateStore
        from edgeward.paths import content_state_path
        from edgeward.runtime_policy import build_classifier

        build_classifier(config).learn(data, is_spam=False)
        # Counted for 'spam status' (the release path of the learning ledger).
        with SqliteModelStateStore(content_state_path(config)) as ledger:
            ledger.record_learned("release", False, time.time())

    return learn


def service(config: Config) -> QuarantineService:
    """The service as an administrator's command uses it: tracked in ``tracking-admin.log``."""

    def corrupt(name: str, reason: str) -> None:
        track_admin(config, "CORRUPT", msg_id=name, detail=f"quarantine: {reason}")

    def spool() -> Spool:
        queue = config.queue
        return Spool(
            config.resolve(Path("queue")), fsync=queue.fsync, poison_threshold=queue.poison_threshold
        )

    try:
        store = open_store(config, on_corrupt=corrupt)
    except ConfigError as exc:
        fail(str(exc))
    return QuarantineService(store, spool, functools.partial(track_admin, config), learn=_learner(config))


def unusable(exc: Exception, qid: str = "") -> NoReturn:
    """The clear error for an entry that cannot be read (exit 1) or does not exist (exit 2)."""
    if isinstance(exc, KeyError):
        fail(f"no quarantined message with id {clean(qid)}")
    fail(str(exc), code=1)


Unusable = (KeyError, QuarantineError, KeyMismatch)


def _print_page(page: Page, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([asdict(e) for e in page.entries], indent=2))
        return
    table = Table("id", "age", "SCL", "sender", "recipients", "subject", "reason")
    now = time.time()
    for e in page.entries:
        table.add_row(*map(Text, (e.qid, duration(now - e.quarantined_at), str(e.scl),  # mail text: no markup
                      clean(e.mail_from or "<>"), clean(", ".join(e.recipients))[:60], clean(e.subject)[:60],
                      e.reason)))  # fmt: skip
    print_table(console(), table, keep=[e.qid for e in page.entries])
    shown = (
        f"{page.offset + 1}-{page.offset + len(page.entries)} of " if len(page.entries) < page.total else ""
    )
    console().print(f"{shown}{page.total} message(s) in quarantine")


def _search(config: Config, query: Search, as_json: bool) -> None:
    svc = service(config)
    try:
        page = svc.search(query)
    except KeyMismatch as exc:
        fail(str(exc), code=1)
    _print_page(page, as_json)


@quarantine_app.command("list")
def list_(
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    as_json: JsonOption = False,
    limit: LimitOption = 1000,
    offset: OffsetOption = 0,
) -> None:
    """The quarantined messages, newest first."""
    _search(load(config_path), Search(offset=offset, limit=limit), as_json)


@quarantine_app.command()
def search(
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    sender: Annotated[str, typer.Option(help="Sender address contains this.")] = "",
    recipient: Annotated[str, typer.Option(help="A recipient contains this.")] = "",
    subject: Annotated[str, typer.Option(help="Subject contains this.")] = "",
    reason: Annotated[str, typer.Option(help="Who quarantined it (content-filter, antivirus ...).")] = "",
    finding: Annotated[
        str, typer.Option(help="A finding, scan engine or signature (AV_INFECTED, clamd).")
    ] = "",
    since: Annotated[str | None, typer.Option(help="ISO date/time or age (2h, 3d).")] = None,
    until: Annotated[str | None, typer.Option(help="ISO date/time or age (2h, 3d).")] = None,
    as_json: JsonOption = False,
    limit: LimitOption = 100,
    offset: OffsetOption = 0,
) -> None:
    """Quarantined messages matching every criterion given (substrings, case-insensitive)."""
    query = Search(
        sender=sender, recipient=recipient, subject=subject, reason=reason, finding=finding,
        since=parse_when(since).timestamp() if since else None,
        until=parse_when(until).timestamp() if until else None, offset=offset, limit=limit,
    )  # fmt: skip
    _search(load(config_path), query, as_json)


@quarantine_app.command()
def show(
    qid: QidArgument, config_path: ConfigOption = DEFAULT_CONFIG_PATH, as_json: JsonOption = False
) -> None:
    """An entry, its headers, text parts and attachment list (escaped text, never rendered)."""
    try:
        shown = service(load(config_path)).show(qid)
    except Unusable as exc:
        unusable(exc, qid)
    view = shown.view
    if as_json:
        typer.echo(json.dumps({"entry": asdict(shown.entry), **asdict(view)}, indent=2))
        return
    out = console()
    e = shown.entry
    rows = (("id", e.qid), ("sender", e.mail_from or "<>"), ("recipients", ", ".join(e.recipients)),
            ("reason", e.reason), ("SCL / PCL", f"{e.scl} / {e.pcl}"), ("size", str(e.size)))  # fmt: skip
    for label, value in rows:
        out.print(Text(f"{label:>10}: {clean(value)}"))
    for f in e.details or ():
        out.print(Text(f"   finding: {f.name} {f.score:+g} ({f.agent}) {clean(f.detail)}"))
    for r in e.engines:
        out.print(Text(f"    engine: {r.engine} said {r.finding} {clean(r.signature)} in {clean(r.part)}"))
    out.print(Text("\n-- headers --"))
    for name, value in view.headers:
        out.print(Text(f"{name}: {value}"))
    for a in view.attachments:
        what = f"{a.name or '(no name)'} {a.declared_type} (is {a.true_type or 'unknown'})"
        out.print(Text(f"-- attachment {a.path}: {what}, {a.size} bytes"))
    for t in view.texts:
        out.print(Text(f"\n-- {t.content_type} part {t.path}{' (cut)' if t.truncated else ''} --"))
        out.print(Text(t.text))
    for note in view.notes:
        out.print(Text(f"note: {note}"))


@quarantine_app.command()
def export(
    qid: QidArgument,
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here (.eml) instead of stdout.")
    ] = None,
) -> None:
    """The message as it arrived, as an .eml file (a new file, 0600) or on standard output."""
    config = load(config_path)
    try:
        data = service(config).export(qid)
    except Unusable as exc:
        unusable(exc, qid)
    audit(config, "message.export", target=qid, detail=str(output or "standard output"))
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        fail(f"cannot create {output}: {exc.strerror}")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    typer.echo(f"exported {qid} to {output} ({len(data)} bytes)")


@quarantine_app.command()
def release(
    qid: QidArgument,
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    to: Annotated[
        list[str] | None, typer.Option("--to", help="Release to this recipient only (repeatable).")
    ] = None,
    learn: Annotated[
        bool, typer.Option("--learn/--no-learn", help="Teach the classifier it was not spam.")
    ] = True,
) -> None:
    """Deliver a quarantined message to its recipients (or some of them) after all."""
    svc = service(load(config_path))
    try:
        done = asyncio.run(svc.release(qid, to or None, learn=learn))
    except ValueError as exc:
        fail(clean(str(exc)))
    except Unusable as exc:
        unusable(exc, qid)
    typer.echo(f"released {qid} as queue id {done.msg_id}")
    if done.remaining:
        typer.echo(f"still held for {clean(', '.join(done.remaining))}")
    if done.learned:
        typer.echo("the classifier learned it as not spam")


@quarantine_app.command()
def delete(qid: QidArgument, config_path: ConfigOption = DEFAULT_CONFIG_PATH) -> None:
    """Delete a quarantined message for good."""
    try:
        service(load(config_path)).delete(qid)
    except KeyError:
        fail(f"no quarantined message with id {clean(qid)}")
    typer.echo(f"deleted {qid}")


@quarantine_app.command()
def purge(
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    expired: Annotated[bool, typer.Option("--expired", help="Run retention now (entries past it).")] = False,
    sender: Annotated[str, typer.Option(help="Sender address contains this.")] = "",
    recipient: Annotated[str, typer.Option(help="A recipient contains this.")] = "",
    subject: Annotated[str, typer.Option(help="Subject contains this.")] = "",
    reason: Annotated[str, typer.Option(help="Who quarantined it.")] = "",
    finding: Annotated[str, typer.Option(help="A finding, scan engine or signature.")] = "",
    before: Annotated[str | None, typer.Option(help="Quarantined before: ISO date/time or age (3d).")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every entry (required when no criterion is given).")
    ] = False,
) -> None:
    """Delete entries past the retention time (--expired) or matching criteria, with tracking."""
    from edgeward.config.quarantine import effective_retention

    config = load(config_path)
    svc = service(config)
    if expired:
        try:
            gone = svc.purge_expired(effective_retention(config))
        except KeyMismatch as exc:
            fail(str(exc), code=1)
        typer.echo(f"purged {len(gone)} expired message(s)")
        return
    query = Search(sender=sender, recipient=recipient, subject=subject, reason=reason, finding=finding,
                   until=parse_when(before).timestamp() if before else None)  # fmt: skip
    if query == Search() and not all_:
        fail("purge deletes every entry matching the criteria: give a criterion, --expired or --all")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console(), transient=True) as bar:  # fmt: skip
        task = bar.add_task("purging", total=None)
        try:
            gone = svc.purge(query, progress=lambda n, total: bar.update(task, completed=n, total=total))
        except KeyMismatch as exc:
            fail(str(exc), code=1)
    typer.echo(f"purged {len(gone)} message(s)")


@quarantine_app.command()
def digest(
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    send: Annotated[bool, typer.Option("--send", help="Queue the digests for delivery.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print them, send nothing (the default).")
    ] = False,
    window: Annotated[str, typer.Option(help="Entries quarantined within this age (1d).")] = "1d",
) -> None:
    """The users' quarantine digests: who would get one and what it lists, or send them."""
    from edgeward.config.schema import parse_duration
    from edgeward.quarantine.digest import build_digests, send_digests

    if send and dry_run:
        fail("--send and --dry-run exclude each other")
    try:
        seconds = parse_duration(window)
    except ValueError as exc:
        fail(f"--window: {exc}")
    config = load(config_path)
    svc = service(config)
    if not send:
        digests = build_digests(svc.store.list(), config.accepted_domains, since=time.time() - seconds)
        for d in digests:
            console().print(Text(f"{clean(d.recipient)}: {len(d.lines) + d.more} message(s)"))
            for line in d.lines:
                console().print(Text(f"  {line.qid} {line.sender} | {line.subject} | {line.reason}"))
        console().print(f"{len(digests)} digest(s) would be sent")
        return
    spool = svc.queue()
    try:
        sent = asyncio.run(send_digests(config, spool.accept, window=seconds, store=svc.store))
    except (KeyMismatch, ConfigError) as exc:
        fail(str(exc), code=1)
    for rcpt, msg_id in sent:
        typer.echo(f"queued the digest for {clean(rcpt)} as {msg_id}")
    typer.echo(f"{len(sent)} digest(s) queued")
