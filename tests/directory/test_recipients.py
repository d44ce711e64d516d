"""The replica read by the agents: local-recipients, the stale alarm, users' sender lists."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from edgeward.config.directory import DirectoryConfig, audit_directory
from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.directory import replica as replica_mod
from edgeward.directory.lists import hashed
from edgeward.directory.recipients import (
    AnyGroups,
    DirectoryGroups,
    DirectoryRecipients,
    DirectorySenderLists,
    StaleWatch,
)
from edgeward.directory.replica import (
    Entry,
    Meta,
    ReplicaReader,
    ReplicaState,
    normal_dn,
    read_replica,
    write_replica,
)
from edgeward.filters.agents.recipient_filter import LocalRecipients
from edgeward.filters.agents.safe_senders import RecipientBlockedSenders
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.rules.groups import FileGroups
from edgeward.notify.events import Event
from edgeward.notify.limiter import Batch
from edgeward.notify.templates import Templates, context
from edgeward.types import Action, Address, Peer

INJECTIONS = ("*)(uid=*", "*", "\x00", "x)(|(mail=*", "%", "_")


@pytest.fixture(autouse=True)
def _no_recheck_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica_mod, "_RECHECK", 0.0)


def _addr(text: str) -> Address:
    local, _, domain = text.rpartition("@")
    return Address(local, domain)


def _rcpt(rcpt: str, sender: str = "someone@remote.test") -> StageContext:
    info = SessionInfo("S1", Peer("192.0.2.7", 2525), ReceiveConnectorConfig(name="internet"))
    return StageContext(Stage.RCPT, info, mail_from=_addr(sender), recipient=_addr(rcpt))


def _state(*entries: Entry, synced: float | None = None) -> ReplicaState:
    when = time.time() if synced is None else synced
    return ReplicaState(
        {e.id: e for e in entries}, frozenset({"example.org"}), Meta(last_full=when, marker="1")
    )


ALICE = Entry(
    "1",
    "uid=alice,dc=example,dc=org",
    "user",
    ("alice@example.org", "a@example.org"),
    safe=hashed("friend@partner.net", "@trusted.example"),
    blocked=hashed("@spam.example"),
)


def _agent(path: Path, **cfg: object) -> LocalRecipients:
    source = DirectoryRecipients(ReplicaReader(path), DirectoryConfig.model_validate(cfg))
    return LocalRecipients(["example.org"], source)


async def test_known_unknown_and_outside_recipients(tmp_path: Path) -> None:
    path = tmp_path / "directory.db"
    write_replica(path, _state(ALICE))
    agent = _agent(path)
    assert (await agent.check(Stage.RCPT, _rcpt("Alice@Example.org"))).action is Action.CONTINUE
    assert (await agent.check(Stage.RCPT, _rcpt("a@example.org"))).action is Action.CONTINUE
    refused = await agent.check(Stage.RCPT, _rcpt("bob@example.org"))
    assert refused.action is Action.REJECT and str(refused.reply).startswith("550 5.1.1")
    assert (await agent.check(Stage.RCPT, _rcpt("bob@elsewhere.test"))).action is Action.CONTINUE


@pytest.mark.parametrize("local", INJECTIONS)
async def test_injection_strings_are_unknown_recipients(tmp_path: Path, local: str) -> None:
    path = tmp_path / "directory.db"
    write_replica(path, _state(ALICE))
    outcome = await _agent(path).check(Stage.RCPT, _rcpt(f"{local}@example.org"))
    assert outcome.action is Action.REJECT and str(outcome.reply).startswith("550 5.1.1")


async def test_no_replica_is_a_tempfail_never_unknown(tmp_path: Path) -> None:
    outcome = await _agent(tmp_path / "directory.db").check(Stage.RCPT, _rcpt("alice@example.org"))
    assert outcome.action is Action.TEMPFAIL and str(outcome.reply).startswith("451 4.3.0")


async def test_a_new_replica_file_is_picked_up_and_a_broken_one_keeps_the_last(tmp_path: Path) -> None:
    path = tmp_path / "directory.db"
    write_replica(path, _state(ALICE))
    agent = _agent(path)
    assert (await agent.check(Stage.RCPT, _rcpt("bob@example.org"))).action is Action.REJECT
    write_replica(path, _state(ALICE, Entry("2", "uid=bob", "user", ("bob@example.org",))))
    assert (await agent.check(Stage.RCPT, _rcpt("bob@example.org"))).action is Action.CONTINUE
    broken = tmp_path / "broken"
    broken.write_bytes(b"not a database" * 100)
    os.replace(broken, path)
    assert (await agent.check(Stage.RCPT, _rcpt("bob@example.org"))).action is Action.CONTINUE


async def test_stale_replica_keeps_or_tempfails(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "directory.db"
    write_replica(path, _state(ALICE, synced=time.time() - 7200))
    with caplog.at_level(logging.ERROR, "edgeward.directory"):
        kept = await _agent(path, max_age=3600).check(Stage.RCPT, _rcpt("alice@example.org"))
    assert kept.action is Action.CONTINUE
    assert "stale" in caplog.text
    failed = await _agent(path, max_age=3600, stale_action="tempfail").check(
        Stage.RCPT, _rcpt("alice@example.org")
    )
    assert failed.action is Action.TEMPFAIL and str(failed.reply).startswith("451 4.3.0")
    write_replica(path, _state(ALICE))
    fresh = await _agent(path, max_age=3600, stale_action="tempfail").check(
        Stage.RCPT, _rcpt("alice@example.org")
    )
    assert fresh.action is Action.CONTINUE


async def test_users_safe_and_blocked_senders(tmp_path: Path) -> None:
    path = tmp_path / "directory.db"
    write_replica(path, _state(ALICE))
    lists = DirectorySenderLists(ReplicaReader(path))
    alice = _addr("alice@example.org")
    assert await lists.trusts(alice, _addr("Friend@Partner.net"))
    assert await lists.trusts(alice, _addr("anyone@trusted.example"))
    assert not await lists.trusts(alice, _addr("anyone@sub.trusted.example"))
    assert not await lists.trusts(alice, Address.null())
    agent = RecipientBlockedSenders(None, lists)
    refused = await agent.check(Stage.RCPT, _rcpt("alice@example.org", "x@spam.example"))
    assert refused.action is Action.REJECT and str(refused.reply).startswith("550 5.7.1")
    assert (
        await agent.check(Stage.RCPT, _rcpt("alice@example.org", "x@ok.example"))
    ).action is Action.CONTINUE


def test_replica_round_trip(tmp_path: Path) -> None:
    group = Entry("g", "cn=staff,dc=example,dc=org", "group", ("staff@example.org",), "5", (ALICE.dn,))
    path = tmp_path / "directory.db"
    write_replica(path, _state(ALICE, group))
    state = read_replica(path)
    assert state.entries == {"1": ALICE, "g": group}
    assert state.groups_of(state.by_address["alice@example.org"]) == [group]
    assert state.counts() == {"users": 1, "contacts": 0, "groups": 1, "addresses": 3, "domains": 1}


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


def test_stale_alarm_is_a_notice_once_an_hour(tmp_path: Path) -> None:
    now = [time.time()]
    sink = Recorder()
    cfg = DirectoryConfig(max_age=3600)
    watch = StaleWatch(cfg, sink, now=lambda: now[0])
    state = _state(ALICE, synced=now[0] - 7200)
    assert watch.check(state) and watch.check(state)
    now[0] += 3601
    assert watch.check(state)
    assert [e.kind for e in sink.events] == ["directory_stale", "directory_stale"]
    assert not watch.check(_state(ALICE, synced=now[0]))
    batch = Batch("directory_stale")
    batch.add(sink.events[0])
    rendered = Templates().render("directory_stale", context(batch, "mx.example.org", 600))
    assert rendered.subject.startswith("[Edgeward mx.example.org] The directory replica is stale")
    assert "3600 s" in rendered.body and '"keep"' in rendered.body


async def test_groups_for_rules_by_address_or_dn_with_nesting(tmp_path: Path) -> None:
    bob = Entry("2", "uid=bob,dc=example,dc=org", "user", ("bob@example.org",))
    inner = Entry("g1", "cn=inner,dc=example,dc=org", "group", ("inner@example.org",), members=(bob.dn,))
    outer = Entry(
        "g2",
        "cn=outer,dc=example,dc=org",
        "group",
        ("outer@example.org",),
        members=(ALICE.dn.upper(), inner.dn),
    )
    # A cycle must end: inner lists outer back.
    inner = Entry("g1", inner.dn, "group", inner.addresses, members=(bob.dn, outer.dn))
    path = tmp_path / "directory.db"
    groups = DirectoryGroups(ReplicaReader(path))
    with pytest.raises(OSError):
        await groups.member("outer@example.org", _addr("bob@example.org"))
    write_replica(path, _state(ALICE, bob, inner, outer))
    assert await groups.member("outer@example.org", _addr("Bob@Example.org"))
    assert await groups.member("cn=outer,dc=example,dc=org", _addr("a@example.org"))
    # Through the cycle (inner -> outer -> alice), and the walk ends.
    assert await groups.member("inner@example.org", _addr("alice@example.org"))
    assert not await groups.member("alice@example.org", _addr("alice@example.org"))  # not a group
    assert not await groups.member("outer@example.org", _addr("stranger@example.org"))
    both = AnyGroups(FileGroups([("partners", "@partner.net")]), groups)
    assert await both.member("partners", _addr("x@partner.net"))
    assert await both.member("outer@example.org", _addr("bob@example.org"))


def test_config_check_warns_about_weakened_directory_settings(tmp_path: Path) -> None:
    pw = tmp_path / "bind.pw"
    pw.write_text("secret")
    pw.chmod(0o644)
    cfg = DirectoryConfig(
        urls=("ldaps://dc.example.org",),
        password_file=pw,
        push_listen="0.0.0.0:50636",
        max_age=0,
        max_delete_share=1.0,
    )
    texts = audit_directory(cfg, lambda p: p)
    assert len(texts) == 4
    assert "readable by others" in texts[0] and "no directory credentials" in texts[1]
    assert audit_directory(DirectoryConfig(), lambda p: p) == []


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ("uid=Alice, ou=People ,DC=example,dc=org", "uid=alice,ou=people,dc=example,dc=org"),
        (r"cn=Smith\2C John,dc=x", r"cn=smith\, john,dc=x"),
        (r"cn=Smith\, John;dc=x", r"cn=smith\, john,dc=x"),
        (r"cn=Ren\C3\A9,dc=x", "cn=rené,dc=x"),
        (r"cn=a\+b\3Dc,dc=x", r"cn=a\+b\=c,dc=x"),
    ],
)
def test_dns_meet_whatever_way_they_were_written(written: str, kept: str) -> None:
    assert normal_dn(written) == kept


async def test_group_members_written_another_way_still_match(tmp_path: Path) -> None:
    staff = Entry(
        "g",
        "cn=staff,dc=example,dc=org",
        "group",
        ("staff@example.org",),
        members=("UID=alice, DC=Example, DC=org",),
    )
    path = tmp_path / "directory.db"
    write_replica(path, _state(ALICE, staff))
    assert await DirectoryGroups(ReplicaReader(path)).member(
        "CN=Staff, DC=example,DC=org", _addr("a@example.org")
    )
    assert read_replica(path).groups_of(ALICE) == [staff]
