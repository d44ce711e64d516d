"""``edgeward queue``: the queue viewer commands, run through Typer's test runner."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.queue import queue_app
from edgeward.queue import MessageRecord, QueueState, RecipientRecord, Spool

BODY = (
    b"From: a@example.org\r\nSubject: =?utf-8?q?hi?= \x1b[31mred\r\n"
    b"Message-ID: <m@example.org>\r\n\r\nbody\r\n"
)
runner = CliRunner()


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "data" / "queue")


def add(spool: Spool, **kw: object) -> str:
    rec = MessageRecord(
        id="",
        mail_from="a@example.org",
        recipients=(RecipientRecord("b@example.net"), RecipientRecord("c@example.net")),
        received_at=time.time() - 7200,
        size=len(BODY),
    )
    return asyncio.run(spool.accept(replace(rec, **kw), BODY))  # type: ignore[arg-type]


def test_list_as_table_and_json(spool: Spool) -> None:
    msg_id = add(spool)
    r = runner.invoke(queue_app, ["list", "--spool", str(spool.root)], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert msg_id in r.stdout and "incoming" in r.stdout and "a@example.org" in r.stdout
    assert "2h" in r.stdout  # the age
    r = runner.invoke(queue_app, ["list", "--spool", str(spool.root), "--json"])
    (entry,) = json.loads(r.stdout)
    assert entry["id"] == msg_id and entry["state"] == "incoming" and len(entry["recipients"]) == 2
    r = runner.invoke(queue_app, ["list", "--spool", str(spool.root), "--json", "--state", "HOLD"])
    assert json.loads(r.stdout) == []


def test_list_from_the_configuration(spool: Spool, tmp_path: Path) -> None:
    msg_id = add(spool)
    cfg = tmp_path / "edgeward.toml"
    cfg.write_text('[server]\ndata_dir = "data"\n')
    r = runner.invoke(queue_app, ["list", "--config", str(cfg), "--json"])
    assert r.exit_code == 0, r.output
    assert [e["id"] for e in json.loads(r.stdout)] == [msg_id]


def test_a_bad_configuration_is_reported(tmp_path: Path) -> None:
    cfg = tmp_path / "edgeward.toml"
    cfg.write_text("[queue]\nfsync = 'maybe'\n")
    r = runner.invoke(queue_app, ["list", "--config", str(cfg)])
    assert r.exit_code == 2 and "queue.fsync" in r.stderr
    r = runner.invoke(queue_app, ["list", "--spool", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no queue at" in r.stderr


def test_show_prints_envelope_recipients_and_escaped_headers(spool: Spool) -> None:
    msg_id = add(spool, client_ip="192.0.2.1")
    r = runner.invoke(queue_app, ["show", msg_id, "--spool", str(spool.root)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "c@example.net" in r.stdout and "192.0.2.1" in r.stdout
    assert "Message-ID: <m@example.org>" in r.stdout
    assert "\x1b" not in r.stdout and "\\x1b[31mred" in r.stdout  # a terminal escape is shown, not run
    r = runner.invoke(queue_app, ["show", msg_id, "--spool", str(spool.root), "--json"])
    shown = json.loads(r.stdout)
    assert shown["headers"][0] == "From: a@example.org" and shown["state"] == "incoming"


@pytest.mark.parametrize("command", ["show", "hold", "release", "remove", "export", "retry"])
def test_unknown_ids_exit_2(spool: Spool, command: str) -> None:
    r = runner.invoke(queue_app, [command, "01NOPE", "--spool", str(spool.root)])
    assert r.exit_code == 2
    assert "no message with id 01NOPE in the queue" in r.stderr


def test_hold_release_retry(spool: Spool) -> None:
    msg_id = add(spool)
    root = str(spool.root)
    r = runner.invoke(queue_app, ["hold", msg_id, "--reason", "check it", "--spool", root])
    assert r.exit_code == 0, r.output
    assert spool.load(msg_id).hold_reason == "check it"
    r = runner.invoke(queue_app, ["list", "--spool", root], env={"COLUMNS": "250"})
    assert "held (check it)" in r.stdout
    r = runner.invoke(queue_app, ["release", msg_id, "--spool", root])
    assert r.exit_code == 0 and spool.load(msg_id).state is QueueState.DEFERRED
    r = runner.invoke(queue_app, ["release", msg_id, "--spool", root])
    assert r.exit_code == 1 and "not held" in r.stderr
    spool.update(replace(spool.claim(msg_id), next_attempt_at=time.time() + 3600), QueueState.DEFERRED)
    r = runner.invoke(queue_app, ["retry", "--all", "--spool", root])
    assert r.exit_code == 0 and "1 message(s)" in r.stdout
    assert spool.load(msg_id).state is QueueState.INCOMING
    r = runner.invoke(queue_app, ["retry", msg_id, "--spool", root])
    assert r.exit_code == 0 and "nothing to retry" in r.stderr
    r = runner.invoke(queue_app, ["retry", "--spool", root])
    assert r.exit_code == 2


def test_actions_on_a_message_in_delivery_fail_cleanly(spool: Spool) -> None:
    msg_id = add(spool)
    spool.claim(msg_id)
    r = runner.invoke(queue_app, ["hold", msg_id, "--spool", str(spool.root)])
    assert r.exit_code == 1 and "being delivered" in r.stderr


def test_remove(spool: Spool) -> None:
    msg_id = add(spool)
    r = runner.invoke(queue_app, ["remove", msg_id, "--no-ndr", "--spool", str(spool.root)])
    assert r.exit_code == 0
    assert spool.list() == []


def test_remove_with_ndr_queues_a_failure_report_to_the_sender(spool: Spool) -> None:
    import email

    msg_id = add(spool)
    sender = spool.load(msg_id).mail_from
    r = runner.invoke(queue_app, ["remove", msg_id, "--ndr", "--spool", str(spool.root)])
    assert r.exit_code == 0, r.stderr
    [dsn] = spool.list()
    assert dsn.id != msg_id and dsn.mail_from == "" and [x.address for x in dsn.recipients] == [sender]
    report = email.message_from_bytes(spool.read_data(dsn.id))
    assert report.get_content_type() == "multipart/report"
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    assert "5.3.0" in status.as_string()


def test_export_to_stdout_and_file(spool: Spool, tmp_path: Path) -> None:
    msg_id = add(spool)
    r = runner.invoke(queue_app, ["export", msg_id, "--spool", str(spool.root)])
    assert r.exit_code == 0 and r.stdout_bytes == BODY
    out = tmp_path / "m.eml"
    r = runner.invoke(queue_app, ["export", msg_id, "-o", str(out), "--spool", str(spool.root)])
    assert r.exit_code == 0 and out.read_bytes() == BODY
    assert out.stat().st_mode & 0o777 == 0o600
    r = runner.invoke(queue_app, ["export", msg_id, "-o", str(out), "--spool", str(spool.root)])
    assert r.exit_code == 2 and "not overwriting" in r.stderr
