"""Connection slots: who holds them, the limits, stress, and eviction of idle slot holders.

Each connection holds one slot of its connector, counted three ways: per connector
(``max_connections``), per client address (``max_connections_per_source``) and per client
network, the /24 of an IPv4 address or the /64 of an IPv6 one (``max_connections_per_network``),
since one attacker rarely has one address but usually has one network.

Stress (after Postfix's STRESS_README): a connector holding ``stress_threshold`` of its
``max_connections`` is under stress. Its sessions then wait at most ``stress_idle_timeout`` for
the client, and sessions that start under stress are allowed ``stress_max_protocol_errors``
bad commands (the guard and the listener apply these).

Eviction: a connector that is full does not simply refuse. It looks, longest idle first, for
a session that is waiting for a command and has not started a transaction, whose address
holds more slots than the newcomer's would (``victim > newcomer + 1``), closes it with
``421 4.7.0`` and gives its slot to the newcomer. So a client from a new address gets in past
a crowd of idle connections, while an address that already holds its share cannot push
others out. Only the oldest ``EVICTION_SCAN`` entries are looked at, which keeps an accept
O(1) however full the connector is.

With several receiving processes the counts the limits and stress compare are the gateway's
totals (``shared``: ``server/shared_slots.py``); this table still keeps its own process's slots,
which are the ones it can evict.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol

from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.metrics import count_connection
from edgeward.server.guard import EVICTED, ReadGuard
from edgeward.server.shared_slots import SharedSlots, TableFull

EVICTION_SCAN = 64


def stress_point(connector: ReceiveConnectorConfig) -> float:
    """Sessions on ``connector`` from which it is under stress."""
    return connector.stress_threshold * connector.max_connections


def network_of(ip: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) holding ``ip``."""
    prefix = 24 if ":" not in ip else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@dataclass(eq=False, slots=True)
class Slot:
    """One session's place on a connector; its guard asks it about stress and idleness."""

    connector: str
    source: str
    network: str
    guard: ReadGuard | None = None
    released: bool = False
    table: SlotTable | None = None
    stress_at: float = 0.0  # sessions on the connector from which it is under stress

    def stressed(self) -> bool:
        return self.table is not None and self.table.held(self.connector) >= self.stress_at

    def touch(self) -> None:
        if self.table is not None:
            self.table.touch(self)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connection got no slot: ``limit`` names the limit that was reached."""

    limit: str


@dataclass
class SlotFigures:
    admitted: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # by limit
    evicted: int = 0


class SlotTable:
    """The slots of every connector of one listener."""

    def __init__(self, shared: SharedSlots | None = None) -> None:
        self.shared = shared
        self._per_connector: Counter[str] = Counter()
        self._per_source: Counter[tuple[str, str]] = Counter()
        self._per_network: Counter[tuple[str, str]] = Counter()
        # Per connector, slots by the time their session last started waiting (oldest first).
        self._idle: dict[str, OrderedDict[Slot, None]] = {}
        self.figures = SlotFigures()

    def held(self, connector: str) -> int:
        if self.shared is not None:
            return self.shared.count(_keys(connector, "", "")[0])
        return self._per_connector[connector]

    def stressed(self, connector: ReceiveConnectorConfig) -> bool:
        return self.held(connector.name) >= stress_point(connector)

    def admit(self, connector: ReceiveConnectorConfig, ip: str) -> Slot | Refusal:
        """A slot for a client at ``ip``, evicting an idle holder if the connector is full."""
        if self.shared is None:
            return self._admit(connector, ip, self._per_connector, self._per_source, self._per_network)
        try:
            with self.shared.locked():
                return self._admit(connector, ip, *_SharedCounts.views(self.shared))
        except TableFull:
            return self._refuse("per connector")

    def _admit(
        self,
        connector: ReceiveConnectorConfig,
        ip: str,
        per_connector: _Counts,
        per_source: _Counts,
        per_network: _Counts,
    ) -> Slot | Refusal:
        name = connector.name
        slot = Slot(
            name, ip, network_of(ip), table=self,
            stress_at=stress_point(connector),
        )  # fmt: skip
        if per_source[(name, ip)] >= connector.max_connections_per_source:
            return self._refuse("per source")
        if per_network[(name, slot.network)] >= connector.max_connections_per_network:
            return self._refuse("per network")
        if per_connector[name] >= connector.max_connections:
            victim = self._victim(name, per_source[(name, ip)], per_source)
            if victim is None:
                return self._refuse("per connector")
            assert victim.guard is not None
            victim.guard.interrupt(EVICTED)
            self.release(victim)
            self.figures.evicted += 1
            count_connection(name, "evicted")
        self._per_connector[name] += 1
        self._per_source[(name, ip)] += 1
        self._per_network[(name, slot.network)] += 1
        if self.shared is not None:
            for key in _keys(name, ip, slot.network):
                self.shared.add(key, 1)
        self._idle.setdefault(name, OrderedDict())[slot] = None
        self.figures.admitted += 1
        return slot

    def _refuse(self, limit: str) -> Refusal:
        self.figures.refused[limit] += 1
        return Refusal(limit)

    def _victim(self, name: str, newcomer_holds: int, per_source: _Counts) -> Slot | None:
        for slot in islice(self._idle.get(name, OrderedDict()), EVICTION_SCAN):
            guard = slot.guard
            if guard is None or not guard.waiting or guard.in_transaction or guard.ending is not None:
                continue
            if per_source[(name, slot.source)] > newcomer_holds + 1:
                return slot
        return None

    def touch(self, slot: Slot) -> None:
        """The slot's session starts waiting for its client: it is now the most recently idle."""
        idle = self._idle.get(slot.connector)
        if idle is not None and slot in idle:
            idle.move_to_end(slot)

    def release(self, slot: Slot) -> None:
        if slot.released:
            return
        slot.released = True
        name = slot.connector
        self._idle.get(name, OrderedDict()).pop(slot, None)
        _drop(self._per_connector, name)
        _drop(self._per_source, (name, slot.source))
        _drop(self._per_network, (name, slot.network))
        if self.shared is not None:
            with self.shared.locked():
                for key in _keys(name, slot.source, slot.network):
                    self.shared.add(key, -1)

    def guards(self) -> list[ReadGuard]:
        return [s.guard for idle in self._idle.values() for s in idle if s.guard is not None]


class _Counts(Protocol):
    def __getitem__(self, key: Any, /) -> int: ...


def _keys(connector: str, source: str, network: str) -> tuple[str, str, str]:
    """The shared table's keys of a connector's total, a source's and a network's slots."""
    return f"c\0{connector}", f"s\0{connector}\0{source}", f"n\0{connector}\0{network}"


class _SharedCounts:
    """The shared totals read like the table's own counters (keyed the same way)."""

    def __init__(self, shared: SharedSlots, kind: int) -> None:
        self._shared = shared
        self._kind = kind

    @classmethod
    def views(cls, shared: SharedSlots) -> tuple[_SharedCounts, _SharedCounts, _SharedCounts]:
        return cls(shared, 0), cls(shared, 1), cls(shared, 2)

    def __getitem__(self, key: Any) -> int:
        if self._kind == 0:
            return self._shared.count(_keys(key, "", "")[0])
        name, value = key
        keys = _keys(name, value, value)
        return self._shared.count(keys[self._kind])


def _drop(counter: Counter[Any], key: object) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
