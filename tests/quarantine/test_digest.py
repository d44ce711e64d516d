"""Digests and their release links without a gateway: grouping by local recipient, the wording
table, tokens (once, expiry, tampering, unknown entry), the schedule and the retention setting."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import time
from pathlib import Path

import pytest

from edgeward.config.load import parse_config
from edgeward.config.quarantine import effective_retention
from edgeward.quarantine.digest import build_digests, next_run, render, run_digests
from edgeward.quarantine.entry import HeldFinding, QuarantineEntry
from edgeward.quarantine.reasons import plain_reason
from edgeward.quarantine.store import QuarantineStore
from edgeward.quarantine.tokens import KEY_NAME, ReleaseTokens, TokenError
from edgeward.queue.model import MessageRecord


def entry(
    *findings: HeldFinding, rcpts: tuple[str, ...] = ("u@example.test",), **kw: object
) -> QuarantineEntry:
    names = tuple(f.name for f in findings)
    return QuarantineEntry("", "s@remote.test", rcpts, "antivirus", findings=names, details=findings, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("finding", "wording"),
    [
        (HeldFinding("AV_INFECTED", "antivirus", "engine=clamd signature=Eicar-Test-Signature path=1"),
         "contains a virus (Eicar-Test-Signature)"),
        (HeldFinding("ATTACH_BLOCKED", "attachment-filter", "FileName *.exe: setup.exe at 2"),
         "the attachment is a program"),
        (HeldFinding("ATTACH_BLOCKED", "attachment-filter", "FileName *.iso: disk.iso at 2"),
         "the attachment is a kind of file your organisation does not accept"),
        (HeldFinding("PCL_8", "content-filter", "PHISH_BANK"),
         "looks like a phishing message pretending to be your bank or another service you use"),
        (HeldFinding("PCL_1", "content-filter"), "looks like spam"),
        (HeldFinding("AV_MACRO_AUTOEXEC", "antivirus", "engine=office"),
         "the attached document contains macros that could run a program"),
    ],
)  # fmt: skip
def test_findings_get_plain_words(finding: HeldFinding, wording: str) -> None:
    assert plain_reason(entry(finding)) == wording


def test_the_most_serious_finding_speaks() -> None:
    pcl = HeldFinding("PCL_8", "content-filter")
    virus = HeldFinding("AV_INFECTED", "antivirus", "engine=clamd signature=Win.Test path=1")
    assert plain_reason(entry(pcl, virus)) == "contains a virus (Win.Test)"
    assert plain_reason(QuarantineEntry("", "", (), "transport-rules", findings=("RULE_MATCH",))).startswith(
        "a mail rule"
    )


def test_one_digest_per_local_recipient_newest_first(tmp_path: Path) -> None:
    now = time.time()
    entries = [
        entry(rcpts=("Alice@example.test", "bob@example.test"), subject="first", quarantined_at=now - 3600),
        entry(
            rcpts=("alice@example.test", "outsider@elsewhere.test"), subject="second", quarantined_at=now - 60
        ),
        entry(rcpts=("alice@example.test",), subject="too old", quarantined_at=now - 3 * 86400),
    ]
    digests = build_digests(entries, ["example.test"], since=now - 86400)
    assert [d.recipient for d in digests] == ["Alice@example.test", "bob@example.test"]
    assert [line.subject for line in digests[0].lines] == ["second", "first"]
    assert all(line.link == "" for d in digests for line in d.lines)
    msg = email.message_from_bytes(
        render(digests[1], sender="postmaster@example.test", hostname="mx.example.test", now=now),
        policy=email.policy.default,
    )
    assert msg["To"] == "bob@example.test" and msg["From"].addresses[0].addr_spec == "postmaster@example.test"
    plain = msg.get_body(("plain",))
    assert plain is not None and "ask your mail administrator" in plain.get_content()


def tokens(tmp_path: Path, now: float | None = None) -> tuple[ReleaseTokens, str]:
    store = QuarantineStore(tmp_path / "q", fsync=False)
    qid = store.put(QuarantineEntry("", "s@remote.test", ("u@example.test", "v@example.test"), "x"), b"m\r\n")
    clock = (lambda: now) if now is not None else time.time
    return ReleaseTokens(tmp_path / "state", store, now=clock), qid


def test_a_token_works_once_for_its_recipient_only(tmp_path: Path) -> None:
    t, qid = tokens(tmp_path)
    token = t.issue(qid, "u@example.test", 3600)
    assert (tmp_path / "state" / KEY_NAME).stat().st_mode & 0o777 == 0o600
    assert t.verify(token) == (qid, "u@example.test")
    with pytest.raises(TokenError) as again:
        t.verify(token)
    assert again.value.reason == "used"
    # The same key signs for a fresh instance (the web front's process), and the use is remembered.
    fresh = ReleaseTokens(tmp_path / "state", t.store)
    with pytest.raises(TokenError, match="already been used"):
        fresh.verify(token)
    assert fresh.verify(t.issue(qid, "v@example.test", 3600)) == (qid, "v@example.test")


def test_peek_checks_like_verify_and_uses_nothing_up(tmp_path: Path) -> None:
    t, qid = tokens(tmp_path)
    token = t.issue(qid, "u@example.test", 3600)
    assert t.peek(token) == t.peek(token) == (qid, "u@example.test")
    assert t.verify(token) == (qid, "u@example.test")
    with pytest.raises(TokenError) as used:
        t.peek(token)
    assert used.value.reason == "used"
    with pytest.raises(TokenError) as altered:
        t.peek(token + "x")
    assert altered.value.reason == "bad-signature"


@pytest.mark.parametrize("damage", ["payload", "mac", "form", "recipient"])
def test_a_changed_token_is_refused(tmp_path: Path, damage: str) -> None:
    t, qid = tokens(tmp_path)
    token = t.issue(qid, "u@example.test", 3600)
    payload, mac = token.split(".")
    changed = {
        "payload": payload.replace(payload[5], "A" if payload[5] != "A" else "B", 1) + "." + mac,
        "mac": payload + "." + mac[::-1],
        "form": token + ".x",
        "recipient": ReleaseTokens(tmp_path / "other", t.store).issue(qid, "u@example.test", 3600),
    }[damage]
    with pytest.raises(TokenError) as refused:
        t.verify(changed)
    assert refused.value.reason == ("malformed" if damage == "form" else "bad-signature")
    assert t.verify(token) == (qid, "u@example.test")  # the failures used nothing up


def test_expired_and_unknown_entries_are_refused(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    t, qid = tokens(tmp_path, now)
    token = t.issue(qid, "u@example.test", 14 * 86400)
    late = ReleaseTokens(tmp_path / "state", t.store, now=lambda: now + 14 * 86400)
    with pytest.raises(TokenError) as expired:
        late.verify(token)
    assert expired.value.reason == "expired"
    t.store.delete(qid)
    with pytest.raises(TokenError) as gone:
        t.verify(token)
    assert gone.value.reason == "unknown-entry"
    with pytest.raises(TokenError) as stranger:
        t.verify(t.issue("0123456789ab", "u@example.test", 60))
    assert stranger.value.reason == "unknown-entry"


def test_next_run_is_the_next_local_hour() -> None:
    base = datetime.datetime(2026, 3, 10, 6, 30).astimezone()
    at = datetime.datetime.fromtimestamp(next_run(base.timestamp(), 7)).astimezone()
    assert (at.day, at.hour, at.minute) == (10, 7, 0)
    at = datetime.datetime.fromtimestamp(next_run(base.timestamp(), 6)).astimezone()
    assert (at.day, at.hour) == (11, 6)


def test_which_retention_wins(tmp_path: Path) -> None:
    def retention(data: dict[str, object]) -> float:
        return effective_retention(parse_config(data, base=tmp_path))

    assert retention({}) == 30 * 86400
    assert retention({"agents": {"content_filter": {"quarantine_retention": "7d"}}}) == 7 * 86400
    both = {"agents": {"content_filter": {"quarantine_retention": "7d"}}, "quarantine": {"retention": "2d"}}
    assert retention(both) == 2 * 86400
    with pytest.raises(Exception, match="release_link_base"):
        parse_config({"quarantine": {"release_link_base": "javascript:alert(1)"}}, base=tmp_path)


def test_the_gateway_loop_sends_at_the_hour_and_logs_a_failure(tmp_path: Path) -> None:
    data = {
        "accepted_domains": ["example.test"], "server": {"data_dir": str(tmp_path)},
        "queue": {"fsync": False}, "quarantine": {"digest_enabled": True, "digest_hour": 7},
    }  # fmt: skip
    config = parse_config(data, base=tmp_path)
    store = QuarantineStore(tmp_path / "quarantine", fsync=False)
    store.put(QuarantineEntry("", "s@remote.test", ("u@example.test",), "x"), b"m\r\n")
    now = time.time()
    waits: list[float] = []
    queued: list[bytes] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            raise asyncio.CancelledError

    async def accept(record: MessageRecord, data: bytes) -> str:
        queued.append(data)
        if len(queued) == 2:
            raise OSError("spool full")
        return f"id{len(queued)}"

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run_digests(lambda: config, accept, lambda _id: None, clock=lambda: now, sleep=sleep))
    assert waits[0] == pytest.approx(next_run(now, 7) - now)
    assert (
        len(queued) == 2 and b"To: u@example.test" in queued[0]
    )  # the failed second day did not end the loop


@pytest.mark.parametrize("sender", ["a@b.test\r\nBcc: x@evil.test", "Name <a@b.test>", "nobody"])
def test_a_digest_sender_must_be_a_bare_address(tmp_path: Path, sender: str) -> None:
    with pytest.raises(Exception, match="digest_sender"):
        parse_config({"quarantine": {"digest_sender": sender}}, base=tmp_path)
