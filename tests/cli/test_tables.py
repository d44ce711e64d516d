"""Identifiers in CLI tables are never cut: queue, quarantine, tracking and certificate listings."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.cli.tables import add_id_column, print_table
from edgeward.config.load import load_config
from edgeward.config.schema import LoggingConfig
from edgeward.logs.tracking import TrackingLog
from edgeward.quarantine.store import QuarantineEntry, QuarantineStore
from edgeward.queue import MessageRecord, RecipientRecord, Spool

runner = CliRunner()
WIDTHS = pytest.mark.parametrize("columns", ["80", "40"])
MESSAGE_ID = "<20261201234512.1a2b3c4d5e6f7a8b9c0d1e2f@mailer.long-sender-domain.example.org>"
BODY = f"From: a@example.org\r\nMessage-ID: {MESSAGE_ID}\r\nSubject: hello\r\n\r\nbody\r\n".encode()


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text('accepted_domains = ["example.org"]\n[server]\ndata_dir = "."\n')
    return path


def _invoke(columns: str, *args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": columns})
    assert result.exit_code == 0, result.output
    return result.stdout


def _queue(config_path: Path) -> list[str]:
    spool = Spool(load_config(config_path).resolve(Path("queue")), fsync=False)
    ids = []
    for n in range(3):
        record = MessageRecord(
            id="",
            mail_from=f"a-rather-long-sender-address-{n}@newsletters.example.org",
            recipients=(RecipientRecord("someone@example.net"), RecipientRecord("else@example.net")),
            received_at=time.time() - 7200,
            size=len(BODY),
            message_id=MESSAGE_ID,
        )
        ids.append(asyncio.run(spool.accept(record, BODY)))
    return ids


@WIDTHS
def test_queue_list_and_show_keep_ids_whole(config_path: Path, columns: str) -> None:
    ids = _queue(config_path)
    listing = _invoke(columns, "queue", "list", "-c", str(config_path))
    assert all(msg_id in listing for msg_id in ids)
    assert "Sender" in listing and "incoming 3" in listing  # the other columns are still there
    shown = _invoke(columns, "queue", "show", ids[0], "-c", str(config_path))
    assert ids[0] in shown and MESSAGE_ID in shown


@WIDTHS
def test_quarantine_list_keeps_ids_whole(config_path: Path, columns: str) -> None:
    store = QuarantineStore(load_config(config_path).resolve(Path("quarantine")), fsync=False)
    entry = QuarantineEntry(
        qid="", mail_from="promotions@offers.example.net", recipients=("user@example.org",),
        reason="content-filter", scl=9, subject="Limited time offer on everything you never needed",
    )  # fmt: skip
    qids = [store.put(entry, BODY) for _ in range(2)]
    listing = _invoke(columns, "quarantine", "list", "-c", str(config_path))
    assert all(qid in listing for qid in qids)
    assert "2 message(s) in quarantine" in listing


def test_quarantine_list_shows_markup_in_mail_as_text(config_path: Path) -> None:
    store = QuarantineStore(load_config(config_path).resolve(Path("quarantine")), fsync=False)
    subject = "[/x] [bold]offer[/bold] [link=http://e.example]here[/link]"
    store.put(QuarantineEntry(qid="", mail_from="a@b.example", recipients=("u@example.org",),
                              reason="content-filter", subject=subject), BODY)  # fmt: skip
    listing = _invoke("200", "quarantine", "list", "-c", str(config_path))
    assert subject in listing


@WIDTHS
def test_track_keeps_queue_ids_whole(config_path: Path, columns: str) -> None:
    log = TrackingLog(load_config(config_path).resolve(Path("log")), LoggingConfig())
    ids = ["01JDX9ZK3Q8W5N7T2R4M", "01JDX9ZK3Q8W5N7T2R4N"]
    for msg_id in ids:
        log.event(
            "RECEIVE", msg_id=msg_id, sender="a-rather-long-sender@example.net",
            recipients=["first@example.org", "second@example.org"],
            reply=f"250 2.0.0 OK queued as {msg_id}",
        )  # fmt: skip
    log.close()
    listing = _invoke(columns, "track", "-c", str(config_path))
    assert all(msg_id in listing for msg_id in ids)


@WIDTHS
def test_cert_list_shows_whole_thumbprints(config_path: Path, columns: str) -> None:
    args = ("cert", "new", "mx.example.org", "--san", "mail.example.org", "-c", str(config_path))
    made = _invoke("200", *args)
    thumbprint = made.strip()
    assert len(thumbprint) == 64
    listing = _invoke(columns, "cert", "list", "-c", str(config_path))
    assert thumbprint in listing and "mail.example.org" in listing
    doc = json.loads(_invoke(columns, "cert", "list", "--json", "-c", str(config_path)))
    assert [c["thumbprint"] for c in doc["certificates"]] == [thumbprint]


def _render(table: Table, width: int, keep: list[str]) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    print_table(console, table, keep)
    return console.file.getvalue()  # type: ignore[attr-defined]


def _sample() -> tuple[Table, str]:
    msg_id = "0123456789ABCDEFGHJKMNPQRSTVWXYZ0123456789"
    table = Table(title="Messages")
    add_id_column(table, "ID")
    table.add_column("Sender")
    table.add_column("Reply")
    table.add_row(Text(msg_id), "someone@example.org", Text("[red]not markup[/red] 451 4.7.1 later"))
    return table, msg_id


def test_a_table_that_fits_is_printed_as_a_table() -> None:
    table, msg_id = _sample()
    out = _render(table, 160, [msg_id])
    assert msg_id in out and "Sender" in out and "┃" in out


def test_a_table_too_narrow_for_its_ids_becomes_labelled_lines() -> None:
    table, msg_id = _sample()
    out = _render(table, 40, [msg_id])
    assert out.splitlines() == [
        "Messages",
        f"ID: {msg_id}",
        "  Sender: someone@example.org",
        "  Reply: [red]not markup[/red] 451 4.7.1 later",
        "",
    ]


def test_a_key_value_table_falls_back_to_key_value_lines() -> None:
    table = Table(show_header=False, box=None)
    table.add_column()
    table.add_column()
    table.add_row("message-id", Text(MESSAGE_ID))
    assert _render(table, 40, [MESSAGE_ID]).splitlines() == [f"message-id: {MESSAGE_ID}"]
