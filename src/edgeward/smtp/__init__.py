"""The sans-IO SMTP server core (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
ENHANCEDSTATUSCODES, STARTTLS, CHUNKING, DSN).

No asyncio, sockets, DNS or clock here: ``ServerConnection`` turns bytes into events and replies
into bytes, and the session in ``edgeward.server`` does the I/O. ``state`` holds the one
transition table, ``parse`` the envelope grammar, ``data`` the body reading.
"""

from edgeward.smtp.connection import Extensions, ProtocolLimits, ServerConnection, SessionMisuse
from edgeward.smtp.events import (
    NEED_DATA,
    Auth,
    BdatChunk,
    ConnectionClosed,
    Data,
    Event,
    Helo,
    Help,
    MailFrom,
    MessageData,
    NeedData,
    Noop,
    ProtocolViolation,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
)
from edgeward.smtp.state import State

__all__ = [
    "NEED_DATA",
    "Auth",
    "BdatChunk",
    "ConnectionClosed",
    "Data",
    "Event",
    "Extensions",
    "Helo",
    "Help",
    "MailFrom",
    "MessageData",
    "NeedData",
    "Noop",
    "ProtocolLimits",
    "ProtocolViolation",
    "Quit",
    "RcptTo",
    "Rset",
    "ServerConnection",
    "SessionMisuse",
    "StartTls",
    "State",
    "Vrfy",
]
