"""The headers Edgeward adds to an accepted message, assembled in one place.

On top, in order: the trace header (RFC 5321 §4.4, protocol names of RFC 3848 / RFC 6531), the
headers agents asked for at any stage, ``X-Edgeward-SCL`` (``-1`` for an exempt message, as
Exchange stamps it), one ``X-Edgeward-Antispam-Report``, and ``X-Edgeward-Spam-Flag: YES`` when
the stamp threshold was reached, and ``X-Edgeward-PCL`` (the phishing level) when the content
filter rated the message.

With ``[stamps] exchange_organization`` an Exchange organisation behind the gateway gets the
fields its own filters read: ``X-MS-Exchange-Organization-SCL`` (so its junk-mail threshold acts
on our verdict: the total, on the scale it is calibrated to, clamped to 0-9; ``-1`` when exempt,
which Exchange reads as "trusted, deliver to the inbox"), ``-PCL`` and ``-Antispam-Report``.
Exchange trusts these fields, so copies an outside client sent are always removed on arrival
(``transforms.internal``), whether or not we stamp them.

The report joins what agents contributed under that name (the content filter's
``SCL:5;PCL:1;P:0.71;F:...``) with the verdict: ``TOTAL:8;RULE:threshold reject 7 (total 8);
S:SCL_5@eod=5,SPF_FAIL@mail=3``. Findings of weight 0 that decided nothing are left out of
``S:`` only when there are more than ``MAX_REPORTED``, so the line stays bounded.

Security: every value passes through ``headers.sanitize``, line by line where an agent folded it
(CRLF TAB, which only continues the field); no client text can start a new line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime

from edgeward.filters.base import SessionInfo
from edgeward.filters.transforms.base import Accepted
from edgeward.filters.verdict import Verdict, phishing_level
from edgeward.headers import sanitize
from edgeward.types import Address

SCL_HEADER = "X-Edgeward-SCL"
REPORT_HEADER = "X-Edgeward-Antispam-Report"
FLAG_HEADER = "X-Edgeward-Spam-Flag"
PCL_HEADER = "X-Edgeward-PCL"
EXCHANGE_SCL = "X-MS-Exchange-Organization-SCL"
EXCHANGE_PCL = "X-MS-Exchange-Organization-PCL"
EXCHANGE_REPORT = "X-MS-Exchange-Organization-Antispam-Report"
MAX_REPORTED = 24
MAX_FOLDED_LINES = 40  # an agent's header (Authentication-Results of several signatures)


def trace_header(
    msg_id: str, info: SessionInfo, fqdn: str, *, tls_active: bool, smtputf8: bool, rcpts: Sequence[Address]
) -> str:
    """The ``Received:`` field this gateway adds."""
    proto = "UTF8SMTP" if smtputf8 else ("ESMTP" if info.esmtp else "SMTP")
    if tls_active:
        proto += "S"
    if info.authenticated:
        proto += "A"
    tls = f"\r\n\t(using {info.tls})" if info.tls else ""
    if info.peer_names:  # RFC 8314 §4.3 style: say which verified client certificate was shown
        tls += f"\r\n\t(client certificate for {sanitize(', '.join(info.peer_names), 200)} verified)"
    who = f"for {rcpts[0].bracketed()}; " if len(rcpts) == 1 else ""
    helo = info.helo or "unknown"
    ip = info.peer.ip
    literal = f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
    date = format_datetime(datetime.now(UTC))
    return (
        f"Received: from {helo} ({literal})\r\n\tby {fqdn} (Edgeward) with {proto} id {msg_id}{tls}"
        f"\r\n\t{who}{date}\r\n"
    )


def report(verdict: Verdict, fragments: Sequence[str] = ()) -> str:
    """The value of ``X-Edgeward-Antispam-Report``."""
    scored = [f for f in verdict.findings if f.score] or list(verdict.findings)
    listed = ",".join(f"{f.name}@{f.stage or '-'}={f.score:g}" for f in scored[:MAX_REPORTED])
    parts = [*fragments, f"TOTAL:{verdict.total:g}", f"RULE:{verdict.decided_by}"]
    if listed:
        parts.append(f"S:{listed}")
    return ";".join(parts)


def stamp_headers(verdict: Verdict, *, exchange: bool = False, client_ip: str = "") -> list[tuple[str, str]]:
    """Every stamp except the trace header, in order; ``exchange`` adds the organisation fields."""
    fragments = [v for n, v in verdict.headers if n.lower() == REPORT_HEADER.lower()]
    out = [(n, v) for n, v in verdict.headers if n.lower() != REPORT_HEADER.lower()]
    if verdict.exempt and not any(n.lower() == SCL_HEADER.lower() for n, _ in out):
        out.append((SCL_HEADER, "-1"))
    pcl = phishing_level(verdict.findings)
    if pcl:
        out.append((PCL_HEADER, str(pcl)))
    text = report(verdict, fragments)
    out.append((REPORT_HEADER, text))
    if verdict.flagged:
        out.append((FLAG_HEADER, "YES"))
    if exchange:
        out.extend(exchange_headers(verdict, pcl, text, client_ip))
    return out


def exchange_scl(verdict: Verdict) -> int:
    """The SCL an Exchange organisation is told: -1 for exempt mail, else the total in 0-9."""
    if verdict.exempt:
        return -1
    return max(0, min(9, math.floor(verdict.total)))


def exchange_headers(verdict: Verdict, pcl: int, text: str, client_ip: str) -> list[tuple[str, str]]:
    scl = exchange_scl(verdict)
    out = [(EXCHANGE_SCL, str(scl))]
    if pcl:
        out.append((EXCHANGE_PCL, str(pcl)))
    # Exchange's report starts with the original client address; ours follows it.
    origin = f"OrigIP:{client_ip};" if client_ip else ""
    out.append((EXCHANGE_REPORT, f"{origin}SCL:{scl};{text}"))
    return out


def _field(name: str, value: str) -> str:
    """One stamped field; an agent's own folding (CRLF TAB) is kept, each line sanitised."""
    lines = [sanitize(line, 900) for line in value.split("\r\n\t")[:MAX_FOLDED_LINES]]
    return f"{sanitize(name, 76)}: " + "\r\n\t".join(lines) + "\r\n"


class Stamps:
    """Adds the trace header and the verdict stamps on top of the message."""

    name = "stamps"
    header_only = True  # fields on top: a message kept in a file keeps its body there

    def __init__(self, *, exchange: bool = False) -> None:
        self.exchange = exchange

    def apply(self, data: bytes, accepted: Accepted) -> bytes:
        trace = trace_header(
            accepted.msg_id, accepted.info, accepted.fqdn, tls_active=accepted.tls_active,
            smtputf8=accepted.smtputf8, rcpts=accepted.recipients,
        )  # fmt: skip
        headers = stamp_headers(accepted.verdict, exchange=self.exchange, client_ip=accepted.info.peer.ip)
        stamps = "".join(_field(n, v) for n, v in headers)
        return (trace + stamps).encode("utf-8", "surrogateescape") + data
