"""An administrator's queue actions with their tracking: show, hold, release, retry, remove.

The web console's queue viewer calls this; it makes the very spool calls ``edgeward queue``
makes (``Spool.load``/``hold``/``release``/``retry``/``remove``, ``queue.actions``) and writes
the same tracking events to ``tracking-admin.log`` (``logs.adminlog``), with the actor named in
the detail: ``by NAME (web console)`` or ``by API token NAME``. A retry is tracked too (RETRY):
from a console several people share, "who made this due" is worth a line.

Errors keep the spool's meaning, so a front can map them without knowing the spool:
``KeyError`` for an id that is not in the queue (or is no id at all), :class:`WrongState` for
an action the message's state forbids (hold while being delivered, release of a message that
is not held, retry of one that is not deferred).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgeward.config.schema import Config
from edgeward.errors import QueueError
from edgeward.logs.adminlog import track_record
from edgeward.queue.model import MessageRecord, QueueState
from edgeward.queue.spool import Spool

__all__ = ["ACTIONS", "MAX_HEADER_BYTES", "QueueAdmin", "Queued", "WrongState", "allowed", "header_lines"]

ACTIONS = ("retry", "hold", "release", "remove")
MAX_HEADER_BYTES = 64 * 1024  # what 'queue show' reads: a header block larger than this is cut


class WrongState(QueueError):
    """The message exists but its state does not allow the action."""


@dataclass(frozen=True, slots=True)
class Queued:
    """One queued message as ``queue show`` shows it: the record and its header lines."""

    record: MessageRecord
    headers: tuple[str, ...]


def header_lines(spool: Spool, msg_id: str) -> tuple[str, ...]:
    """The message's header lines (the first ``MAX_HEADER_BYTES``), folded lines kept as they are;
    empty when the data is gone (a corrupt entry)."""
    try:
        with spool.open_data(msg_id) as fh:
            head = fh.read(MAX_HEADER_BYTES)
    except KeyError:
        return ()
    end = head.find(b"\r\n\r\n")
    block = head if end < 0 else head[:end]
    return tuple(block.decode("utf-8", "replace").split("\r\n")) if block else ()


class QueueAdmin:
    def __init__(self, spool: Callable[[], Spool], config: Config | None) -> None:
        self._spool = spool
        self._config = config

    def show(self, msg_id: str) -> Queued:
        spool = self._spool()
        record = spool.load(msg_id)
        return Queued(record, header_lines(spool, msg_id))

    def hold(self, msg_id: str, *, by: str, reason: str = "admin") -> MessageRecord:
        record = self._act("hold", msg_id, reason=reason)
        track_record(self._config, "HOLD", record, detail=f"by {by}: {reason}")
        return record

    def release(self, msg_id: str, *, by: str) -> MessageRecord:
        record = self._act("release", msg_id)
        track_record(self._config, "RELEASE", record, detail=f"by {by}")
        return record

    def remove(self, msg_id: str, *, by: str) -> MessageRecord:
        record = self._act("remove", msg_id)
        track_record(self._config, "REMOVE", record, detail=f"by {by}, no report")
        return record

    def retry(self, msg_id: str, *, by: str) -> MessageRecord:
        spool = self._spool()
        before = spool.load(msg_id)
        if spool.retry(msg_id) == 0:
            raise WrongState(f"message {msg_id} is {spool.load(msg_id).state.value}, not deferred")
        track_record(self._config, "RETRY", before, detail=f"by {by}")
        return self._after(spool, msg_id, before)

    def act(self, action: str, msg_id: str, *, by: str) -> MessageRecord:
        """One of :data:`ACTIONS` by name (``ValueError`` for another name)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        method: Callable[..., MessageRecord] = getattr(self, action)
        return method(msg_id, by=by)

    def _act(self, action: str, msg_id: str, **kw: str) -> MessageRecord:
        """``Spool.<action>``, and the record as it is afterwards (or was, if removed)."""
        spool = self._spool()
        before = spool.load(msg_id)
        if action == "hold" and before.state is QueueState.HOLD:
            # The spool would hold it again; twice is a mistake (the reason is set at the first).
            raise WrongState(f"message {msg_id} is held already ({before.hold_reason})")
        try:
            result = getattr(spool, action)(msg_id, **kw)
        except QueueError as exc:
            raise WrongState(str(exc)) from None
        if isinstance(result, MessageRecord):
            return result
        return self._after(spool, msg_id, before)

    @staticmethod
    def _after(spool: Spool, msg_id: str, before: MessageRecord) -> MessageRecord:
        try:
            return spool.load(msg_id)
        except KeyError:
            return before  # delivered or moved on by the running gateway meanwhile


def allowed(record: MessageRecord) -> tuple[str, ...]:
    """The actions that make sense for a message in its present state: the pages' buttons. The
    spool has the last word (a message may move on between looking and acting)."""
    state = record.state
    out: list[str] = []
    if state is QueueState.DEFERRED:
        out.append("retry")
    if state in (QueueState.INCOMING, QueueState.DEFERRED):
        out.append("hold")
    if state in (QueueState.HOLD, QueueState.CORRUPT):
        out.append("release")
    if state is not QueueState.ACTIVE:
        out.append("remove")
    return tuple(out)
