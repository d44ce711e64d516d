"""The attachment filter agent and the strip transform, without a gateway."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import re
import threading
from dataclasses import replace
from email.message import EmailMessage, Message
from pathlib import Path

import pytest

from edgeward.config.attachments import EXCHANGE_CONTENT_TYPES, EXCHANGE_FILE_NAMES, AttachmentsConfig
from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.config.scores import SCORE_TABLE
from edgeward.filters.agents.attachments import AttachmentFilter
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.message import MessageView
from edgeward.filters.transforms import Transforms
from edgeward.filters.transforms.base import Accepted
from edgeward.filters.transforms.strip import StripAttachments
from edgeward.filters.verdict import Verdict
from edgeward.headers import parse_headers
from edgeward.quarantine.store import QuarantineEntry, QuarantineStore, release_record
from edgeward.queue.model import MessageRecord, RecipientRecord
from edgeward.types import Action, Address, Outcome, Peer
from tests.scanning.builders import EXE, message, raw_message, zip_bytes

INFO = SessionInfo("s1", Peer("192.0.2.1", 1234), ReceiveConnectorConfig(name="internet"), helo="c.test")
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"


def check(data: bytes, cfg: AttachmentsConfig | None = None, info: SessionInfo = INFO) -> Outcome:
    agent = AttachmentFilter(cfg or AttachmentsConfig())
    ctx = StageContext(Stage.EOD, info, data=data, headers=parse_headers(data),
                       message=MessageView(data, parse_headers(data)))  # fmt: skip
    return asyncio.run(agent.check(Stage.EOD, ctx))


def names(outcome: Outcome) -> list[str]:
    return [f.name for f in outcome.findings]


def test_the_shipped_lists_are_exchanges() -> None:
    assert len(EXCHANGE_FILE_NAMES) == 60
    assert "*.exe" in EXCHANGE_FILE_NAMES and "*.ps11xml" in EXCHANGE_FILE_NAMES
    assert len(EXCHANGE_CONTENT_TYPES) == 10 and "application/x-msdownload" in EXCHANGE_CONTENT_TYPES
    assert AttachmentsConfig().action == "strip"


@pytest.mark.parametrize(
    ("attachment", "rule"),
    [
        (("setup.EXE", b"not really", "application/octet-stream"), "FileName *.exe"),
        (("script.txt", b"alert(1)", "application/x-javascript"), "ContentType application/x-javascript"),
        (("invoice.pdf", EXE, "application/pdf"), "TrueType application/"),
        (("docs.zip", zip_bytes({"inner/run.bat": b"echo"}), "application/zip"), "FileName *.bat"),
    ],
)
def test_blocked_by_name_declared_type_true_type_and_inside_archives(
    attachment: tuple[str, bytes, str], rule: str
) -> None:
    outcome = check(message(attachment))
    assert outcome.action is Action.CONTINUE  # strip: the transform acts once it is accepted
    blocked = [f.detail for f in outcome.findings if f.name == "ATTACH_BLOCKED"]
    assert blocked and blocked[0].startswith(rule), blocked
    assert outcome.headers and outcome.headers[0][0] == "X-Edgeward-Attachments"


def test_a_clean_message_passes_without_findings() -> None:
    outcome = check(message(("report.pdf", PDF, "application/pdf")))
    assert outcome == Outcome()


def test_reject_mode_names_the_rule_and_the_file() -> None:
    tool = message(("tool.exe", EXE, "application/octet-stream"))
    outcome = check(tool, AttachmentsConfig(action="reject"))
    assert outcome.action is Action.REJECT and outcome.reply is not None
    assert str(outcome.reply) == (
        "550 5.7.1 Message rejected due to unacceptable attachments (FileName *.exe: tool.exe)"
    )


def test_silent_delete_discards() -> None:
    tool = message(("tool.exe", EXE, "application/octet-stream"))
    outcome = check(tool, AttachmentsConfig(action="silent_delete"))
    assert outcome.action is Action.DISCARD and "ATTACH_BLOCKED" in names(outcome)


def test_a_cut_walk_is_refused_never_passed() -> None:
    deep = ("From: a@sender.test\n" + "Content-Type: message/rfc822\n\n" * 50 + "x\n").encode()
    outcome = check(deep)
    assert outcome.action is Action.REJECT and outcome.reply is not None and outcome.reply.code == 554
    assert "MIME_TOO_DEEP" in names(outcome)
    later = check(deep, AttachmentsConfig(incomplete_action="tempfail"))
    assert later.action is Action.TEMPFAIL and later.reply is not None and later.reply.code == 451


def test_signed_message_with_a_blocked_attachment_is_quarantined_not_stripped() -> None:
    data = raw_message(
        'MIME-Version: 1.0\nContent-Type: multipart/signed; protocol="application/pgp-signature";'
        " boundary=S\n",
        "--S\nContent-Type: application/octet-stream; name=a.exe\n\nxx\n"
        "--S\nContent-Type: application/pgp-signature\n\nsig\n--S--\n",
    )  # fmt: skip
    assert check(data).action is Action.QUARANTINE
    assert check(data, AttachmentsConfig(signed_action="reject")).action is Action.REJECT


def test_exception_connectors_are_not_filtered() -> None:
    data = message(("tool.exe", EXE, "application/octet-stream"))
    assert check(data, AttachmentsConfig(exception_connectors=("internet",))) == Outcome()


def test_encrypted_archives_follow_encrypted_action() -> None:
    streams = "EncryptionInfo".encode("utf-16-le") + b"\0" * 16 + "EncryptedPackage".encode("utf-16-le")
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + streams
    data = message(("salary.xlsx", ole, "application/octet-stream"))
    assert check(data).action is Action.CONTINUE and "ARCHIVE_ENCRYPTED" in names(check(data))
    assert check(data, AttachmentsConfig(encrypted_action="reject")).action is Action.REJECT
    assert check(data, AttachmentsConfig(encrypted_action="quarantine")).action is Action.QUARANTINE


# -- stripping ------------------------------------------------------------------------------


def _accepted(data: bytes, cfg: AttachmentsConfig | None = None) -> Accepted:
    outcome = check(data, cfg)
    verdict = Verdict(Action.CONTINUE, None, outcome.findings, outcome.headers, 0.0, "no threshold (total 0)")
    return Accepted("01ID", INFO, "mx.test", (Address("bob", "example.test"),), verdict,
                    mail_from=Address("alice", "sender.test"))  # fmt: skip


def _parts(data: bytes) -> list[Message]:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    return [p for p in parsed.walk() if not p.is_multipart()]


def test_strip_replaces_only_the_blocked_part_and_quarantines_the_original(tmp_path: Path) -> None:
    data = message(("report.pdf", PDF, "application/pdf"), ("tool.exe", EXE, "application/octet-stream"),
                   ("notes.txt", b"keep these notes", "text/plain"))  # fmt: skip
    store = QuarantineStore(tmp_path / "q", fsync=False)
    stripped = StripAttachments(AttachmentsConfig(), lambda: store).apply(data, _accepted(data))
    parts = _parts(stripped)
    types = [p.get_content_type() for p in parts]
    assert types == ["text/plain", "application/pdf", "text/plain", "text/plain"]
    assert parts[1].get_content() == PDF and parts[3].get_content() == "keep these notes"
    replacement = parts[2]
    assert replacement.get_filename() == "removed-attachment.txt"
    assert "Removed: tool.exe (FileName *.exe)" in replacement.get_content()
    assert EXE not in stripped and base64.b64encode(EXE[:30]) not in stripped
    [entry] = store.list()
    kept_entry, kept = store.get(entry.qid)
    assert kept == data and kept_entry.mail_from == "alice@sender.test"
    assert kept_entry.recipients == ("bob@example.test",) and "ATTACH_BLOCKED" in kept_entry.findings


def test_strip_of_an_archive_member_takes_the_archive_and_of_a_root_body_keeps_the_header() -> None:
    data = message(("docs.zip", zip_bytes({"run.exe": EXE}), "application/zip"))
    stripped = StripAttachments(AttachmentsConfig()).apply(data, _accepted(data))
    assert [p.get_content_type() for p in _parts(stripped)] == ["text/plain", "text/plain"]
    single = EmailMessage()
    single["From"], single["To"], single["Subject"] = "a@sender.test", "b@example.test", "just a program"
    single.set_content(EXE, maintype="application", subtype="x-msdownload", filename="x.exe")
    raw = single.as_bytes().replace(b"\n", b"\r\n")
    out = StripAttachments(AttachmentsConfig()).apply(raw, _accepted(raw))
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    assert parsed["Subject"] == "just a program" and parsed.get_content_type() == "text/plain"
    assert "Removed: x.exe" in parsed.get_content()  # type: ignore[attr-defined]


def test_strip_changes_nothing_in_observe_only_or_for_quarantined_mail() -> None:
    data = message(("tool.exe", EXE, "application/octet-stream"))
    accepted = _accepted(data)
    assert StripAttachments(AttachmentsConfig(), observe_only=True).apply(data, accepted) == data
    quarantined = Verdict(Action.QUARANTINE, None, accepted.verdict.findings, (), 0.0, "agent x")
    held = Accepted(accepted.msg_id, INFO, "mx.test", accepted.recipients, quarantined)
    assert StripAttachments(AttachmentsConfig()).apply(data, held) == data


def test_every_finding_the_walk_and_the_agent_emit_is_in_the_score_table() -> None:
    package = Path(__file__).resolve().parents[2] / "src" / "edgeward"
    sources = ("scanning/walk.py", "scanning/archives.py", "filters/agents/attachments.py")
    quoted = re.compile(r'"((?:MIME|ARCHIVE|ATTACH)_[A-Z_]+)"')
    emitted = {n for path in sources for n in quoted.findall((package / path).read_text())}
    assert {"ATTACH_BLOCKED", "ARCHIVE_BOMB", "MIME_TOO_DEEP"} <= emitted
    assert emitted <= set(SCORE_TABLE)


def test_a_blocked_part_beside_a_forwarded_signed_message_is_still_stripped() -> None:
    signed = (
        "From: c@sender.test\nSubject: signed\nMIME-Version: 1.0\n"
        'Content-Type: multipart/signed; protocol="application/pgp-signature"; boundary=S\n\n'
        "--S\nContent-Type: text/plain\n\nsigned words\n--S\nContent-Type: application/pgp-signature\n\n"
        "sig\n--S--\n"
    )
    data = raw_message(
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B\n",
        f"--B\nContent-Type: message/rfc822\n\n{signed}\n--B\n"
        "Content-Type: application/octet-stream; name=tool.exe\n\nMZ\n--B--\n",
    )  # fmt: skip
    accepted = _accepted(data)
    assert accepted.verdict.action is Action.CONTINUE
    stripped = StripAttachments(AttachmentsConfig()).apply(data, accepted)
    assert b"tool.exe" not in stripped.split(b"Removed:")[0] and b"signed words" in stripped
    assert "Removed: tool.exe (FileName *.exe)" in _parts(stripped)[-1].get_content()


def test_a_rejection_names_a_non_ascii_file_in_ascii() -> None:
    data = message(("счёт.exe", EXE, "application/octet-stream"))
    outcome = check(data, AttachmentsConfig(action="reject"))
    assert outcome.reply is not None and outcome.reply.text.isascii()
    assert outcome.reply.text.endswith("(FileName *.exe: \\u0441\\u0447\\u0451\\u0442.exe)")


class _ThreadNotingStore(QuarantineStore):
    """The real store, noting the thread each write ran on."""

    threads: list[int]

    def put(self, entry: QuarantineEntry, data: bytes) -> str:
        self.threads.append(threading.get_ident())
        return super().put(entry, data)


def test_the_session_path_quarantines_off_the_loop_with_the_queue_record(tmp_path: Path) -> None:
    data = message(("tool.exe", EXE, "application/octet-stream"))
    store = _ThreadNotingStore(tmp_path / "q", fsync=False)
    store.threads = []
    bob = RecipientRecord("bob@example.test", notify=("FAILURE",), orcpt="rfc822;bob@example.test")
    record = MessageRecord(
        "01ID", "alice@sender.test", (bob,), 0.0, len(data), client_ip="192.0.2.1", connector="internet",
        envid="e1", ret="FULL",
    )  # fmt: skip
    accepted = replace(_accepted(data), record=record)
    chain = Transforms([StripAttachments(AttachmentsConfig(), lambda: store)])
    stripped = asyncio.run(chain.accepted_async(data, accepted))
    assert stripped == StripAttachments(AttachmentsConfig()).apply(data, accepted) and EXE not in stripped
    assert len(store.threads) == 1 and store.threads[0] != threading.get_ident()
    [entry] = store.list()
    kept_entry, kept = store.get(entry.qid)
    released = release_record(kept_entry, kept, msg_id="02NEW", now=1.0)
    assert (released.connector, released.envid, released.ret) == ("internet", "e1", "FULL")
    assert released.recipients == record.recipients and released.id == "02NEW"
