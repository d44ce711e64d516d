"""Sender filtering, recipient filtering, rate limits and safe senders against the shipped fakes
(``MemoryPolicyStore``, ``FakeClock``): what each list matches, what each limit counts, and what a
store fault does (451 for a list lookup, a finding and no limit for a counter, "not safe" for a
safe-sender lookup)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.config.schema import RateLimitsConfig, ReceiveConnectorConfig, SenderFilterConfig
from edgeward.errors import ConfigError
from edgeward.filters.agents.rate_limits import RateLimits
from edgeward.filters.agents.recipient_filter import (
    RECIPIENT_BLOCK_LIST,
    FileRecipients,
    LocalRecipients,
    RecipientFilter,
    RecipientSourceError,
)
from edgeward.filters.agents.safe_senders import (
    BLOCKED_LIST,
    SAFE_LIST,
    RecipientBlockedSenders,
    StoreSafeSenders,
    pair,
)
from edgeward.filters.agents.sender_filter import SENDER_BLOCK_LIST, SenderFilter, sender_entry
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.exemptions import Exemptions
from edgeward.testing.clock import FakeClock
from edgeward.testing.policystore import MemoryPolicyStore
from edgeward.types import Action, Address, Outcome, Peer


def _info(ip: str = "192.0.2.7", user: str = "") -> SessionInfo:
    return SessionInfo("S1", Peer(ip, 2525), ReceiveConnectorConfig(name="internet"), authenticated=user)


def _addr(text: str) -> Address:
    local, _, domain = text.rpartition("@")
    return Address(local, domain)


def _mail(sender: str, **kw: str) -> StageContext:
    return StageContext(Stage.MAIL, _info(**kw), mail_from=_addr(sender) if sender else Address.null())


def _rcpt(sender: str, rcpt: str, **kw: str) -> StageContext:
    return StageContext(Stage.RCPT, _info(**kw), mail_from=_addr(sender), recipient=_addr(rcpt))


def _said(outcome: Outcome) -> str:
    return str(outcome.reply) if outcome.reply else outcome.action.value


# -- sender filtering --------------------------------------------------------------------------


async def test_blocked_sender_domain_and_domain_with_subdomains() -> None:
    agent = SenderFilter(
        SenderFilterConfig(
            blocked_senders=("Spammer@Remote.test",),
            blocked_domains=("exact.test",),
            blocked_domains_and_subdomains=("tree.test",),
        )
    )
    refused = await agent.check(Stage.MAIL, _mail("spammer@remote.test"))
    # Exchange's Reject closes the connection after the 554: DISCONNECT with that reply.
    assert refused.action is Action.DISCONNECT and _said(refused).startswith("554 5.1.0 Sender denied")
    assert [f.name for f in refused.findings] == ["SENDER_BLOCKED"]
    assert (await agent.check(Stage.MAIL, _mail("a@exact.test"))).action is Action.DISCONNECT
    # Exchange's BlockedDomains is exact: a subdomain passes; BlockedDomainsAndSubdomains covers both.
    assert (await agent.check(Stage.MAIL, _mail("a@sales.exact.test"))).action is Action.CONTINUE
    assert (await agent.check(Stage.MAIL, _mail("a@tree.test"))).action is Action.DISCONNECT
    assert (await agent.check(Stage.MAIL, _mail("a@deep.sales.tree.test"))).action is Action.DISCONNECT
    assert (await agent.check(Stage.MAIL, _mail("a@nottree.test"))).action is Action.CONTINUE
    assert (await agent.check(Stage.MAIL, _mail("other@remote.test"))).action is Action.CONTINUE


async def test_with_disconnect_off_a_blocked_sender_is_refused_and_the_session_stays() -> None:
    agent = SenderFilter(SenderFilterConfig(blocked_senders=("s@remote.test",), disconnect=False))
    refused = await agent.check(Stage.MAIL, _mail("s@remote.test"))
    assert refused.action is Action.REJECT and _said(refused).startswith("554 5.1.0 Sender denied")
    stamp = SenderFilter(SenderFilterConfig(blocked_senders=("s@remote.test",), action="stamp"))
    # disconnect (on by default) belongs to reject: a stamped sender is never closed on.
    assert (await stamp.check(Stage.MAIL, _mail("s@remote.test"))).action is Action.CONTINUE


async def test_the_blank_sender_passes_unless_blocking_it_is_on() -> None:
    assert (await SenderFilter(SenderFilterConfig()).check(Stage.MAIL, _mail(""))).action is Action.CONTINUE
    strict = SenderFilter(SenderFilterConfig(block_blank_sender=True))
    refused = await strict.check(Stage.MAIL, _mail(""))
    assert refused.action is Action.DISCONNECT and [f.name for f in refused.findings] == ["SENDER_BLANK"]


async def test_stamp_reports_the_finding_and_lets_the_sender_on() -> None:
    agent = SenderFilter(SenderFilterConfig(blocked_senders=("s@remote.test",), action="stamp"))
    stamped = await agent.check(Stage.MAIL, _mail("s@remote.test"))
    assert stamped.action is Action.CONTINUE and [f.name for f in stamped.findings] == ["SENDER_BLOCKED"]


async def test_the_live_list_applies_without_a_restart_and_a_broken_store_is_451() -> None:
    clock = FakeClock()
    store = MemoryPolicyStore(clock)
    agent = SenderFilter(SenderFilterConfig(), store)
    assert (await agent.check(Stage.MAIL, _mail("a@b.spam.test"))).action is Action.CONTINUE
    await store.list_add(SENDER_BLOCK_LIST, sender_entry("*.spam.test"), ttl=60)
    assert (await agent.check(Stage.MAIL, _mail("a@b.spam.test"))).action is Action.DISCONNECT
    clock.advance(60)  # the entry expired
    assert (await agent.check(Stage.MAIL, _mail("a@b.spam.test"))).action is Action.CONTINUE
    store.break_down()
    failed = await agent.check(Stage.MAIL, _mail("a@b.spam.test"))
    assert _said(failed).startswith("451 4.3.0") and failed.findings[0].name == "POLICY_STORE_TEMPERROR"


@pytest.mark.parametrize("bad", ["nodomain", "@", "*.", "a@b@c", "@*.x.test", "a b@x.test"])
def test_a_sender_entry_that_could_never_match_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        sender_entry(bad)
    with pytest.raises(ConfigError, match=r"agents\.sender_filter"):
        SenderFilter(SenderFilterConfig(blocked_senders=(bad,)))


# -- recipient filtering -----------------------------------------------------------------------


async def test_blocked_recipients_from_the_configuration_and_the_store() -> None:
    store = MemoryPolicyStore()
    agent = RecipientFilter(("old@example.test",), store)
    refused = await agent.check(Stage.RCPT, _rcpt("s@remote.test", "OLD@example.test"))
    assert _said(refused).startswith("550 5.1.1 User unknown") and refused.findings[0].name == "RCPT_BLOCKED"
    await store.list_add(RECIPIENT_BLOCK_LIST, "gone@example.test")
    assert (
        await agent.check(Stage.RCPT, _rcpt("s@remote.test", "gone@example.test"))
    ).action is Action.REJECT
    assert (
        await agent.check(Stage.RCPT, _rcpt("s@remote.test", "user@example.test"))
    ).action is Action.CONTINUE


class DownSource:
    async def exists(self, recipient: Address) -> bool:
        raise RecipientSourceError("directory replica not synchronised")


async def test_validation_only_for_accepted_domains_and_an_unanswering_source_is_451(tmp_path: Path) -> None:
    (tmp_path / "r.txt").write_text("User@example.test  # a comment\n@whole.example.test\n")
    agent = LocalRecipients(("example.test", "whole.example.test"), FileRecipients.read(tmp_path / "r.txt"))
    assert (await agent.check(Stage.RCPT, _rcpt("s@r.test", "user@example.test"))).action is Action.CONTINUE
    assert (
        await agent.check(Stage.RCPT, _rcpt("s@r.test", "any@whole.example.test"))
    ).action is Action.CONTINUE
    unknown = await agent.check(Stage.RCPT, _rcpt("s@r.test", "nobody@example.test"))
    assert _said(unknown).startswith("550 5.1.1") and unknown.findings[0].name == "RCPT_UNKNOWN"
    assert (await agent.check(Stage.RCPT, _rcpt("s@r.test", "x@elsewhere.test"))).action is Action.CONTINUE
    down = LocalRecipients(("example.test",), DownSource())
    failed = await down.check(Stage.RCPT, _rcpt("s@r.test", "user@example.test"))
    assert _said(failed).startswith("451 4.3.0") and failed.findings[0].name == "RCPT_LOOKUP_TEMPERROR"


# -- rate limits -------------------------------------------------------------------------------


async def test_messages_per_ip_in_a_one_minute_window() -> None:
    clock = FakeClock()
    agent = RateLimits(RateLimitsConfig(messages_per_ip=2), MemoryPolicyStore(clock))
    for _ in range(2):
        assert (await agent.check(Stage.MAIL, _mail("a@remote.test"))).action is Action.CONTINUE
    over = await agent.check(Stage.MAIL, _mail("b@other.test"))
    assert over.action is Action.TEMPFAIL
    assert _said(over).startswith("450 4.7.1 Rate limit exceeded: 2 messages per minute per ip 192.0.2.7")
    assert over.findings[0].name == "RATE_LIMIT_EXCEEDED"
    assert (await agent.check(Stage.MAIL, _mail("a@remote.test", ip="192.0.2.8"))).action is Action.CONTINUE
    clock.advance(60)
    assert (await agent.check(Stage.MAIL, _mail("a@remote.test"))).action is Action.CONTINUE


async def test_per_user_and_per_sender_domain_limits_and_recipients() -> None:
    agent = RateLimits(
        RateLimitsConfig(messages_per_user=1, recipients_per_sender_domain=2), MemoryPolicyStore(FakeClock())
    )
    assert (await agent.check(Stage.MAIL, _mail("a@r.test", user="Ann"))).action is Action.CONTINUE
    over = await agent.check(Stage.MAIL, _mail("a@r.test", ip="198.51.100.1", user="ann"))
    assert "1 messages per minute per user ann" in _said(over)
    assert (await agent.check(Stage.MAIL, _mail("a@r.test"))).action is Action.CONTINUE  # anonymous
    for n in range(2):
        assert (
            await agent.check(Stage.RCPT, _rcpt("a@r.test", f"u{n}@example.test"))
        ).action is Action.CONTINUE
    over = await agent.check(Stage.RCPT, _rcpt("b@R.test", "u9@example.test"))
    assert _said(over).startswith(
        "450 4.7.1 Rate limit exceeded: 2 recipients per minute per sender-domain r.test"
    )


async def test_connections_over_the_limit_are_closed_with_421_and_a_broken_store_does_not_limit() -> None:
    store = MemoryPolicyStore(FakeClock())
    agent = RateLimits(RateLimitsConfig(connections_per_ip=1), store)
    ctx = StageContext(Stage.CONNECT, _info())
    assert (await agent.check(Stage.CONNECT, ctx)).action is Action.CONTINUE
    over = await agent.check(Stage.CONNECT, ctx)
    assert over.action is Action.DISCONNECT and _said(over).startswith("421 4.7.1 Rate limit exceeded")
    store.break_down()
    failed = await agent.check(Stage.CONNECT, ctx)
    assert failed.action is Action.CONTINUE and failed.findings[0].name == "RATE_TEMPERROR"


async def test_limits_that_are_off_count_nothing() -> None:
    store = MemoryPolicyStore()
    agent = RateLimits(RateLimitsConfig(), store)
    assert (await agent.check(Stage.MAIL, _mail("a@r.test"))).action is Action.CONTINUE
    assert await store.scan("rate:") == []


# -- safe and blocked senders per recipient ----------------------------------------------------


async def test_a_safe_sender_exempts_that_recipient_only_and_the_message_only_when_all_are() -> None:
    store = MemoryPolicyStore()
    await store.list_add(SAFE_LIST, pair("User@example.test", "friend@remote.test"))
    await store.list_add(SAFE_LIST, pair("ops@example.test", "@Partner.test"))
    ex = Exemptions(safe_senders=StoreSafeSenders(store))
    friend, user, other = _addr("friend@remote.test"), _addr("user@example.test"), _addr("x@example.test")
    assert await ex.recipient(friend, user) == "safe sender of the recipient"
    assert await ex.recipient(friend, other) == ""
    assert await ex.recipient(_addr("bob@partner.test"), _addr("ops@example.test")) != ""
    assert await ex.recipient(_addr("bob@sub.partner.test"), _addr("ops@example.test")) == ""
    assert await ex.message("", friend, [user]) == "every recipient exempt"
    assert await ex.message("", friend, [user, other]) == ""
    store.break_down()  # not knowing is filtering as usual
    assert await ex.recipient(friend, user) == ""


async def test_a_recipients_blocked_sender_refuses_that_recipient_with_550_5_7_1() -> None:
    store = MemoryPolicyStore()
    await store.list_add(BLOCKED_LIST, pair("user@example.test", "@pest.test"))
    agent = RecipientBlockedSenders(store)
    refused = await agent.check(Stage.RCPT, _rcpt("ann@pest.test", "user@example.test"))
    assert (
        _said(refused).startswith("550 5.7.1") and refused.findings[0].name == "SENDER_BLOCKED_BY_RECIPIENT"
    )
    assert (await agent.check(Stage.RCPT, _rcpt("ann@pest.test", "x@example.test"))).action is Action.CONTINUE
    store.break_down()
    assert _said(await agent.check(Stage.RCPT, _rcpt("ann@pest.test", "user@example.test"))).startswith("451")


@pytest.mark.parametrize(
    ("rcpt", "sender"), [("nobody", "a@b.test"), ("u@x.test", "nodomain"), ("u@x.test", "@")]
)
def test_a_pair_that_could_never_match_is_refused(rcpt: str, sender: str) -> None:
    with pytest.raises(ValueError):
        pair(rcpt, sender)
