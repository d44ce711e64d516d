"""The quarantine service on a real store and spool in a temporary folder: entries made from a
verdict, search, show of hostile content, partial release, export, purge, encryption at rest."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from edgeward.errors import ConfigError
from edgeward.filters.verdict import Verdict
from edgeward.quarantine.crypto import KeyMismatch, load_key
from edgeward.quarantine.entry import held_entry
from edgeward.quarantine.service import QuarantineService, Search
from edgeward.quarantine.store import QuarantineEntry, QuarantineStore
from edgeward.quarantine.view import view_message
from edgeward.queue import Spool
from edgeward.types import Action, Finding

BODY = b"From: a@remote.test\r\nSubject: offer\r\nMessage-ID: <q1@remote.test>\r\n\r\nbuy now\r\n"
AV = Finding("AV_INFECTED", "antivirus", "engine=clamd signature=Eicar-Test-Signature path=2/eicar.com", 0.0)
PCL = Finding("PCL_8", "content-filter", "phishing words", 0.0)


def verdict(*findings: Finding, by: str = "agent antivirus") -> Verdict:
    return Verdict(Action.QUARANTINE, None, findings, (("X-Edgeward-SCL", "9"),), 7.5, by)


def put(
    store: QuarantineStore,
    v: Verdict,
    *,
    sender: str = "a@remote.test",
    rcpts: tuple[str, ...] = ("u@example.test",),
    subject: str = "offer",
    data: bytes = BODY,
) -> str:
    entry = held_entry(
        v,
        mail_from=sender,
        recipients=rcpts,
        subject=subject,
        message_id="<q1@remote.test>",
        client_ip="198.51.100.9",
        queue_record=None,
    )
    return store.put(entry, data)


class Tracked:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))


@pytest.fixture
def tracked() -> Tracked:
    return Tracked()


def service(tmp_path: Path, tracked: Tracked, key: bytes | None = None) -> QuarantineService:
    store = QuarantineStore(tmp_path / "q", fsync=False, key=key)
    return QuarantineService(store, lambda: Spool(tmp_path / "queue", fsync=False), tracked)


def test_an_entry_records_findings_engines_scl_pcl_and_subject(tmp_path: Path, tracked: Tracked) -> None:
    svc = service(tmp_path, tracked)
    qid = put(svc.store, verdict(AV, PCL))
    entry = svc.entry(qid)
    assert (entry.reason, entry.scl, entry.pcl, entry.total, entry.size) == (
        "antivirus",
        9,
        8,
        7.5,
        len(BODY),
    )
    assert entry.findings == ("AV_INFECTED", "PCL_8")
    assert entry.details[0].detail.startswith("engine=clamd") and entry.details[0].agent == "antivirus"
    [engine] = entry.engines
    assert (engine.engine, engine.signature, engine.part) == ("clamd", "Eicar-Test-Signature", "2/eicar.com")
    assert entry.message_id == "<q1@remote.test>" and entry.subject == "offer"


def test_an_entry_written_in_the_old_shape_still_loads(tmp_path: Path, tracked: Tracked) -> None:
    svc = service(tmp_path, tracked)
    old = {
        "qid": "18c0ffee00aa",
        "mail_from": "a@remote.test",
        "recipients": ["u@example.test"],
        "reason": "content-filter",
        "scl": 9,
        "findings": ["SCL_9"],
        "subject": "s",
        "client_ip": "",
        "size": 5,
        "quarantined_at": 1.0,
        "queue_record": None,
    }
    (tmp_path / "q" / "18c0ffee00aa.json").write_text(json.dumps(old))
    (tmp_path / "q" / "18c0ffee00aa.eml").write_bytes(b"x\r\n\r\n")
    [entry] = svc.search().entries
    assert entry.findings == ("SCL_9",) and entry.details == () and entry.pcl == -1


def test_search_by_each_criterion_and_pages(tmp_path: Path, tracked: Tracked) -> None:
    svc = service(tmp_path, tracked)
    virus = put(svc.store, verdict(AV), sender="bad@evil.test", subject="Invoice")
    phish = put(
        svc.store, verdict(PCL, by="agent content-filter"), rcpts=("v@example.test", "w@example.test")
    )
    spam = [put(svc.store, verdict(by="agent content-filter"), subject=f"spam {n}") for n in range(5)]

    def ids(**q: Any) -> list[str]:
        return [e.qid for e in svc.search(Search(**q)).entries]

    assert ids(sender="EVIL") == [virus]
    assert ids(recipient="w@") == [phish]
    assert ids(subject="invoice") == [virus]
    assert ids(finding="eicar") == ids(finding="clamd") == [virus]
    assert ids(finding="PCL_8") == [phish]
    assert set(ids(reason="content-filter")) == {phish, *spam}
    page = svc.search(Search(subject="spam", offset=1, limit=2))
    assert page.total == 5 and [e.qid for e in page.entries] == spam[::-1][1:3]
    at = svc.entry(virus).quarantined_at
    assert virus in ids(since=at, until=at + 1) and ids(until=at) == []


def test_show_escapes_hostile_headers_and_text_and_lists_files(tmp_path: Path, tracked: Tracked) -> None:
    svc = service(tmp_path, tracked)
    hostile = (
        b"From: a@remote.test\r\nSubject: =?utf-8?q?hi=0D=0ABcc:_x@evil.test?= <script>alert(1)</script>\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/html\r\n\r\n"
        b"<p onclick=x>\x1b[2Jhello</p>\r\n--B\r\n"
        b'Content-Type: application/x-msdownload; name="run\xe2\x80\xaefdp.exe"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAA=\r\n--B--\r\n"
    )
    shown = svc.show(put(svc.store, verdict(AV), data=hostile))
    subject = dict(shown.view.headers)["Subject"]
    assert "\r" not in subject and "\n" not in subject and "\\x0d\\x0aBcc: x@evil.test" in subject
    assert "<script>" in subject  # shown as text: a front escapes it for HTML like any text
    [html] = shown.view.texts
    assert html.content_type == "text/html" and "\x1b" not in html.text and "\\x1b[2Jhello" in html.text
    [attachment] = shown.view.attachments
    assert attachment.name == "run\\u202efdp.exe" and attachment.size == 20
    assert attachment.declared_type == "application/x-msdownload"


def test_show_of_broken_mime_shows_what_it_can(tmp_path: Path, tracked: Tracked) -> None:
    svc = service(tmp_path, tracked)
    broken = (
        b'Subject: broken\r\nContent-Type: multipart/mixed; boundary="\r\n\r\n--\r\n'
        b"Content-Type: text/plain; charset=nonsense\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"!!!not base64 \xff\xfe\r\n"
    )
    nested = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" * 3000 + b"Subject: deep\r\n\r\n"
    garbage = b"\xff\xfe junk header\r\n\r\n\x00garbage body \x1b[31m\r\n"
    shown = {
        name: svc.show(put(svc.store, verdict(), data=d)).view
        for name, d in (("broken", broken), ("nested", nested), ("garbage", garbage))
    }
    assert dict(shown["broken"].headers)["Subject"] == "broken"
    assert any("display bounds" in note for note in shown["nested"].notes)
    texts = [t.text for view in shown.values() for t in view.texts]
    assert "\\x00garbage body \\x1b[31m" in "".join(texts)
    assert not any(ch in text for text in texts for ch in "\x00\x1b\r")


def test_release_to_some_recipients_keeps_the_entry_for_the_others(tmp_path: Path, tracked: Tracked) -> None:
    svc = service(tmp_path, tracked)
    qid = put(svc.store, verdict(), rcpts=("v@example.test", "w@example.test"))
    first = asyncio.run(svc.release(qid, ["W@example.test"]))
    spool = Spool(tmp_path / "queue", fsync=False)
    assert [r.address for r in spool.load(first.msg_id).recipients] == ["w@example.test"]
    assert spool.read_data(first.msg_id) == BODY
    assert first.remaining == ("v@example.test",) and svc.entry(qid).recipients == ("v@example.test",)
    with pytest.raises(ValueError, match="not a recipient"):
        asyncio.run(svc.release(qid, ["w@example.test"]))
    second = asyncio.run(svc.release(qid))
    assert second.recipients == ("v@example.test",) and svc.search().total == 0
    releases = [f for e, f in tracked.events if e == "RELEASE"]
    assert [f["msg_id"] for f in releases] == [first.msg_id, second.msg_id]
    assert all(qid in f["detail"] for f in releases)


def test_export_delete_and_purge_are_tracked(tmp_path: Path, tracked: Tracked) -> None:
    svc = service(tmp_path, tracked)
    keep = put(svc.store, verdict(), subject="keep")
    doomed = [put(svc.store, verdict(AV), subject=f"virus {n}") for n in range(3)]
    assert svc.export(keep) == BODY
    seen: list[tuple[int, int]] = []
    gone = svc.purge(Search(finding="AV_INFECTED"), progress=lambda n, total: seen.append((n, total)))
    assert sorted(e.qid for e in gone) == sorted(doomed) and seen[-1] == (3, 3)
    svc.delete(keep)
    assert svc.search().total == 0
    removed = [*(e.qid for e in gone), keep]
    assert [(e, f["msg_id"]) for e, f in tracked.events] == [("REMOVE", q) for q in removed]
    with pytest.raises(KeyError):
        svc.delete(keep)


def test_purge_expired_is_retention_now(tmp_path: Path, tracked: Tracked) -> None:
    svc = service(tmp_path, tracked)
    old = svc.store.put(
        QuarantineEntry("", "a@remote.test", ("u@example.test",), "x", quarantined_at=1.0), BODY
    )
    new = put(svc.store, verdict())
    assert [e.qid for e in svc.purge_expired(86400)] == [old]
    assert [e.qid for e in svc.search().entries] == [new] and tracked.events[0][0] == "EXPIRE"
    assert svc.purge_expired(0) == []


def test_encrypted_entries_hold_no_plaintext_and_read_back(tmp_path: Path, tracked: Tracked) -> None:
    key = load_key(tmp_path / "keys" / "quarantine.key")
    assert (tmp_path / "keys" / "quarantine.key").stat().st_mode & 0o777 == 0o600
    assert load_key(tmp_path / "keys" / "quarantine.key") == key  # made once, then read
    svc = service(tmp_path, tracked, key)
    qid = put(svc.store, verdict(AV), subject="secret subject")
    for suffix in (".eml", ".json"):
        raw = (tmp_path / "q" / f"{qid}{suffix}").read_bytes()
        assert b"buy now" not in raw and b"secret subject" not in raw and b"a@remote.test" not in raw
    assert svc.export(qid) == BODY and svc.search(Search(subject="secret")).total == 1
    # An entry written before encryption was turned on still reads.
    plain = QuarantineStore(tmp_path / "q", fsync=False).put(
        QuarantineEntry("", "p@remote.test", ("u@example.test",), "x"), b"plain\r\n"
    )
    assert svc.export(plain) == b"plain\r\n"


def test_a_wrong_key_is_a_clear_error_and_moves_nothing(tmp_path: Path, tracked: Tracked) -> None:
    qid = put(QuarantineStore(tmp_path / "q", fsync=False, key=os.urandom(32)), verdict())
    wrong = service(tmp_path, tracked, os.urandom(32))
    with pytest.raises(KeyMismatch, match="another key"):
        wrong.show(qid)
    # Listings leave it out (and keep the entries the key opens); asked for by id, it is an error.
    other = put(wrong.store, verdict())
    assert [e.qid for e in wrong.search().entries] == [other]
    with pytest.raises(KeyMismatch, match="encryption_key_file is not set"):
        service(tmp_path, tracked).export(qid)
    assert (tmp_path / "q" / f"{qid}.eml").exists() and not (tmp_path / "q" / "corrupt").exists()


def test_a_damaged_sealed_file_is_set_aside_not_returned(tmp_path: Path, tracked: Tracked) -> None:
    key = os.urandom(32)
    svc = service(tmp_path, tracked, key)
    qid = put(svc.store, verdict())
    path = tmp_path / "q" / f"{qid}.eml"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(Exception, match="cannot be used"):
        svc.export(qid)
    assert (tmp_path / "q" / "corrupt" / f"{qid}.eml").exists()


def test_a_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(os.urandom(32))
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="0600"):
        load_key(path)
    path.chmod(0o600)
    path.write_bytes(b"short")
    with pytest.raises(ConfigError, match="32 bytes"):
        load_key(path)


def test_every_parser_test_message_shows_escaped_without_error() -> None:
    from tests.scanning.test_walk import _parser_test_messages

    messages = _parser_test_messages()
    assert len(messages) > 800
    for name, data in messages:
        view = view_message(data)
        shown = [v for pair in view.headers for v in pair] + [a.name for a in view.attachments]
        assert not any(ch in text for text in shown for ch in "\r\n\x00\x1b"), name
        assert not any(ch in t.text for t in view.texts for ch in "\r\x00\x1b"), name
