"""Where a message goes once the policy has spoken: refused, dropped, the quarantine or the queue.

Both write the message durably before the client hears ``250``: the spool with its group
commit, the quarantine store in a worker thread. Either failing answers ``451 4.3.0`` (a full or
read-only spool ``452 4.3.1``), so the
client keeps the message and tries again; nothing is acknowledged that is not on disk. Every
outcome, refusals included, is written to the message tracking log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from edgeward.errors import QueueError
from edgeward.filters.base import SessionInfo
from edgeward.filters.policy import StageDecision
from edgeward.filters.verdict import Verdict
from edgeward.headers import HeaderBlock, sanitize
from edgeward.message_file import MessageFile, size_of
from edgeward.quarantine.entry import QuarantineEntry, held_entry
from edgeward.queue.model import record_to_dict
from edgeward.server.receipt import Transaction, queue_record
from edgeward.types import Action, Address, Reply

if TYPE_CHECKING:
    from edgeward.quarantine.store import QuarantineStore
    from edgeward.server.session import SessionEnv

log = logging.getLogger("edgeward.session")

SERVICE_ERROR = Reply(451, "4.3.0", "Local error in processing, message not accepted")


def track(
    env: SessionEnv, event: str, msg_id: str, tx: Transaction, info: SessionInfo, size: int, **extra: Any
) -> None:
    """One tracking line about this transaction."""
    env.tracking.event(
        event, msg_id=msg_id, sender=str(tx.mail_from), recipients=[str(r) for r in tx.rcpts],
        client_ip=info.peer.ip, connector=info.connector.name, size=size, **extra,
    )  # fmt: skip


def track_refusal(
    env: SessionEnv,
    info: SessionInfo,
    stage: str,
    reply: Reply,
    sender: Address | None,
    recipients: Iterable[Address] = (),
    msg_id: str = "",
    *,
    decision: StageDecision | None = None,
) -> Reply:
    """A REJECT line when ``reply`` refuses something at ``stage``; returns ``reply`` unchanged.

    Every refusal is tracked, whoever made it (an agent, the session's own TLS, AUTH and domain
    security rules, the core's limits), so ``edgeward track`` explains a sender's bounce without
    the protocol log. A refusal by an agent carries the session's findings so far and the agent.
    """
    if reply.code >= 400:
        findings = decision.findings if decision is not None else ()
        decided_by = decision.decided_by if decision is not None else "session"
        # A refusal at CONNECT always ends the session; later, closing is the agent's choice and
        # explains why the client sent nothing more (the transcript and `track why` say so).
        closed = decision is not None and decision.disconnect and stage != "CONNECT"
        env.tracking.event(
            "REJECT", msg_id=msg_id, sender=str(sender) if sender is not None else "",
            recipients=[str(r) for r in recipients], client_ip=info.peer.ip, connector=info.connector.name,
            reply=str(reply), detail=f"at {stage}" + (", connection closed" if closed else ""),
            findings=findings, decided_by=decided_by,
        )  # fmt: skip
    return reply


async def dispose(
    env: SessionEnv,
    verdict: Verdict,
    msg_id: str,
    tx: Transaction,
    data: bytes | MessageFile,
    headers: HeaderBlock,
    info: SessionInfo,
) -> Reply:
    """Carry out the end-of-data verdict: refuse, drop, quarantine or queue, and track it."""
    message_id = sanitize(headers.get("Message-ID").strip(), 500)
    why = {"findings": verdict.findings, "decided_by": verdict.decided_by, "message_id": message_id}
    if verdict.refused and verdict.reply is not None:
        closed = ", connection closed" if verdict.action is Action.DISCONNECT else ""
        track(env, "REJECT", msg_id, tx, info, size_of(data), reply=str(verdict.reply),
              detail=f"at EOD by {verdict.decided_by.removeprefix('agent ')}{closed}", **why)  # fmt: skip
        return verdict.reply
    if verdict.action is Action.DISCARD:
        track(env, "DISCARD", msg_id, tx, info, size_of(data), detail=verdict.decided_by, **why)
        return Reply(250, "2.0.0", f"OK queued as {msg_id}")
    if verdict.action is Action.QUARANTINE:
        return await quarantine(env, msg_id, tx, data, headers, info, verdict)
    return await enqueue(env, msg_id, tx, data, headers, info, verdict)


async def enqueue(
    env: SessionEnv,
    msg_id: str,
    tx: Transaction,
    data: bytes | MessageFile,
    headers: HeaderBlock,
    info: SessionInfo,
    verdict: Verdict | None = None,
) -> Reply:
    record = queue_record(msg_id, tx, data, headers, info)
    try:
        if isinstance(data, MessageFile):
            await env.spool.accept_file(record, data)
        else:
            await env.spool.accept(record, data)
    except QueueError as exc:
        # The error knows its reply: a full or read-only spool is 452 4.3.1, not 451 4.3.0.
        log.error("session %s: spool refused message: %s", info.session_id, exc)
        return exc.reply
    except Exception:
        log.exception("session %s: spool refused message", info.session_id)
        return SERVICE_ERROR
    detail = f"tls={info.tls}" if info.tls else "tls=none"
    if info.peer_names:
        detail += f"; client certificate={','.join(info.peer_names)}"
    if info.authenticated:
        detail += f"; authenticated={info.authenticated}"
    why: dict[str, Any] = {}
    if verdict is not None:
        why = {"findings": verdict.findings, "decided_by": verdict.decided_by}
    track(env, "RECEIVE", msg_id, tx, info, record.size, message_id=record.message_id, reply="250 2.0.0",
          detail=detail, **why)  # fmt: skip
    env.on_queued(msg_id)
    return Reply(250, "2.0.0", f"OK queued as {msg_id}")


async def quarantine(
    env: SessionEnv,
    msg_id: str,
    tx: Transaction,
    data: bytes | MessageFile,
    headers: HeaderBlock,
    info: SessionInfo,
    verdict: Verdict,
) -> Reply:
    store = env.quarantine
    if store is None:  # no store configured: refusing for now is safer than delivering spam
        return SERVICE_ERROR
    entry = held_entry(
        verdict, mail_from=str(tx.mail_from), recipients=(str(r) for r in tx.rcpts),
        subject=headers.get("Subject"), message_id=headers.get("Message-ID"), client_ip=info.peer.ip,
        queue_record=record_to_dict(queue_record(msg_id, tx, data, headers, info)),
    )  # fmt: skip
    try:
        # The store seals (optionally encrypts) what it keeps as one piece: a message kept in a
        # file is read whole for it, in the worker thread.
        qid = await asyncio.to_thread(_put, store, entry, data)
    except OSError:
        log.exception("session %s: quarantine refused message", info.session_id)
        return SERVICE_ERROR
    track(env, "QUARANTINE", msg_id, tx, info, size_of(data), detail=f"{verdict.decided_by} {qid}",
          findings=verdict.findings, decided_by=verdict.decided_by,
          message_id=sanitize(headers.get("Message-ID").strip(), 500))  # fmt: skip
    return Reply(250, "2.0.0", f"OK queued as {msg_id}")


def _put(store: QuarantineStore, entry: QuarantineEntry, data: bytes | MessageFile) -> str:
    return store.put(entry, data.materialize() if isinstance(data, MessageFile) else data)
