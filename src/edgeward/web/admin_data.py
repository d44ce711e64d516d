"""What the administrators' views show, gathered once for the pages and the API alike.

Each function calls the service layer ``edgeward`` calls for the same view and returns plain
values: the queue actions (``queue.admin``), the effective configuration with secrets
redacted (``config.redact``) and the ``config check`` findings (``config.check.audit``), the
certificate store's list (``tls.store``), the agent pipeline (``agents_listing``). Nothing
here decides anything a command would decide differently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgeward.config.check import audit
from edgeward.config.redact import redact
from edgeward.queue.admin import QueueAdmin
from edgeward.tls.info import CertInfo
from edgeward.tls.store import CertificateStore

if TYPE_CHECKING:
    from edgeward.agents_listing import Pipeline
    from edgeward.web.app import Console

__all__ = [
    "CertRow",
    "Certificates",
    "agents",
    "certificates",
    "config_check",
    "effective_config",
    "eml_name",
    "queue_admin",
    "web_actor",
]


def queue_admin(console: Console) -> QueueAdmin:
    return QueueAdmin(console.quarantine.queue, console.config)


def web_actor(name: str) -> str:
    """How a console user is named in the tracking log (as the quarantine's releases name them)."""
    return f"{name} (web console)"


def effective_config(console: Console) -> dict[str, Any]:
    """``config show``'s document, secrets redacted."""
    return redact(console.config)


def config_check(console: Console) -> list[dict[str, str]]:
    """``config check``'s findings, errors first, as ``{"severity", "key", "text"}``."""
    return [{"severity": p.severity, "key": p.key, "text": p.text} for p in audit(console.config)]


@dataclass(frozen=True, slots=True)
class CertRow:
    info: CertInfo
    days_left: int
    expired: bool

    def to_json(self) -> dict[str, object]:
        return {**self.info.to_json(), "days_left": self.days_left, "expired": self.expired}


@dataclass(frozen=True, slots=True)
class Certificates:
    certificates: tuple[CertRow, ...]
    pending: tuple[dict[str, object], ...]  # requests waiting for a CA, as 'cert list --json'

    def to_json(self) -> dict[str, object]:
        return {"certificates": [c.to_json() for c in self.certificates], "pending": list(self.pending)}


def certificates(console: Console) -> Certificates:
    """``cert list``: the certificates, soonest expiry first, and the pending requests.
    ``CertificateError`` or ``OSError`` for a store that cannot be read."""
    store = CertificateStore(console.config.resolve(console.config.tls.store))
    now = store.now()
    rows = tuple(CertRow(info, info.days_left(now), info.expired(now)) for info in store.list())
    pending: tuple[dict[str, object], ...] = tuple(
        {"id": p.id, "names": list(p.names), "csr": str(p.csr_path), "renews": p.renews}
        for p in store.pending()
    )
    return Certificates(rows, pending)


def agents(console: Console) -> Pipeline:
    from edgeward.agents_listing import pipeline

    return pipeline(console.config)


_UNSAFE_NAME = re.compile(r"[^0-9A-Za-z_-]")


def eml_name(qid: str) -> str:
    """The download's file name: the quarantine id (never a name from the mail), ASCII only."""
    return (_UNSAFE_NAME.sub("", qid)[:64] or "message") + ".eml"
