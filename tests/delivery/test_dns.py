"""DnsResolver and MX targets against a real authoritative server (nsd) with a test zone."""

from __future__ import annotations

import random

import pytest

from edgeward.config.schema import SendConnectorConfig
from edgeward.delivery.mx import route_failure, targets
from edgeward.delivery.routing import Route
from edgeward.net.dns import DnsResolver, NullMxError
from edgeward.ports import MxHost, ResolverError

from .conftest import Nameserver, free_port


def resolver(ns: Nameserver, seed: int = 0) -> DnsResolver:
    return DnsResolver(["127.0.0.1"], port=ns.port, timeout=2.0, rng=random.Random(seed))


async def test_mx_sorted_by_preference(nameserver: Nameserver) -> None:
    hosts = await resolver(nameserver).mx("multi.test")
    assert [h.preference for h in hosts] == [10, 10, 20]
    assert {h.host for h in hosts[:2]} == {"mx1.test", "mx3.test"}
    assert hosts[2] == MxHost(20, "mx2.test")


async def test_equal_preference_order_is_randomised(nameserver: Nameserver) -> None:
    orders = {tuple(h.host for h in await resolver(nameserver, seed).mx("multi.test")) for seed in range(20)}
    assert orders == {("mx1.test", "mx3.test", "mx2.test"), ("mx3.test", "mx1.test", "mx2.test")}


async def test_implicit_mx_when_only_an_address(nameserver: Nameserver) -> None:
    assert list(await resolver(nameserver).mx("implicit.test")) == [MxHost(0, "implicit.test")]


async def test_null_mx_is_permanent(nameserver: Nameserver) -> None:
    with pytest.raises(NullMxError) as info:
        await resolver(nameserver).mx("nullmx.test")
    assert info.value.permanent
    reply = route_failure("nullmx.test", info.value).reply
    assert reply is not None and (reply.code, reply.enhanced) == (556, "5.1.10")


async def test_nxdomain_is_permanent(nameserver: Nameserver) -> None:
    with pytest.raises(ResolverError) as info:
        await resolver(nameserver).mx("nonexistent.test")
    assert info.value.permanent
    reply = route_failure("nonexistent.test", info.value).reply
    assert reply is not None and (reply.code, reply.enhanced) == (550, "5.1.2")


async def test_no_mx_and_no_address_is_permanent(nameserver: Nameserver) -> None:
    with pytest.raises(ResolverError) as info:
        await resolver(nameserver).mx("noaddr.test")
    assert info.value.permanent


async def test_refused_zone_is_transient(nameserver: Nameserver) -> None:
    # nsd answers REFUSED for a zone it does not serve: a server failure, to be retried.
    with pytest.raises(ResolverError) as info:
        await resolver(nameserver).mx("example.invalid")
    assert not info.value.permanent
    reply = route_failure("example.invalid", info.value).reply
    assert reply is not None and (reply.code, reply.enhanced) == (451, "4.4.3")


async def test_unreachable_server_is_transient() -> None:
    dead = DnsResolver(["127.0.0.1"], port=free_port(), timeout=0.5)
    with pytest.raises(ResolverError) as info:
        await dead.mx("example.test")
    assert not info.value.permanent


async def test_addresses_v4_then_v6_and_literals(nameserver: Nameserver) -> None:
    r = resolver(nameserver)
    assert list(await r.addresses("mx1.test")) == ["127.0.0.1"]
    assert list(await r.addresses("mx3.test")) == ["::1"]
    assert list(await r.addresses("[::1]")) == ["::1"]
    with pytest.raises(ResolverError) as info:
        await r.addresses("nowhere.test")
    assert info.value.permanent


async def test_txt(nameserver: Nameserver) -> None:
    assert list(await resolver(nameserver).txt("noaddr.test")) == ["v=spf1 -all"]


async def test_targets_for_dns_route_use_the_connector_port(nameserver: Nameserver) -> None:
    connector = SendConnectorConfig(name="internet", address_spaces=("*",), dns_routing=True, port=2525)  # type: ignore[arg-type]
    got = await targets(Route(connector, "multi.test"), resolver(nameserver))
    assert [t.port for t in got] == [2525, 2525, 2525]
    assert got[-1].host == "mx2.test" and all(t.from_dns for t in got)
