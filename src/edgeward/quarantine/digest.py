"""Users' quarantine digests: one mail per recipient listing what was held for them.

Each digest lists the entries quarantined for that recipient in the window (the last day by
default, so each message is in one digest), newest first: sender, subject, date and a
plain-language reason (``quarantine.reasons``), and, when ``[quarantine] release_link_base``
is set, a release link carrying a signed, expiring, single-use token (``quarantine.tokens``)
for that entry and that recipient only.

Only recipients in the accepted domains get a digest: the quarantine may hold outbound mail
for outside addresses, and telling an outsider what we held is not ours to do.

Digests go out like the administrators' notices (``notify.email``): built here, put in the
spool with a null reverse path (no bounce can loop back) and ``Auto-Submitted:
auto-generated``, delivered by the queue manager. The body is multipart/alternative,
text/plain and text/html; every value taken from mail (sender, subject) is escaped for each
(control characters in both, HTML metacharacters in the HTML), and header fields are set
through ``email.message.EmailMessage`` under ``policy.SMTP``, which refuses a line break in a
value (CVE-2024-6923).
"""

from __future__ import annotations

import asyncio
import datetime
import email.policy
import email.utils
import html
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from edgeward.config.schema import Config
from edgeward.filters.agents.relay import domain_matches
from edgeward.quarantine.entry import QuarantineEntry
from edgeward.quarantine.reasons import plain_reason
from edgeward.quarantine.service import QuarantineService, Released, open_store
from edgeward.quarantine.store import QuarantineStore
from edgeward.quarantine.tokens import ReleaseTokens
from edgeward.quarantine.view import header_text
from edgeward.queue.model import MessageRecord, RecipientRecord

__all__ = [
    "Digest",
    "DigestLine",
    "build_digests",
    "next_run",
    "peek_release_token",
    "render",
    "send_digests",
    "verify_release_token",
]

log = logging.getLogger(__name__)

Accept = Callable[[MessageRecord, bytes], Awaitable[str]]
DAY = 86400.0
_MAX_LINES = 500


@dataclass(frozen=True, slots=True)
class DigestLine:
    qid: str
    sender: str  # escaped text, not yet HTML-escaped
    subject: str
    date: str
    reason: str
    link: str = ""


@dataclass(frozen=True, slots=True)
class Digest:
    recipient: str
    lines: tuple[DigestLine, ...]
    more: int = 0  # held but not listed (past the line limit)


def _recipient_domain(address: str) -> str:
    return address.rpartition("@")[2]


def _link(base: str, token: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}token={token}"


def build_digests(
    entries: Iterable[QuarantineEntry],
    accepted_domains: Iterable[str],
    *,
    since: float,
    tokens: ReleaseTokens | None = None,
    link_base: str = "",
    lifetime: float = 14 * DAY,
) -> list[Digest]:
    """One digest per local recipient of the entries quarantined at or after ``since``;
    release links only with ``tokens`` and ``link_base``."""
    accepted = frozenset(d.lower().rstrip(".") for d in accepted_domains)
    by_rcpt: dict[str, tuple[str, list[QuarantineEntry]]] = {}
    for entry in entries:
        if entry.quarantined_at < since:
            continue
        for rcpt in entry.recipients:
            if "@" in rcpt and domain_matches(_recipient_domain(rcpt), accepted):
                by_rcpt.setdefault(rcpt.lower(), (rcpt, []))[1].append(entry)
    digests = []
    for rcpt, held in sorted(by_rcpt.values()):
        held.sort(key=lambda e: e.quarantined_at, reverse=True)
        lines = []
        for entry in held[:_MAX_LINES]:
            link = ""
            if tokens is not None and link_base:
                link = _link(link_base, tokens.issue(entry.qid, rcpt, lifetime))
            lines.append(DigestLine(
                entry.qid, header_text(entry.mail_from or "<>"), header_text(entry.subject) or "(no subject)",
                email.utils.formatdate(entry.quarantined_at, localtime=True), plain_reason(entry), link,
            ))  # fmt: skip
        digests.append(Digest(rcpt, tuple(lines), max(len(held) - _MAX_LINES, 0)))
    return digests


def _plain(d: Digest, retention_days: int) -> str:
    out = [f"{len(d.lines) + d.more} message(s) addressed to {d.recipient} were held in quarantine.", ""]
    for n, line in enumerate(d.lines, 1):
        out += [f"{n}. From: {line.sender}", f"   Subject: {line.subject}", f"   Date: {line.date}",
                f"   Why: {line.reason}"]  # fmt: skip
        out.append(f"   Release: {line.link}" if line.link else "   Release: ask your mail administrator")
        out.append("")
    if d.more:
        out += [f"... and {d.more} more.", ""]
    out.append(f"Held messages are deleted after {retention_days} days. Release only what you expected.")
    return "\n".join(out) + "\n"


def _html(d: Digest, retention_days: int) -> str:
    e = html.escape
    rows = []
    for line in d.lines:
        release = f'<a href="{e(line.link)}">Release</a>' if line.link else "ask your mail administrator"
        rows.append(f"<tr><td>{e(line.sender)}</td><td>{e(line.subject)}</td><td>{e(line.date)}</td>"
                    f"<td>{e(line.reason)}</td><td>{release}</td></tr>")  # fmt: skip
    more = f"<p>... and {d.more} more.</p>" if d.more else ""
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Quarantine digest</title></head><body>"
        f"<p>{len(d.lines) + d.more} message(s) addressed to {e(d.recipient)} were held in quarantine.</p>"
        "<table><tr><th>From</th><th>Subject</th><th>Date</th><th>Why</th><th></th></tr>"
        + "".join(rows) + f"</table>{more}<p>Held messages are deleted after {retention_days} days."
        " Release only what you expected.</p></body></html>\n"
    )  # fmt: skip


def render(d: Digest, *, sender: str, hostname: str, now: float, retention_days: int = 30) -> bytes:
    """The digest as CRLF bytes."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = f"Mail quarantine <{sender}>"
    msg["To"] = d.recipient
    msg["Subject"] = f"Quarantine digest: {len(d.lines) + d.more} message(s) held for you"
    msg["Date"] = email.utils.formatdate(now, usegmt=True)
    msg["Message-ID"] = f"<digest.{secrets.token_hex(8)}@{hostname}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(_plain(d, retention_days))
    msg.add_alternative(_html(d, retention_days), subtype="html")
    return msg.as_bytes(policy=email.policy.SMTP)


def _sender(config: Config) -> str:
    from edgeward.notify.build import postmaster

    return config.quarantine.digest_sender or postmaster(config)


def _state_dir(config: Config) -> Path:
    return config.resolve(Path("state"))


def release_tokens(config: Config, store: QuarantineStore | None = None) -> ReleaseTokens:
    return ReleaseTokens(_state_dir(config), store or open_store(config))


def verify_release_token(config: Config, token: str) -> tuple[str, str]:
    """What a web front calls with a link's token: ``(qid, recipient)``, the token used up,
    or ``TokenError`` (expired, used, bad signature, unknown entry)."""
    return release_tokens(config).verify(token)


def peek_release_token(config: Config, token: str) -> tuple[str, str]:
    """``(qid, recipient)`` a link would release, the token left unused; ``TokenError`` as
    :func:`verify_release_token`."""
    return release_tokens(config).peek(token)


async def release_by_token(config: Config, service: QuarantineService, token: str) -> Released:
    """A release link followed: the token verified and used up, the message queued for that
    recipient alone (tracked RELEASE "by recipient via digest link"). ``TokenError`` as
    :func:`verify_release_token`."""
    qid, rcpt = release_tokens(config, service.store).verify(token)
    return await service.release(qid, [rcpt], by="recipient via digest link")


async def send_digests(
    config: Config,
    accept: Accept,
    on_queued: Callable[[str], None] = lambda _msg_id: None,
    *,
    now: float | None = None,
    window: float = DAY,
    store: QuarantineStore | None = None,
) -> list[tuple[str, str]]:
    """Build and queue the digests; ``(recipient, queue id)`` of each."""
    from edgeward.config.quarantine import effective_retention

    when = time.time() if now is None else now
    store = store or open_store(config)
    cfg = config.quarantine
    tokens = release_tokens(config, store) if cfg.release_link_base else None
    entries = await asyncio.to_thread(store.list)
    digests = build_digests(
        entries, config.accepted_domains, since=when - window, tokens=tokens,
        link_base=cfg.release_link_base, lifetime=cfg.release_link_lifetime,
    )  # fmt: skip
    days = round(effective_retention(config) / DAY)
    sent = []
    for d in digests:
        data = render(
            d, sender=_sender(config), hostname=config.server.hostname, now=when, retention_days=days
        )
        record = MessageRecord(
            id="", mail_from="", recipients=(RecipientRecord(d.recipient),), received_at=when,
            size=len(data), connector="quarantine-digest", message_id=_message_id(data),
        )  # fmt: skip
        msg_id = await accept(record, data)
        on_queued(msg_id)
        sent.append((d.recipient, msg_id))
    if sent:
        log.info("quarantine digest: %d digest(s) queued", len(sent))
    return sent


def _message_id(data: bytes) -> str:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode("ascii")
    return ""


def next_run(now: float, hour: int) -> float:
    """The next local ``hour``:00 strictly after ``now``."""
    local = datetime.datetime.fromtimestamp(now).astimezone()
    at = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if at.timestamp() <= now:
        at = (at + datetime.timedelta(days=1)).replace(hour=hour)
    return at.timestamp()


async def run_digests(
    config: Callable[[], Config],
    accept: Accept,
    on_queued: Callable[[str], None],
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Send the digests every day at ``[quarantine] digest_hour`` until cancelled (the
    configuration is read again each day, so a reload moves the hour or turns them off)."""
    while True:
        now = clock()
        await sleep(max(next_run(now, config().quarantine.digest_hour) - now, 1.0))
        cfg = config()
        if not cfg.quarantine.digest_enabled:
            continue
        try:
            await send_digests(cfg, accept, on_queued, now=clock())
        except Exception:
            log.exception("quarantine digest failed; trying again tomorrow")
