"""The global budget of message bytes held in memory by the receiving process.

A message up to the inline budget (``smtp.data.SPILL_ABOVE``, 512 KiB) is held whole in memory
while it is read, checked and spooled; a larger one is written to a spool file as it arrives and
memory holds only that much of it. Each transaction reserves, at MAIL, the size the client
declared (RFC 1870 SIZE) or else the connector's ``max_message_size``, capped at the inline
budget; during DATA/BDAT the reservation follows the bytes actually received when they pass it
(a client may send less than it declared), up to the same cap. The reservation is given
back when the transaction ends, whichever way.

Decisions: a MAIL that does not fit gets ``452 4.3.1`` (RFC 3463: mail system full), so the
client retries later; bytes that outgrow the budget during DATA are still read (the core bounds
them by the message size) and the message then gets ``452 4.3.1`` instead of ``250``. Nothing
is dropped after ``250`` and nothing crashes. The count is of message bytes, once; the
process's peak memory is about three times the budget (read buffer, the message, its stamped
copy on its way to the spool).

With several receiving processes the budget is the gateway's: ``shared`` holds every process's
bytes (``server/shared_slots.py``), and a reservation fits when the total does.
"""

from __future__ import annotations

import contextlib

from edgeward.server.shared_slots import SharedSlots
from edgeward.types import Reply

BUDGET_FULL = Reply(452, "4.3.1", "Insufficient system storage, try again later")


class ByteBudget:
    """Bytes reserved by open transactions, against ``limit`` (0: no cap)."""

    def __init__(self, limit: int, shared: SharedSlots | None = None) -> None:
        self.limit = limit
        self.held = 0  # by this process
        self.refused = 0  # reservations refused, for the figures
        self.shared = shared

    @property
    def in_use(self) -> int:
        """Bytes held, by every receiving process when the budget is shared."""
        return self.shared.held_bytes() if self.shared is not None else self.held

    def reserve(self, size: int) -> Reservation | None:
        """A reservation of ``size`` bytes, or None when it does not fit."""
        with self._locked():
            if not self._fits(size):
                self.refused += 1
                return None
            self._add(size)
        return Reservation(self, size)

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return self.shared.locked() if self.shared is not None else contextlib.nullcontext()

    def _add(self, delta: int) -> None:
        self.held += delta
        if self.shared is not None:
            self.shared.add_bytes(delta)

    def _fits(self, extra: int) -> bool:
        return self.limit <= 0 or self.in_use + extra <= self.limit


class Reservation:
    """One transaction's share of the budget."""

    __slots__ = ("_budget", "exceeded", "size")

    def __init__(self, budget: ByteBudget, size: int) -> None:
        self._budget = budget
        self.size = size
        self.exceeded = False  # the message outgrew what the budget could give it

    def cover(self, total: int) -> None:
        """The message has ``total`` bytes so far: grow the reservation to hold them."""
        extra = total - self.size
        if extra <= 0 or self.exceeded:
            return
        with self._budget._locked():
            if self._budget._fits(extra):
                self._budget._add(extra)
                self.size = total
            else:
                self.exceeded = True
                self._budget.refused += 1

    def release(self) -> None:
        with self._budget._locked():
            self._budget._add(-self.size)
        self.size = 0
