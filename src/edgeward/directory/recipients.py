"""The replica as the agents see it: a recipient source and per-user sender lists.

- :class:`DirectoryRecipients` is the ``RecipientSource`` of ``local-recipients`` when
  ``[agents.local_recipients] source = "directory"``. No replica yet, or one that cannot be
  read, is ``RecipientSourceError`` (451 4.3.0): not knowing is never "no such user".
- A replica older than ``[directory] max_age`` is *stale*: the alarm is logged at ERROR and
  sent as a ``directory_stale`` notice (``[notify]``), once an hour while it lasts (the end is
  logged); with ``stale_action = "tempfail"`` recipients
  get 451 4.3.0 until a sync succeeds, with ``keep`` they are answered from the old replica.
- :class:`DirectorySenderLists` answers the users' safe senders (the exemption) and blocked
  senders (``safe-senders``'s 550 5.7.1) from the replica, beside the policy store's lists;
  the replica holds them as digests, so the sender is hashed and compared (``directory.lists``).
  Safe recipients are replicated and shown, but the envelope says nothing of the To field
  they are about, so no decision uses them.
- :class:`DirectoryGroups` answers the transport rules' ``from_groups``/``to_groups`` from the
  replica's groups (nested ones included), beside the groups file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edgeward.config.directory import DirectoryConfig
from edgeward.directory.lists import listed
from edgeward.directory.replica import Entry, ReplicaReader, ReplicaState, age, normal_dn
from edgeward.filters.agents.recipient_filter import RecipientSourceError
from edgeward.filters.rules.groups import FileGroups
from edgeward.notify.events import Event, EventSink
from edgeward.types import Address

log = logging.getLogger("edgeward.directory")

STALE_LOG_INTERVAL = 3600.0


class StaleWatch:
    """Decides and reports whether the replica is too old."""

    def __init__(
        self, cfg: DirectoryConfig, notifier: EventSink | None = None, now: Callable[[], float] = time.time
    ) -> None:
        self.cfg = cfg
        self.notifier = notifier
        self.now = now
        self.stale = False
        self._logged = float("-inf")

    def check(self, state: ReplicaState) -> bool:
        """Whether ``state`` is stale (logging the alarm as it starts, lasts and ends)."""
        if self.cfg.max_age <= 0:
            return False
        current = age(state.meta, self.now())
        stale = current is None or current > self.cfg.max_age
        now = self.now()
        if stale and (not self.stale or now - self._logged >= STALE_LOG_INTERVAL):
            self._logged = now
            hours = (
                "never synchronised" if current is None else f"last synchronised {current / 3600:.1f} h ago"
            )
            effect = "recipients get 451 4.3.0" if self.cfg.stale_action == "tempfail" else "still answering"
            log.error("directory replica is stale (%s, max_age %.0f s): %s", hours, self.cfg.max_age, effect)
            if self.notifier is not None:
                summary = f"The directory replica is stale ({hours}): {effect}"
                self.notifier.emit(Event.make(
                    "directory_stale", "error", summary, max_age=f"{self.cfg.max_age:.0f} s",
                    action=self.cfg.stale_action,
                ))  # fmt: skip
        elif not stale and self.stale:
            log.warning("directory replica is fresh again")
        self.stale = stale
        return stale


class DirectoryRecipients:
    """``RecipientSource`` over the replica."""

    def __init__(self, reader: ReplicaReader, cfg: DirectoryConfig, watch: StaleWatch | None = None) -> None:
        self.reader = reader
        self.cfg = cfg
        self.watch = watch or StaleWatch(cfg)

    async def state(self) -> ReplicaState:
        state = await self.reader.current()
        if state is None:
            raise RecipientSourceError(self.reader.error or "no directory replica")
        if self.watch.check(state) and self.cfg.stale_action == "tempfail":
            raise RecipientSourceError("the directory replica is stale")
        return state

    async def exists(self, recipient: Address) -> bool:
        state = await self.state()
        return str(recipient).lower() in state.by_address


class DirectorySenderLists:
    """The users' safe and blocked senders of the replica."""

    def __init__(self, reader: ReplicaReader) -> None:
        self.reader = reader

    async def _entry(self, recipient: Address) -> Entry | None:
        state = await self.reader.current()
        if state is None:
            return None
        return state.by_address.get(str(recipient).lower())

    async def trusts(self, recipient: Address, sender: Address) -> bool:
        if sender.is_null:
            return False
        entry = await self._entry(recipient)
        return entry is not None and listed(entry.safe, sender)

    async def blocks(self, recipient: Address, sender: Address) -> bool:
        if sender.is_null:
            return False
        entry = await self._entry(recipient)
        return entry is not None and listed(entry.blocked, sender)


class DirectoryGroups:
    """``GroupSource`` of the transport rules over the replica's groups.

    A rule names a group by one of its addresses or its DN; members are the objects the group
    lists, through nested groups (each group visited once, so a cycle ends).
    """

    def __init__(self, reader: ReplicaReader) -> None:
        self.reader = reader

    async def member(self, group: str, address: Address) -> bool:
        state = await self.reader.current()
        if state is None:
            raise OSError(self.reader.error or "no directory replica")
        name = group.strip().lower()
        top = state.by_address.get(name) or state.by_dn.get(normal_dn(name))
        entry = state.by_address.get(str(address).lower())
        if top is None or top.kind != "group" or entry is None:
            return False
        wanted, seen, todo = normal_dn(entry.dn), set[str](), [top]
        while todo:
            current = todo.pop()
            if current.id in seen:
                continue
            seen.add(current.id)
            for dn in map(normal_dn, current.members):
                if dn == wanted:
                    return True
                nested = state.by_dn.get(dn)
                if nested is not None and nested.kind == "group":
                    todo.append(nested)
        return False


class AnyGroups:
    """Membership in either source (the groups file, then the replica)."""

    def __init__(self, *sources: FileGroups | DirectoryGroups) -> None:
        self.sources = sources

    async def member(self, group: str, address: Address) -> bool:
        for source in self.sources:
            if await source.member(group, address):
                return True
        return False
