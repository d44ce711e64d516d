"""Slot accounting: limits per address, per network and per connector; stress; eviction."""

from __future__ import annotations

from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.server.guard import EVICTED, ReadGuard
from edgeward.server.stress import Refusal, Slot, SlotTable, network_of


def _connector(**kw: object) -> ReceiveConnectorConfig:
    return ReceiveConnectorConfig.model_validate({"name": "internet", **kw})


def _idle(
    table: SlotTable, connector: ReceiveConnectorConfig, ip: str, *, in_transaction: bool = False
) -> Slot:
    slot = table.admit(connector, ip)
    assert isinstance(slot, Slot)
    slot.guard = ReadGuard(connector)
    # As a session blocked in a read between commands would leave it.
    slot.guard.waiting = True
    slot.guard.in_transaction = in_transaction
    return slot


def test_networks_are_the_slash_24_and_the_slash_64() -> None:
    assert network_of("192.0.2.77") == "192.0.2.0/24"
    assert network_of("2001:db8:1:2:3::4") == "2001:db8:1:2::/64"


def test_limits_per_source_and_per_network() -> None:
    c = _connector(max_connections_per_source=2, max_connections_per_network=3)
    table = SlotTable()
    assert isinstance(table.admit(c, "192.0.2.1"), Slot)
    assert isinstance(table.admit(c, "192.0.2.1"), Slot)
    assert table.admit(c, "192.0.2.1") == Refusal("per source")
    assert isinstance(table.admit(c, "192.0.2.2"), Slot)
    assert table.admit(c, "192.0.2.3") == Refusal("per network")
    assert isinstance(table.admit(c, "198.51.100.1"), Slot)
    assert table.figures.refused == {"per source": 1, "per network": 1}


def test_stress_starts_at_the_threshold() -> None:
    c = _connector(max_connections=10, stress_threshold=0.5)
    table = SlotTable()
    for i in range(4):
        table.admit(c, f"192.0.2.{i}")
    assert not table.stressed(c)
    table.admit(c, "192.0.2.9")
    assert table.stressed(c)


def test_a_full_connector_evicts_the_longest_idle_holder_for_a_new_address() -> None:
    c = _connector(max_connections=4, max_connections_per_network=100)
    table = SlotTable()
    busy = _idle(table, c, "192.0.2.1", in_transaction=True)  # oldest, but sending mail
    oldest_idle = _idle(table, c, "192.0.2.1")
    newer = [_idle(table, c, "192.0.2.1") for _ in range(2)]
    table.touch(oldest_idle)  # it just read a command: now the most recently active
    newcomer = table.admit(c, "198.51.100.7")
    assert isinstance(newcomer, Slot)
    assert newer[0].released and newer[0].guard is not None and newer[0].guard.ending == EVICTED
    assert not busy.released and not oldest_idle.released and not newer[1].released
    assert table.held("internet") == 4
    assert table.figures.evicted == 1


def test_an_address_holding_its_share_cannot_push_others_out() -> None:
    c = _connector(max_connections=4, max_connections_per_network=100)
    table = SlotTable()
    for ip in ("192.0.2.1", "192.0.2.1", "198.51.100.1", "198.51.100.1"):
        _idle(table, c, ip)
    # 192.0.2.1 already holds two; taking a third from a holder of two would not be fairer.
    assert table.admit(c, "192.0.2.1") == Refusal("per connector")
    assert isinstance(table.admit(c, "203.0.113.5"), Slot)
