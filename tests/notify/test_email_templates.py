"""Templates, sanitising of mail-supplied text, and the notice message the e-mail channel queues."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from edgeward.errors import ConfigError
from edgeward.notify.email import EmailChannel, build_notice
from edgeward.notify.events import Event, clean
from edgeward.notify.limiter import Batch
from edgeward.notify.templates import Templates, context
from edgeward.queue.model import MessageRecord
from edgeward.queue.spool import Spool

EVIL = "Eicar\r\nBcc: victim@else.test\r\n\r\nbody\u2028Subject: x\x00"


def _batch(count: int, **fields: object) -> Batch:
    batch = Batch("virus")
    for n in range(count):
        batch.add(Event.make("virus", "warning", f"{EVIL} found {n}", signature=EVIL, **fields))
    return batch


def test_clean_flattens_every_line_break_and_control() -> None:
    assert clean(EVIL) == "Eicar Bcc: victim@else.test body Subject: x"
    assert len(clean("x" * 1000)) == 300


def test_event_fields_are_checked() -> None:
    with pytest.raises(ValueError):
        Event.make("virus", "warning", "x", **{"Bad-Name": 1})
    with pytest.raises(ValueError):
        Event.make("nonsense", "warning", "x")  # type: ignore[arg-type]
    event = Event.make("virus", "warning", "x", recipients=["a@x.test", "b@x.test"], none=None)
    assert event.fields == {"recipients": "a@x.test, b@x.test"}


def test_shipped_virus_template_with_the_count() -> None:
    templates = Templates()
    assert {"default", "virus", "virus-sender", "engine_down", "engine_up"} <= set(templates.names())
    rendered = templates.render("virus", context(_batch(38, engine="clamd"), "mx.example.test", 600))
    assert rendered.subject.startswith("[Edgeward mx.example.test] Virus found: Eicar Bcc")
    assert rendered.subject.endswith("(and 37 more)")
    assert "... and 33 more event(s)" in rendered.body  # 38 events, 5 shown
    assert "Engine:    clamd" in rendered.body and "10 min" in rendered.body
    assert "$" not in rendered.body


def test_an_operators_folder_replaces_templates_by_name(tmp_path: Path) -> None:
    (tmp_path / "virus.txt").write_text("Subject: V $signature$more_subject\n\nSaw $signature; $nothing.\n")
    templates = Templates(tmp_path)
    rendered = templates.render("virus", context(_batch(2), "h", 60))
    assert rendered.subject == "V Eicar Bcc: victim@else.test body Subject: x (and 1 more)"
    assert rendered.body == "Saw Eicar Bcc: victim@else.test body Subject: x; .\n"  # unknown: empty
    # A kind without its own template falls back to default.txt.
    failed = Event.make("signature_update_failed", "error", "freshclam failed", mirror="m")
    other = templates.render(failed.kind, context(Batch(failed.key, [failed], 1), "h", 60))
    assert other.subject == "[Edgeward h] error: freshclam failed"
    assert "mirror=m" in other.body


@pytest.mark.parametrize("text", ["no subject line\n\nbody", "Subject: ok\n\nbad $ placeholder ${x"])
def test_a_broken_template_is_refused_at_load(tmp_path: Path, text: str) -> None:
    (tmp_path / "virus.txt").write_text(text)
    with pytest.raises(ConfigError, match=r"virus\.txt"):
        Templates(tmp_path)


def test_notice_headers_cannot_be_injected() -> None:
    rendered = Templates().render("virus", context(_batch(1), "mx.example.test", 600))
    data = build_notice(rendered, "postmaster@example.test", ["admin@example.test"], "mx.example.test", 0)
    assert data.isascii()
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    names = [k.lower() for k in msg.keys()]  # noqa: SIM118 (headers in order, repeats kept)
    assert names == ["from", "to", "subject", "date", "message-id", "auto-submitted",
                     "x-auto-response-suppress", "content-type", "content-transfer-encoding",
                     "mime-version"]  # fmt: skip
    assert "bcc" not in names
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "\n" not in str(msg["Subject"]) and "Bcc: victim" in str(msg["Subject"])


def test_non_ascii_subject_is_encoded() -> None:
    batch = Batch("virus", [Event.make("virus", "warning", "x", signature="Virüs.Ölçek")], 1)
    rendered = Templates().render("virus", context(batch, "mx.example.test", 600))
    data = build_notice(rendered, "postmaster@example.test", ["admin@example.test"], "mx.example.test", 0)
    assert data.isascii() and b"=?utf-8?" in data
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert "Virüs.Ölçek" in str(msg["Subject"])


async def test_email_channel_queues_to_admins_with_a_null_sender(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "queue", fsync=False)
    woken: list[str] = []
    channel = EmailChannel(
        spool.accept, woken.append, Templates(), admins=["admin@example.test"],
        sender="postmaster@example.test", hostname="mx.example.test", interval=600,
    )  # fmt: skip
    detail = await channel.send(_batch(1, sender="someone@remote.test", action="quarantine"))
    [record] = spool.list()
    assert detail == f"queued as {record.id}" and woken == [record.id]
    assert record.mail_from == "" and [r.address for r in record.recipients] == ["admin@example.test"]
    assert record.connector == "notify"
    assert b"Subject: [Edgeward mx.example.test] Virus found" in spool.read_data(record.id)


async def test_senders_hear_nothing_by_default_and_only_of_held_mail_when_asked(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "queue", fsync=False)

    def channel(notify_senders: bool) -> EmailChannel:
        return EmailChannel(spool.accept, lambda _id: None, Templates(), admins=["admin@example.test"],
                            sender="postmaster@example.test", hostname="mx.example.test", interval=600,
                            notify_senders=notify_senders)  # fmt: skip

    held = _batch(1, sender="someone@remote.test", action="quarantine", recipients="u@example.test")
    await channel(False).send(held)
    assert _rcpts(spool) == [["admin@example.test"]]
    await channel(True).send(_batch(1, sender="rejected@remote.test", action="reject"))
    assert len(spool.list()) == 2  # a rejected message's sender is told by the sending server
    await channel(True).send(held)
    assert ["someone@remote.test"] in _rcpts(spool)


def _rcpts(spool: Spool) -> list[list[str]]:
    records: list[MessageRecord] = spool.list()
    return [[r.address for r in rec.recipients] for rec in records]
