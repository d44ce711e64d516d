"""Failed-AUTH throttling per source address and per account, in memory.

This module owns :class:`Throttle`. The session reports each failed AUTH with
:meth:`Throttle.failed` and each success with :meth:`Throttle.succeeded`, asks
:meth:`Throttle.blocked` before it starts an exchange and :meth:`Throttle.account_blocked`
once it knows the account name. Failures are counted in a sliding ``window`` in two ledgers
kept apart:

- **per source** (Exchange's MaxLogonFailures): the ``max_failures``-th failure from one
  source locks it out of AUTH for ``lockout`` seconds and closes the connection with
  ``421 4.7.0``; a locked-out source gets ``454 4.7.0`` before any exchange.
- **per account**: the ``max_account_failures``-th failure for one account name, from any mix
  of sources, locks that account for ``lockout`` seconds; every attempt on it meanwhile, even
  with the right password, fails. So guesses spread over many addresses still meet a limit.

Connector defaults (``config.schema``): 10 failures per source, 5 per account, a 15-minute
window and lockout, 5 s tarpit. The source limit is the higher one so that users behind one NAT
do not lock each other out: one user mistyping locks only their own account. (This class keeps
3 per source when built without settings, Exchange's value.)

Every failure returns a :class:`FailureVerdict`: wait ``tarpit`` seconds (Exchange's
AuthTarpitInterval) before answering ``reply``, and close when ``disconnect`` is set.

Addresses are grouped as attackers get them: an IPv4 address alone, an IPv6 address by its
``/64`` (one customer's subnet; ``ipv6_prefix``), an IPv4-mapped IPv6 address as IPv4. Account
names are grouped as the user store compares them (``username_key``: NFKC, case-folded).

Security:

- no account enumeration: names that do not exist are counted and locked exactly as real ones,
  and a locked account is answered with the reply of a wrong password (``535 5.7.8``) after the
  same tarpit, with the password still verified, so neither the reply nor its timing shows
  whether an account exists or is locked;
- a lockout is never extended by attempts made while it lasts, so an attacker cannot keep an
  account locked for longer than by guessing again once it ends;
- memory is bounded: per ledger at most ``max_tracked`` failure counts and as many lockouts,
  the least recently touched evicted first, expired entries dropped as they are met; lockouts
  are kept apart from failure counts so a flood of new failures can only evict the oldest
  lockouts;
- a success clears the failure counts of its source and account (``reset_on_success``) so
  users who mistype are not punished later; a client that also holds one valid account can use
  that to keep guessing from one source, which ``reset_on_success = False`` prevents.

State is per process and lost at restart; shared lockouts belong in the state store later.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from edgeward.auth.sasl import AUTH_INVALID
from edgeward.auth.users import InvalidUsernameError, username_key
from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.ports import Clock, SystemClock
from edgeward.types import Reply

__all__ = [
    "AUTH_LOCKED_OUT",
    "AUTH_TOO_MANY_FAILURES",
    "FailureLedger",
    "FailureVerdict",
    "Throttle",
    "account_key",
    "source_key",
]

# The failure that reaches the source limit: answer, then close (RFC 5321 §3.8: 421 closes).
AUTH_TOO_MANY_FAILURES = Reply(421, "4.7.0", "Too many authentication failures, closing connection")
# AUTH from a locked-out source, before any exchange starts (RFC 4954 §6: 454 4.7.0).
AUTH_LOCKED_OUT = Reply(454, "4.7.0", "Temporary authentication failure, try again later")


@dataclass(frozen=True, slots=True)
class FailureVerdict:
    """What the session does after a failed AUTH: wait ``tarpit`` s, send ``reply``, maybe close."""

    reply: Reply
    tarpit: float
    disconnect: bool
    failures: int  # failures of the source inside the window


def source_key(ip: str, ipv6_prefix: int = 64) -> str:
    """The throttled unit for ``ip``: the IPv4 address, or the IPv6 network of ``ipv6_prefix`` bits."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip  # not an address (a Unix socket peer, say): throttle the name as given
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, ipv6_prefix), strict=False))
    return str(addr)


def account_key(name: str) -> str:
    """The throttled unit for an account name: the form the user store compares names in."""
    try:
        return username_key(name)
    except InvalidUsernameError:
        # Not a valid name, so no account has it; still counted, bounded like the valid ones.
        return unicodedata.normalize("NFKC", name).casefold()[:256]


class FailureLedger:
    """Failure times and lockouts for one kind of key, bounded in time and space."""

    def __init__(self, clock: Clock, limit: int, window: float, lockout: float, max_tracked: int) -> None:
        self._clock = clock
        self.limit = limit
        self.window = window
        self.lockout = lockout
        self.max_tracked = max_tracked
        # key -> times of recent failures (at most limit kept), least recent first
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        # key -> time the lockout ends, least recent first
        self._locked: OrderedDict[str, float] = OrderedDict()

    def blocked(self, key: str) -> bool:
        until = self._locked.get(key)
        if until is None:
            return False
        if self._clock.now() >= until:
            del self._locked[key]
            return False
        return True

    def failed(self, key: str) -> tuple[int, bool]:
        """Count one failure; (failures in the window, whether this one started a lockout)."""
        if self.blocked(key):
            return self.limit, False
        now = self._clock.now()
        times = self._failures.pop(key, None)
        if times is None:
            times = deque(maxlen=self.limit)
        while times and now - times[0] >= self.window:
            times.popleft()
        times.append(now)
        if len(times) >= self.limit:
            # Lock and forget the count, so the lockout ends cleanly instead of the next
            # single failure locking the key again at once.
            self._locked[key] = now + self.lockout
            self._trim(self._locked)
            return len(times), True
        self._failures[key] = times
        self._trim(self._failures)
        return len(times), False

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        times = self._failures.get(key)
        if not times:
            return 0
        now = self._clock.now()
        return sum(1 for t in times if now - t < self.window)

    def __len__(self) -> int:
        return len(self._failures) + len(self._locked)

    def _trim(self, table: OrderedDict[str, deque[float]] | OrderedDict[str, float]) -> None:
        self._expire()
        while len(table) > self.max_tracked:
            table.popitem(last=False)

    def _expire(self) -> None:
        # Drop a few expired entries from the old end at each write: amortised O(1), and the
        # tables never hold much that has expired.
        now = self._clock.now()
        for _ in range(2):
            if self._locked:
                key, until = next(iter(self._locked.items()))
                if now >= until:
                    del self._locked[key]
            if self._failures:
                key, times = next(iter(self._failures.items()))
                if not times or now - times[-1] >= self.window:
                    del self._failures[key]


class Throttle:
    """Failure counts and lockouts per source and per account (module docstring)."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        max_failures: int = 3,
        max_account_failures: int = 5,
        window: float = 900.0,
        lockout: float = 900.0,
        auth_tarpit: float = 5.0,
        max_tracked: int = 10_000,
        ipv6_prefix: int = 64,
        reset_on_success: bool = True,
        accounts: FailureLedger | None = None,
    ) -> None:
        """``accounts``: a ledger shared with the throttles of other connectors, so that an
        account's limit holds across every port that offers AUTH; by default one of its own."""
        if max_failures < 1 or max_account_failures < 1:
            raise ValueError("max_failures and max_account_failures must be at least 1")
        if window <= 0 or lockout < 0 or auth_tarpit < 0:
            raise ValueError("window must be positive; lockout and auth_tarpit not negative")
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        if not 0 <= ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix must be between 0 and 128")
        self._clock = clock or SystemClock()
        self.max_failures = max_failures
        self.max_account_failures = max_account_failures
        self.window = window
        self.lockout = lockout
        self.auth_tarpit = auth_tarpit
        self.max_tracked = max_tracked
        self.ipv6_prefix = ipv6_prefix
        self.reset_on_success = reset_on_success
        self._sources = FailureLedger(self._clock, max_failures, window, lockout, max_tracked)
        # Not "or": an empty ledger is falsy (it has a length).
        self._accounts = (
            accounts
            if accounts is not None
            else FailureLedger(self._clock, max_account_failures, window, lockout, max_tracked)
        )

    @classmethod
    def for_connector(
        cls, connector: ReceiveConnectorConfig, accounts: FailureLedger | None = None
    ) -> Throttle:
        """The throttle a receive connector's settings describe (``accounts``: see ``__init__``)."""
        return cls(
            max_failures=connector.max_logon_failures,
            max_account_failures=connector.max_account_logon_failures,
            lockout=connector.auth_lockout,
            auth_tarpit=connector.auth_tarpit_interval,
            accounts=accounts,
        )

    @staticmethod
    def shared_accounts(
        connectors: Iterable[ReceiveConnectorConfig], clock: Clock | None = None
    ) -> FailureLedger:
        """One account ledger for all ``connectors``: the strictest limit and longest lockout."""
        given = list(connectors)
        offering = [c for c in given if c.auth_mechanisms] or given
        return FailureLedger(
            clock or SystemClock(),
            min((c.max_account_logon_failures for c in offering), default=5),
            900.0,
            max((c.auth_lockout for c in offering), default=900.0),
            10_000,
        )

    def blocked(self, ip: str) -> bool:
        """Whether the source ``ip`` is locked out of AUTH now (answer :data:`AUTH_LOCKED_OUT`)."""
        return self._sources.blocked(source_key(ip, self.ipv6_prefix))

    def account_blocked(self, account: str) -> bool:
        """Whether ``account`` is locked now: fail the attempt as if the password were wrong."""
        return self._accounts.blocked(account_key(account))

    def failed(self, ip: str, account: str | None = None) -> FailureVerdict:
        """Count one failed AUTH from ``ip`` (for ``account``, if a name was given)."""
        if account is not None:
            self._accounts.failed(account_key(account))
        count, _ = self._sources.failed(source_key(ip, self.ipv6_prefix))
        if count >= self.max_failures:  # this failure locked the source, or it already was
            return FailureVerdict(AUTH_TOO_MANY_FAILURES, self.auth_tarpit, True, count)
        return FailureVerdict(AUTH_INVALID, self.auth_tarpit, False, count)

    def succeeded(self, ip: str, account: str | None = None) -> None:
        """A successful AUTH: forget the failures of the source and account (``reset_on_success``)."""
        if self.reset_on_success:
            self._sources.forget(source_key(ip, self.ipv6_prefix))
            if account is not None:
                self._accounts.forget(account_key(account))

    def failures(self, ip: str) -> int:
        """Failures of ``ip`` still inside the window (for logs and tests)."""
        return self._sources.failures(source_key(ip, self.ipv6_prefix))

    def account_failures(self, account: str) -> int:
        """Failures for ``account`` still inside the window (for logs and tests)."""
        return self._accounts.failures(account_key(account))

    def __len__(self) -> int:
        """How many sources and accounts are tracked (failures plus lockouts)."""
        return len(self._sources) + len(self._accounts)
