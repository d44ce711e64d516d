"""SMTP authentication: accounts, the SASL exchange and failure throttling.

``users`` keeps accounts in the state database and verifies passwords (argon2id, no username
oracle); ``sasl`` runs one AUTH PLAIN / LOGIN exchange without I/O (RFC 4954, RFC 4616);
``throttle`` counts failures per source and locks sources out. The SMTP session wires them:
AUTH is offered only after STARTTLS or on implicit TLS (``ENCRYPTION_REQUIRED`` otherwise).
"""

from __future__ import annotations

from edgeward.auth.sasl import (
    AUTH_ALREADY_DONE,
    AUTH_CANCELLED,
    AUTH_INVALID,
    AUTH_SUCCEEDED,
    AUTH_TEMPFAIL,
    ENCRYPTION_REQUIRED,
    SUPPORTED_MECHANISMS,
    Challenge,
    Credentials,
    Failure,
    SaslServer,
    SaslStep,
)
from edgeward.auth.throttle import AUTH_LOCKED_OUT, AUTH_TOO_MANY_FAILURES, FailureVerdict, Throttle
from edgeward.auth.users import (
    InvalidPasswordError,
    InvalidUsernameError,
    UnknownUserError,
    UserError,
    UserExistsError,
    UserInfo,
    UserStore,
)

__all__ = [
    "AUTH_ALREADY_DONE",
    "AUTH_CANCELLED",
    "AUTH_INVALID",
    "AUTH_LOCKED_OUT",
    "AUTH_SUCCEEDED",
    "AUTH_TEMPFAIL",
    "AUTH_TOO_MANY_FAILURES",
    "ENCRYPTION_REQUIRED",
    "SUPPORTED_MECHANISMS",
    "Challenge",
    "Credentials",
    "Failure",
    "FailureVerdict",
    "InvalidPasswordError",
    "InvalidUsernameError",
    "SaslServer",
    "SaslStep",
    "Throttle",
    "UnknownUserError",
    "UserError",
    "UserExistsError",
    "UserInfo",
    "UserStore",
]
