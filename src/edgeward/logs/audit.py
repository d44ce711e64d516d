"""The audit log: who did what administrative thing, when, from where (``<log dir>/audit.log``).

One JSON object per line, appended with ``O_APPEND`` in one ``write`` (lines from the console,
the CLI and the gateway's own commands do not interleave), the file 0600 and handed to the
service user when written as root. Fields: ``time`` (ISO-8601 UTC) and ``ts`` (epoch),
``actor`` (a console account, ``API token NAME``, or the system user running the CLI),
``via`` (``web``, ``api``, ``cli``), ``source`` (the client address, ``local`` for the CLI),
``action`` (``login``, ``login.failed``, ``logout``, ``totp.enable``, ``account.add``,
``token.add``, ``message.release``, ``message.hold`` ...), ``target`` and ``detail``.

It is a log apart from the tracking log rather than more lines in ``tracking-admin.log``:
logins and account changes are not message events, and ``edgeward track`` and the metrics
count tracking events by name. Message actions are in both: :func:`~edgeward.logs.adminlog.
track_admin` (the one place queue and quarantine actions of the CLI and the console are
written) adds an audit line for the actor set by :func:`acting`, or the CLI's user when none
is set. The log is never rewritten; reading scans it whole (it grows by actions of people,
not by mail).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeward.config.ownership import hand_over, make_private_dirs, service_owner
from edgeward.config.schema import Config
from edgeward.logs.why import parse_when

__all__ = ["AUDIT_LOG_NAME", "Actor", "AuditQuery", "acting", "audit", "audit_query", "read_audit"]

AUDIT_LOG_NAME = "audit.log"
log = logging.getLogger(__name__)
_FIELDS = ("time", "ts", "actor", "via", "source", "action", "target", "detail")


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    via: str  # web, api, cli
    source: str  # the client's address, or "local"


_ACTOR: ContextVar[Actor | None] = ContextVar("edgeward_audit_actor", default=None)


def cli_actor() -> Actor:
    """The person at the terminal: the user sudo was run by, else the login name."""
    try:
        name = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        name = f"uid {os.getuid()}"
    return Actor(name, "cli", "local")


@contextlib.contextmanager
def acting(actor: Actor) -> Iterator[None]:
    """Audit lines written inside (by :func:`audit` without an actor) name ``actor``."""
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def audit_path(config: Config) -> Path:
    return config.resolve(config.logging.dir) / AUDIT_LOG_NAME


def audit(
    config: Config | None, action: str, *, target: str = "", detail: str = "", actor: Actor | None = None
) -> None:
    """Append one line. A log that cannot be written is reported and does not undo the action."""
    if config is None:
        return
    who = actor or _ACTOR.get() or cli_actor()
    now = datetime.now(UTC)
    line = {
        "time": now.isoformat(timespec="seconds"), "ts": round(now.timestamp(), 3), "actor": who.name,
        "via": who.via, "source": who.source, "action": action, "target": target, "detail": detail,
    }  # fmt: skip
    data = (json.dumps(line, ensure_ascii=True) + "\n").encode()
    path = audit_path(config)
    try:
        make_private_dirs(path.parent, owner=service_owner(path.parent))
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        hand_over(path)
    except OSError as exc:
        log.error("could not write the audit line %s by %s: %s", action, who.name, exc)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    actor: str = ""  # a part of the actor's name, any case
    action: str = ""  # a prefix: "login" finds login and login.failed
    since: float | None = None
    until: float | None = None
    offset: int = 0
    limit: int = 100

    def matches(self, e: dict[str, Any]) -> bool:
        ts = e.get("ts")
        if not isinstance(ts, int | float):
            return False
        if (self.since is not None and ts < self.since) or (self.until is not None and ts >= self.until):
            return False
        actor, action = str(e.get("actor", "")), str(e.get("action", ""))
        return self.actor.lower() in actor.lower() and action.startswith(self.action.strip().lower())


def _verbatim(needle: str) -> bool:
    return bool(needle) and needle.isascii() and needle.isprintable() and not {'"', "\\"} & set(needle)


def read_audit(config: Config, query: AuditQuery) -> tuple[list[dict[str, Any]], int]:
    """One page of matching lines, newest first, and how many matched; damaged lines skipped."""
    path = audit_path(config)
    found: list[dict[str, Any]] = []
    # Lines are ASCII (non-ASCII is \u-escaped), so a needle that JSON writes as itself and that
    # is absent from a line's bytes rules the line out before parsing: most lines of a long log.
    needles = [n.lower().encode() for n in (query.actor, query.action.strip()) if _verbatim(n)]
    with contextlib.suppress(FileNotFoundError), path.open("rb") as fh:
        for raw in fh:
            if needles and not all(n in raw.lower() for n in needles):
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict) and query.matches(entry):
                found.append({k: entry.get(k, "") for k in _FIELDS})
    found.reverse()
    start = max(query.offset, 0)
    return found[start : start + max(query.limit, 0)], len(found)


def audit_query(
    actor: str = "", action: str = "", since: str = "", until: str = "", *, page: int = 1, size: int = 100
) -> AuditQuery:
    """The query for criteria as typed (times: ISO-8601 or an age such as ``2h``); ``ValueError``
    with a sentence to show for times that do not parse."""

    def when(text: str, what: str) -> float | None:
        if not text.strip():
            return None
        try:
            return parse_when(text).timestamp()
        except ValueError:
            raise ValueError(f"{what}: not an ISO date/time nor an age such as 2h or 3d") from None

    return AuditQuery(actor.strip(), action.strip(), when(since, "since"), when(until, "until"),
                      offset=(page - 1) * size, limit=size)  # fmt: skip
