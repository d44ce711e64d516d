"""The one exception tree of Edgeward.

::

    EdgewardError
    ├── ConfigError                 configuration cannot be loaded or is invalid
    ├── ProtocolError               an SMTP client broke the protocol; carries the Reply to answer
    │   └── LimitExceeded           a bounded resource (line, header, size, count) was exceeded
    ├── AgentError                  an agent failed or timed out (answered with 451 4.3.0)
    ├── QueueError                  the spool could not store or move a message
    │   └── InsufficientStorage     free disk below the back-pressure threshold (452 4.3.1)
    ├── DeliveryError               a next hop could not take a message; carries per-recipient data
    └── PrivilegeError              the process would run with privileges it must not keep

Errors that reach an SMTP client carry the ``Reply`` to send, so the layer that catches them
never has to invent a status code.
"""

from __future__ import annotations

import errno

from edgeward.types import Reply


class EdgewardError(Exception):
    """Base of every error Edgeward raises on purpose."""


class ConfigError(EdgewardError):
    """The configuration is missing, unreadable or invalid.

    ``problems`` lists ``(location, expected, found)`` triples so ``config check`` can print
    each one with the file it came from.
    """

    def __init__(self, message: str, problems: tuple[tuple[str, str, str], ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class ProtocolError(EdgewardError):
    """A client sent something the protocol does not allow."""

    def __init__(self, reply: Reply, *, fatal: bool = False) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.fatal = fatal


class LimitExceeded(ProtocolError):
    """A bound on input was exceeded."""


class AgentError(EdgewardError):
    """An agent raised or ran out of time."""

    def __init__(self, agent: str, message: str) -> None:
        super().__init__(f"agent {agent}: {message}")
        self.agent = agent


class QueueError(EdgewardError):
    """The spool could not take or move a message."""

    reply = Reply(451, "4.3.0", "Local error in processing, message not accepted")


class InsufficientStorage(QueueError):
    """Free space is below the back-pressure threshold."""

    reply = Reply(452, "4.3.1", "Insufficient system storage, try again later")


# A full or read-only disk is the sender's "try later" of RFC 3463 (4.3.1), not a local fault:
# the client keeps the message and the condition clears when space or write access returns.
NO_STORAGE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def storage_error(what: str, exc: OSError) -> QueueError:
    """The error (and so the reply) for an ``OSError`` met while storing a message."""
    kind = InsufficientStorage if exc.errno in NO_STORAGE else QueueError
    return kind(f"{what}: {exc}")


class DeliveryError(EdgewardError):
    """The next hop did not take a message."""

    def __init__(self, message: str, *, permanent: bool = False, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.reply = reply


class PrivilegeError(EdgewardError):
    """The process holds privileges it must not keep (for example root after binding)."""
