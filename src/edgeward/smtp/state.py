"""The SMTP server state machine: one table, and the theory of operation behind it.

Theory of operation
===================

The core reads bytes, turns them into events, and waits: every event except ``ConnectionClosed``
must be answered with exactly one ``send(reply)`` before the next one is read. That one rule is
what makes pipelining (RFC 2920) safe: the core never reads ahead of a reply, so whether the
bytes after ``DATA`` are a message or more commands, and whether the bytes after ``STARTTLS``
may be read at all, is always decided by the reply already sent, never guessed.

The table below maps ``(state, input)`` to a ``Transition``: the state after a positive reply
(2xx/3xx) and the state after a negative one (4xx/5xx). ``None`` keeps the current state. An
input that has no row in the current state is out of sequence: the core does not pass it to the
session but answers ``ProtocolViolation`` with the reply of :func:`sequence_error`. So the
session never sets a state; it only says yes or no.

States::

    CONNECTED ──HELO/EHLO──> GREETED ──MAIL──> MAIL ──RCPT──> RCPT ──DATA 354──> DATA
        ^                     ^  ^                              │                 │
        │                     │  └────── message answered ──────┼─────────────────┘
        │                     │                                 └──BDAT──> BDAT (chunks)
        └─ RSET before HELO   └─ RSET, EHLO, failed chunk, BDAT LAST answered

    REFUSED: the greeting was 554; only QUIT is in sequence (RFC 5321 §3.1).
    CLOSED:  QUIT answered, a 421 sent or a fatal violation answered; nothing more is read.

Inputs are the client's commands plus three the core makes itself: ``MESSAGE`` (the end of a
DATA body), ``CHUNK``/``LAST_CHUNK`` (a BDAT chunk fully read) and ``REFUSED_INPUT`` (a
violation the core answered; it changes nothing, except that a failed chunk ends the BDAT
transaction).

Cross-cutting rules the connection applies on top of the table:

* A positive HELO/EHLO, RSET, an answered message and ``tls_started()`` clear the transaction
  (RFC 5321 §4.1.4); ``tls_started()`` also forgets the HELO (RFC 3207 §4.2).
* Any 421 closes (RFC 5321 §3.8). A fatal violation closes whatever the reply was.
* Errors the core detects count toward ``max_protocol_errors``; every command line counts
  toward ``max_commands``; both counters survive STARTTLS, so TLS gives no fresh budget.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edgeward.smtp import replies as r
from edgeward.types import Reply

__all__ = ["TABLE", "Input", "State", "Transition", "next_state", "sequence_error"]


class State(enum.Enum):
    CONNECTED = "connected"
    GREETED = "greeted"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    BDAT = "bdat"
    REFUSED = "refused"
    CLOSED = "closed"


class Input(enum.Enum):
    HELO = "HELO"
    EHLO = "EHLO"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    CHUNK = "BDAT"
    LAST_CHUNK = "BDAT LAST"
    MESSAGE = "message"
    RSET = "RSET"
    NOOP = "NOOP"
    QUIT = "QUIT"
    VRFY = "VRFY"
    HELP = "HELP"
    STARTTLS = "STARTTLS"
    AUTH = "AUTH"
    AUTH_RESPONSE = "auth response"
    REFUSED_INPUT = "violation"


@dataclass(frozen=True, slots=True)
class Transition:
    on_success: State | None
    on_failure: State | None = None


_C, _G, _M, _R, _D, _B = State.CONNECTED, State.GREETED, State.MAIL, State.RCPT, State.DATA, State.BDAT
_STAY = Transition(None, None)
_CLOSE = Transition(State.CLOSED, None)

# Inputs allowed in every state where commands are read (before DATA/BDAT restrictions).
_ANYTIME = {Input.NOOP: _STAY, Input.VRFY: _STAY, Input.HELP: _STAY, Input.QUIT: _CLOSE}

TABLE: dict[tuple[State, Input], Transition] = {
    **{(s, i): t for s in (_C, _G, _M, _R, _B) for i, t in _ANYTIME.items()},
    **{(s, Input.HELO): Transition(_G) for s in (_C, _G, _M, _R, _B)},
    **{(s, Input.EHLO): Transition(_G) for s in (_C, _G, _M, _R, _B)},
    (_C, Input.RSET): Transition(_C),
    **{(s, Input.RSET): Transition(_G) for s in (_G, _M, _R, _B)},
    (_G, Input.STARTTLS): Transition(_C),  # the connection waits for tls_started()
    (_G, Input.AUTH): _STAY,
    (_G, Input.AUTH_RESPONSE): _STAY,
    (_G, Input.MAIL): Transition(_M),
    (_M, Input.RCPT): Transition(_R),
    (_R, Input.RCPT): _STAY,
    (_R, Input.DATA): Transition(_D),
    (_D, Input.MESSAGE): Transition(_G, _G),
    (_R, Input.CHUNK): Transition(_B, _G),
    (_B, Input.CHUNK): Transition(_B, _G),
    (_R, Input.LAST_CHUNK): Transition(_G, _G),
    (_B, Input.LAST_CHUNK): Transition(_G, _G),
    **{(s, Input.REFUSED_INPUT): _STAY for s in State},
    (State.REFUSED, Input.QUIT): _CLOSE,
}


def next_state(state: State, event: Input, positive: bool) -> State:
    """The state after answering ``event`` in ``state`` positively or not."""
    transition = TABLE.get((state, event), _STAY)
    target = transition.on_success if positive else transition.on_failure
    return state if target is None else target


def sequence_error(state: State, event: Input) -> Reply:
    """The reply for ``event`` when ``(state, event)`` has no row in the table."""
    if state is State.REFUSED:
        return r.NO_SERVICE
    if state is State.CONNECTED:
        return r.NEED_HELO
    if event is Input.MAIL:
        return r.NESTED_MAIL
    if event is Input.RCPT:
        return r.NEED_MAIL
    if event in (Input.DATA, Input.CHUNK, Input.LAST_CHUNK):
        if state is State.MAIL:
            return r.NO_VALID_RECIPIENTS
        if state is State.BDAT and event is Input.DATA:
            return r.DATA_IN_BDAT
        return r.NEED_MAIL if state is State.GREETED else r.BAD_SEQUENCE
    if event in (Input.STARTTLS, Input.AUTH):
        return r.NOT_IN_TRANSACTION
    return r.BAD_SEQUENCE
