"""Routing table: most specific address space, then cost, then configuration order."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.config.schema import SendConnectorConfig
from edgeward.delivery.routing import Router, normalize_domain


def smart(name: str, *spaces: str, hosts: tuple[str, ...] = ("relay.example:25",)) -> SendConnectorConfig:
    return SendConnectorConfig(name=name, address_spaces=spaces, smart_hosts=hosts)  # type: ignore[arg-type]


def dns(name: str, *spaces: str) -> SendConnectorConfig:
    return SendConnectorConfig(name=name, address_spaces=spaces, dns_routing=True)  # type: ignore[arg-type]


def test_exact_beats_wildcard_beats_star_whatever_the_cost() -> None:
    router = Router(
        [dns("internet", "*;1"), smart("parent", "*.example.org;50"), smart("exact", "mail.example.org;100")],
        [],
    )
    assert router.route("mail.example.org").connector.name == "exact"  # type: ignore[union-attr]
    assert router.route("other.example.org").connector.name == "parent"  # type: ignore[union-attr]
    assert router.route("example.org").connector.name == "parent"  # type: ignore[union-attr]
    assert router.route("example.com").connector.name == "internet"  # type: ignore[union-attr]


def test_longer_wildcard_parent_wins() -> None:
    router = Router([smart("short", "*.org"), smart("long", "*.example.org")], [])
    assert router.route("a.b.example.org").connector.name == "long"  # type: ignore[union-attr]
    assert router.route("a.other.org").connector.name == "short"  # type: ignore[union-attr]


def test_lowest_cost_then_config_order() -> None:
    router = Router([smart("a", "*;10"), smart("b", "*;5"), smart("c", "*;5")], [])
    assert router.route("x.test").connector.name == "b"  # type: ignore[union-attr]
    router = Router([smart("first", "*;5"), smart("second", "*;5")], [])
    assert router.route("x.test").connector.name == "first"  # type: ignore[union-attr]


def test_best_space_of_one_connector_counts() -> None:
    router = Router([smart("multi", "*;1", "example.net;90"), smart("other", "*.example.net;1")], [])
    assert router.route("example.net").connector.name == "multi"  # type: ignore[union-attr]


def test_no_match_is_unreachable() -> None:
    router = Router([smart("only", "example.org")], [])
    assert router.route("example.com") is None
    assert router.route("sub.example.org") is None
    assert router.route("") is None


def test_case_and_trailing_dot_and_idna() -> None:
    router = Router([smart("idn", "bücher.example"), dns("rest", "*")], [])
    route = router.route("BÜCHER.Example.")
    assert route is not None and route.connector.name == "idn"
    assert router.route("xn--bcher-kva.example").connector.name == "idn"  # type: ignore[union-attr]
    assert normalize_domain("Example.ORG.") == "example.org"


def test_next_hop_names_the_delivery_queue(tmp_path: Path) -> None:
    drop = SendConnectorConfig(name="drop", address_spaces=("drop.test",), drop_dir=tmp_path)  # type: ignore[arg-type]
    router = Router([dns("internet", "*"), smart("relay", "corp.test", hosts=("a:25", "b:2525")), drop], [])
    assert router.route("Example.COM").next_hop == "example.com"  # type: ignore[union-attr]
    assert router.route("corp.test").next_hop == "relay[a:25,b:2525]"  # type: ignore[union-attr]
    assert router.route("drop.test").next_hop == f"drop:{tmp_path}"  # type: ignore[union-attr]
    assert router.route("corp.test").kind == "smarthost"  # type: ignore[union-attr]


def test_accepted_domain_not_routed_back_to_its_own_mx_by_catch_all() -> None:
    router = Router([dns("internet", "*")], ["example.org"])
    assert router.route("example.org") is None
    assert router.route("example.com") is not None
    explicit = Router([dns("internet", "*"), smart("inside", "example.org")], ["example.org"])
    assert explicit.route("example.org").connector.name == "inside"  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["a..b", "-"])
def test_garbage_domain_does_not_crash(bad: str) -> None:
    router = Router([smart("only", "example.org")], [])
    assert router.route(bad) is None
