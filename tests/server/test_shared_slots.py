"""Slots and held bytes counted across receiving processes: two views of one table stand for two
processes (each opens its own description, as each process does)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.server.budget import ByteBudget
from edgeward.server.shared_slots import SharedSlots
from edgeward.server.stress import Refusal, Slot, SlotTable


@pytest.fixture
def views() -> Iterator[tuple[SharedSlots, SharedSlots]]:
    first, fd = SharedSlots.create(2, 1000)
    second = SharedSlots(fd, 2, 1)
    yield first, second
    first.close()
    second.close()
    os.close(fd)


def _connector(**limits: int) -> ReceiveConnectorConfig:
    return ReceiveConnectorConfig(name="internet", bindings=("127.0.0.1:2525",), **limits)


def test_the_per_source_limit_counts_both_processes(views: tuple[SharedSlots, SharedSlots]) -> None:
    a, b = SlotTable(views[0]), SlotTable(views[1])
    c = _connector(max_connections_per_source=3)
    held = [a.admit(c, "192.0.2.1"), b.admit(c, "192.0.2.1"), b.admit(c, "192.0.2.1")]
    assert all(isinstance(s, Slot) for s in held)
    assert a.admit(c, "192.0.2.1") == Refusal("per source")
    assert b.admit(c, "192.0.2.1") == Refusal("per source")
    assert isinstance(a.admit(c, "192.0.2.2"), Slot)  # another address is not counted with it
    first = held[1]
    assert isinstance(first, Slot)
    b.release(first)
    assert isinstance(a.admit(c, "192.0.2.1"), Slot)


def test_the_network_and_connector_limits_and_stress_count_both(
    views: tuple[SharedSlots, SharedSlots],
) -> None:
    a, b = SlotTable(views[0]), SlotTable(views[1])
    c = _connector(max_connections=4, max_connections_per_network=3)
    assert isinstance(a.admit(c, "198.51.100.1"), Slot) and isinstance(b.admit(c, "198.51.100.2"), Slot)
    assert isinstance(b.admit(c, "198.51.100.3"), Slot)
    assert a.admit(c, "198.51.100.4") == Refusal("per network")
    assert isinstance(a.admit(c, "203.0.113.1"), Slot)
    assert a.held("internet") == b.held("internet") == 4
    assert a.stressed(c) and b.stressed(c)
    assert b.admit(c, "203.0.113.2") == Refusal("per connector")  # nothing idle to evict here


def test_a_dead_process_column_is_cleared(views: tuple[SharedSlots, SharedSlots]) -> None:
    a, b = SlotTable(views[0]), SlotTable(views[1])
    c = _connector(max_connections_per_source=2)
    assert isinstance(b.admit(c, "192.0.2.9"), Slot) and isinstance(b.admit(c, "192.0.2.9"), Slot)
    budget = ByteBudget(1000, views[1])
    assert budget.reserve(900) is not None
    assert a.admit(c, "192.0.2.9") == Refusal("per source")
    views[0].clear(1)  # what the supervisor does before starting the replacement
    assert isinstance(a.admit(c, "192.0.2.9"), Slot)
    assert ByteBudget(1000, views[0]).reserve(900) is not None


def test_the_byte_budget_is_the_gateways(views: tuple[SharedSlots, SharedSlots]) -> None:
    a, b = ByteBudget(1000, views[0]), ByteBudget(1000, views[1])
    held = a.reserve(600)
    assert held is not None and b.in_use == 600
    assert b.reserve(500) is None and b.refused == 1
    other = b.reserve(400)
    assert other is not None
    other.cover(500)  # grows past what is left: the message is refused at its end
    assert other.exceeded and a.in_use == 1000
    held.release()
    other.release()
    assert a.in_use == b.in_use == 0


def test_counts_are_exact_and_the_table_makes_room_for_new_keys(
    views: tuple[SharedSlots, SharedSlots],
) -> None:
    a, b = SlotTable(views[0]), SlotTable(views[1])
    c = _connector(max_connections=100_000, max_connections_per_source=1, max_connections_per_network=100_000)
    capacity = views[0].capacity
    held = [a.admit(c, f"10.0.{i // 250}.{i % 250 + 1}") for i in range(capacity // 10)]
    assert all(isinstance(s, Slot) for s in held)  # one slot each: no address counted with another
    # Many more short connections than the table holds keys: released keys make room again.
    for i in range(capacity):
        slot = b.admit(c, f"10.{100 + i // 60000}.{i // 250 % 240}.{i % 250 + 1}")
        assert isinstance(slot, Slot)
        b.release(slot)
    assert a.held("internet") == len(held)
    for i in range(0, len(held), 97):
        assert b.admit(c, f"10.0.{i // 250}.{i % 250 + 1}") == Refusal("per source")
