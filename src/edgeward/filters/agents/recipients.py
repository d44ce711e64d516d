"""Local recipient validation at RCPT (off by default, as Exchange's RecipientValidation).

With it on, a recipient in an accepted domain must be listed in the recipients file, one
address or ``@domain`` (whole domain) per line; ``#`` starts a comment. Unknown recipients get
``550 5.1.1``, tarpitted by the policy (``filters.policy``), which slows directory harvesting.
Recipients outside accepted domains are the relay agent's business and pass here.

The file is read once when the gateway starts or reloads, so a lookup is a set membership test.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from edgeward.errors import ConfigError
from edgeward.filters.agents.relay import domain_matches
from edgeward.filters.base import Stage, StageContext
from edgeward.types import Finding, Outcome, Reply

UNKNOWN_USER = Reply(550, "5.1.1", "User unknown")


def read_recipients(path: Path) -> frozenset[str]:
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the recipient list ({exc.strerror})") from None
    entries = (line.split("#", 1)[0].strip().lower() for line in lines)
    return frozenset(e for e in entries if e)


class LocalRecipients:
    """Refuse recipients of accepted domains that the recipient list does not know."""

    name = "local-recipients"
    stages = frozenset({Stage.RCPT})
    antispam = False
    fail_open = False

    def __init__(self, accepted_domains: Iterable[str], recipients: frozenset[str]) -> None:
        self.accepted = frozenset(d.lower() for d in accepted_domains)
        self.recipients = recipients

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        rcpt = ctx.recipient
        if rcpt is None or not domain_matches(rcpt.domain, self.accepted):
            return Outcome.proceed()
        # Local parts are compared case-insensitively: every mail system this gateway fronts
        # (Exchange, Postfix virtual maps, LDAP directories) treats them so.
        address = str(rcpt).lower()
        if address in self.recipients or f"@{rcpt.domain.lower()}" in self.recipients:
            return Outcome.proceed()
        return Outcome.reject(UNKNOWN_USER, Finding("RCPT_UNKNOWN", self.name, address))
