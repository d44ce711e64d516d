"""The connection filter against the shipped fakes: lists with expiry, providers, RCPT refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.config.schema import Config, ConnectionFilterConfig, DnsListProvider, ReceiveConnectorConfig
from edgeward.filters.agents.connection import (
    ALLOW_LIST,
    BLOCK_LIST,
    ConnectionFilter,
    IpLists,
    parse_network,
)
from edgeward.filters.agents.dnsbl import ask_all, classify, query_name
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.exemptions import Exemptions
from edgeward.queue.spool import Spool
from edgeward.runtime_policy import build_agents
from edgeward.testing.clock import FakeClock
from edgeward.testing.dns import FakeResolver
from edgeward.testing.policystore import MemoryPolicyStore
from edgeward.types import Action, Address, Peer

ZONE = "bl.test"
BL = DnsListProvider(
    name="testbl", zone=ZONE, rejection_response="{ip} via {connector} is listed by {provider}"
)
WL = DnsListProvider(name="testwl", zone="wl.test", match="any")


def session(ip: str, sid: str = "s1") -> SessionInfo:
    return SessionInfo(sid, Peer(ip, 1234), ReceiveConnectorConfig(name="internet"))


def ctx(stage: Stage, ip: str, rcpt: str = "", sid: str = "s1") -> StageContext:
    recipient = None
    if rcpt:
        local, _, domain = rcpt.rpartition("@")
        recipient = Address(local, domain)
    return StageContext(stage, session(ip, sid), mail_from=Address("a", "sender.test"), recipient=recipient)


def agent(
    store: MemoryPolicyStore | None = None,
    dns: FakeResolver | None = None,
    clock: FakeClock | None = None,
    **cfg: object,
) -> ConnectionFilter:
    config = ConnectionFilterConfig(**cfg)  # type: ignore[arg-type]
    lists = IpLists(store, clock)
    return ConnectionFilter(config, ["example.test"], lists=lists, dns=dns)


async def run(f: ConnectionFilter, ip: str, rcpt: str, sid: str = "s1") -> tuple[list[str], Action, str]:
    """CONNECT, MAIL and one RCPT; the finding names, the RCPT action and its reply."""
    names = [x.name for x in (await f.check(Stage.CONNECT, ctx(Stage.CONNECT, ip, sid=sid))).findings]
    names += [x.name for x in (await f.check(Stage.MAIL, ctx(Stage.MAIL, ip, sid=sid))).findings]
    out = await f.check(Stage.RCPT, ctx(Stage.RCPT, ip, rcpt, sid=sid))
    names += [x.name for x in out.findings]
    return names, out.action, str(out.reply) if out.reply else ""


def test_query_names_reverse_ipv4_octets_and_ipv6_nibbles() -> None:
    assert query_name("192.0.2.1", ZONE) == "1.2.0.192.bl.test"
    assert query_name("::ffff:127.0.0.2", ZONE) == "2.0.0.127.bl.test"
    six = query_name("2001:db8::1", ZONE)
    assert six.startswith("1.0.0.0.") and six.endswith(".8.b.d.0.1.0.0.2.bl.test") and six.count(".") == 33


@pytest.mark.parametrize(
    ("provider", "answers", "status"),
    [
        (BL, ["127.0.0.2"], "listed"),
        (BL, ["127.0.0.4"], "clean"),  # an address the provider does not count as listed
        (DnsListProvider(name="b", zone=ZONE, match="any"), ["127.0.0.4"], "listed"),
        (DnsListProvider(name="b", zone=ZONE, match="bitmask", bitmask=2), ["127.0.0.3"], "listed"),
        (DnsListProvider(name="b", zone=ZONE, match="bitmask", bitmask=2), ["127.0.0.4"], "clean"),
        (DnsListProvider(name="b", zone=ZONE, match="any"), ["127.255.255.254"], "error"),
        (DnsListProvider(name="b", zone=ZONE, match="any"), ["192.0.2.7"], "error"),  # wildcarded zone
        (BL, [], "clean"),
    ],
)
def test_answers_are_classified_and_error_answers_are_never_listed(
    provider: DnsListProvider, answers: list[str], status: str
) -> None:
    assert classify(provider, answers).status == status


async def test_nxdomain_is_clean_servfail_and_timeout_are_temperrors_never_listed() -> None:
    dns = FakeResolver({("2.0.0.127.bl.test", "A"): ["127.0.0.2"]})
    dns.fail("3.0.0.127.bl.test")
    dns.time_out("4.0.0.127.bl.test")
    assert [r.status for r in await ask_all(dns, [BL], "127.0.0.2", 5)] == ["listed"]
    assert [r.status for r in await ask_all(dns, [BL], "127.0.0.9", 5)] == ["clean"]
    assert [r.status for r in await ask_all(dns, [BL], "127.0.0.3", 5)] == ["temperror"]
    assert [r.status for r in await ask_all(dns, [BL], "127.0.0.4", 5)] == ["temperror"]


async def test_providers_are_asked_at_connect_and_refuse_at_rcpt_with_their_text() -> None:
    dns = FakeResolver({("2.0.0.127.bl.test", "A"): ["127.0.0.2"]})
    f = agent(dns=dns, block_providers=[BL])
    connect = await f.check(Stage.CONNECT, ctx(Stage.CONNECT, "127.0.0.2"))
    assert connect.action is Action.CONTINUE
    names, action, reply = await run(f, "127.0.0.2", "user@example.test", sid="s2")
    assert names == ["DNSBL_LISTED", "DNSBL_LISTED"]  # reported at MAIL, and the refusal's reason
    assert action is Action.REJECT
    assert reply == "550 5.7.1 127.0.0.2 via internet is listed by testbl"
    assert ("2.0.0.127.bl.test", "A") in dns.queries


@pytest.mark.parametrize("disconnect", [True, False])
async def test_a_refusal_asks_to_close_once_the_recipients_are_done_unless_turned_off(
    disconnect: bool,
) -> None:
    dns = FakeResolver({("2.0.0.127.bl.test", "A"): ["127.0.0.2"]})
    store = MemoryPolicyStore()
    await store.list_add("ip-block", "127.0.0.3/32")
    f = agent(store, dns=dns, block_providers=[BL], disconnect=disconnect)
    for ip in ("127.0.0.2", "127.0.0.3"):  # a DNSBL listing, then the IP block list
        await f.check(Stage.CONNECT, ctx(Stage.CONNECT, ip, sid=ip))
        await f.check(Stage.MAIL, ctx(Stage.MAIL, ip, sid=ip))
        out = await f.check(Stage.RCPT, ctx(Stage.RCPT, ip, "user@example.test", sid=ip))
        # A REJECT of this recipient, never a DISCONNECT: postmaster@ may come next.
        assert out.action is Action.REJECT and out.close_after_recipients is disconnect


async def test_postmaster_and_abuse_at_accepted_domains_still_reach_a_listed_client() -> None:
    dns = FakeResolver({("2.0.0.127.bl.test", "A"): ["127.0.0.2"]})
    f = agent(dns=dns, block_providers=[BL])
    for rcpt, expected in [
        ("postmaster@example.test", Action.CONTINUE),
        ("Abuse@EXAMPLE.test", Action.CONTINUE),
        ("postmaster@elsewhere.test", Action.REJECT),
    ]:
        _, action, _ = await run(f, "127.0.0.2", rcpt)
        assert action is expected, rcpt


async def test_error_answers_and_failures_are_findings_and_the_client_is_not_refused() -> None:
    dns = FakeResolver({("2.0.0.127.bl.test", "A"): ["127.255.255.254"]})
    dns.fail("2.0.0.127.wl.test")
    f = agent(dns=dns, block_providers=[BL], allow_providers=[WL])
    names, action, _ = await run(f, "127.0.0.2", "user@example.test")
    assert sorted(names) == ["DNSBL_ERROR", "DNSBL_TEMPERROR"]
    assert action is Action.CONTINUE


async def test_a_dnswl_listing_outweighs_a_dnsbl_listing() -> None:
    dns = FakeResolver(
        {("2.0.0.127.bl.test", "A"): ["127.0.0.2"], ("2.0.0.127.wl.test", "A"): ["127.0.10.1"]}
    )
    f = agent(dns=dns, block_providers=[BL], allow_providers=[WL])
    names, action, _ = await run(f, "127.0.0.2", "user@example.test")
    assert sorted(names) == ["DNSBL_LISTED", "DNSWL_LISTED"] and action is Action.CONTINUE


async def test_the_lowest_priority_provider_names_the_refusal() -> None:
    second = DnsListProvider(name="other", zone="other.test", priority=5, rejection_response="other {ip}")
    first = DnsListProvider(name="first", zone="first.test", priority=1, rejection_response="first {ip}")
    dns = FakeResolver(
        {("2.0.0.127.other.test", "A"): ["127.0.0.2"], ("2.0.0.127.first.test", "A"): ["127.0.0.2"]}
    )
    _, _, reply = await run(agent(dns=dns, block_providers=[second, first]), "127.0.0.2", "u@example.test")
    assert reply == "550 5.7.1 first 127.0.0.2"


async def test_block_list_cidr_refuses_at_rcpt_and_expires() -> None:
    clock = FakeClock()
    store = MemoryPolicyStore(clock)
    await store.list_add(BLOCK_LIST, "192.0.2.0/24", comment="abuse report", ttl=3600)
    f = agent(store, clock=clock)
    names, action, reply = await run(f, "192.0.2.77", "user@example.test")
    assert names == ["IP_BLOCKED"] and action is Action.REJECT
    assert reply.startswith("550 5.7.1 External client with IP address 192.0.2.77 does not have permissions")
    clock.advance(3601)
    names, action, _ = await run(f, "192.0.2.77", "user@example.test", sid="s2")
    assert names == [] and action is Action.CONTINUE


async def test_ipv6_block_entries_match_and_mapped_ipv4_is_its_ipv4_address() -> None:
    store = MemoryPolicyStore()
    await store.list_add(BLOCK_LIST, str(parse_network("2001:db8:1::/48")))
    await store.list_add(BLOCK_LIST, str(parse_network("::ffff:198.51.100.9")))
    f = agent(store)
    assert (await run(f, "2001:db8:1::25", "u@example.test"))[1] is Action.REJECT
    assert (await run(f, "2001:db8:2::25", "u@example.test", sid="s2"))[1] is Action.CONTINUE
    assert (await run(f, "198.51.100.9", "u@example.test", sid="s3"))[1] is Action.REJECT


async def test_allow_list_feeds_the_exemptions_and_wins_over_the_block_list() -> None:
    clock = FakeClock()
    store = MemoryPolicyStore(clock)
    lists = IpLists(store, clock)
    exemptions = Exemptions(allow_list=lists.allowed_ip)
    await store.list_add(ALLOW_LIST, "203.0.113.0/24", ttl=60)
    await store.list_add(BLOCK_LIST, "203.0.113.5/32")
    assert exemptions.session(Peer("203.0.113.5", 1), False) == ""  # nothing read yet
    await lists.refresh()
    assert exemptions.session(Peer("203.0.113.5", 1), False) == "client on the IP allow list"
    f = ConnectionFilter(ConnectionFilterConfig(), ["example.test"], lists=lists)
    assert (await run(f, "203.0.113.5", "u@example.test"))[1] is Action.CONTINUE
    clock.advance(61)  # the snapshot has the expiry: no refresh needed for it to end
    assert exemptions.session(Peer("203.0.113.5", 1), False) == ""
    assert (await run(f, "203.0.113.5", "u@example.test", sid="s2"))[1] is Action.REJECT


async def test_the_lists_are_read_again_only_when_their_version_moves() -> None:
    class CountingStore(MemoryPolicyStore):
        def __init__(self) -> None:
            super().__init__()
            self.reads: list[str] = []

        async def list_members(self, name: str) -> list:  # type: ignore[type-arg]
            self.reads.append(name)
            return await super().list_members(name)

    store = CountingStore()
    f = agent(store)
    assert (await run(f, "192.0.2.1", "u@example.test", sid="s1"))[1] is Action.CONTINUE
    assert (await run(f, "192.0.2.1", "u@example.test", sid="s2"))[1] is Action.CONTINUE
    assert sorted(store.reads) == [ALLOW_LIST, BLOCK_LIST]  # the second connection read none
    await store.list_add(BLOCK_LIST, "192.0.2.0/24")  # as the CLI would, on the running gateway
    assert (await run(f, "192.0.2.1", "u@example.test", sid="s3"))[1] is Action.REJECT
    assert sorted(store.reads) == [ALLOW_LIST, BLOCK_LIST, BLOCK_LIST]
    assert await store.list_remove(BLOCK_LIST, "192.0.2.0/24") is True
    assert (await run(f, "192.0.2.1", "u@example.test", sid="s4"))[1] is Action.CONTINUE


async def test_a_store_outage_is_a_temperror_finding_not_a_refusal() -> None:
    class BrokenStore(MemoryPolicyStore):
        async def list_members(self, name: str) -> list:  # type: ignore[type-arg]
            from edgeward.ports import PolicyStoreError

            raise PolicyStoreError("policy store: disk I/O error")

    names, action, _ = await run(agent(BrokenStore()), "192.0.2.1", "u@example.test")
    assert names == ["IP_LIST_TEMPERROR", "IP_LIST_TEMPERROR"] and action is Action.CONTINUE


def test_rejection_text_placeholders_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown placeholder"):
        DnsListProvider(name="x", zone=ZONE, rejection_response="{ip} {sender}")
    with pytest.raises(ValueError, match="printable"):
        DnsListProvider(name="x", zone=ZONE, rejection_response="listed\r\n250 OK")
    with pytest.raises(ValueError, match="pattern"):
        DnsListProvider(name="bad\nname", zone=ZONE)
    with pytest.raises(ValueError, match="duplicate"):
        ConnectionFilterConfig(block_providers=[BL], allow_providers=[BL])


async def test_per_session_state_is_bounded() -> None:
    f = ConnectionFilter(ConnectionFilterConfig(), ["example.test"], lists=IpLists(None), max_sessions=2)
    for n in range(5):
        await f.check(Stage.CONNECT, ctx(Stage.CONNECT, "192.0.2.1", sid=f"s{n}"))
    assert len(f._sessions) == 2


def test_runtime_builds_the_agent_on_the_given_store_within_the_agent_time_limit(tmp_path: Path) -> None:
    provider = {"name": "testbl", "zone": ZONE}
    config = Config.model_validate(
        {
            "server": {"data_dir": str(tmp_path)},
            "agents": {"timeout": 10},
            "connection_filter": {"lookup_timeout": 20, "block_providers": [provider]},
        }
    )
    store = MemoryPolicyStore()
    agents = build_agents(config, Spool(tmp_path / "queue", fsync=False), policy_store=store)
    [f] = [a for a in agents if isinstance(a, ConnectionFilter)]
    assert f.lists.store is store and f.dns is not None and f.config.lookup_timeout == 5
