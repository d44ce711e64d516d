"""The facts about one message that both the spam model and the phishing rules read.

This module owns turning a :class:`~edgeward.content.mime.ParsedMessage` into
:class:`MessageFacts`: the sender, subject, visible text (plain and HTML), links with their link
text, URLs and hosts, and header anomalies. It also owns what the classifier must *ignore*:

* headers added by the receiving path rather than the sender (``Received``, ``Delivered-To``,
  ``Return-Path``, ``X-Spam-*``, ``X-Virus-*``, ``X-Razor*``, ``X-Pyzor``, ``X-Authentication-Warning``
  (added by the receiving sendmail, so it describes the corpus's relays), and mailing-list headers
  (``List-*`` except the unsubscribe pair below, ``X-Mailman-*``, ``X-Beenthere``, ``Sender``,
  ``Errors-To``) and list subject tags like ``[ILUG]``). Only an explicit set of originator
  headers is read at all.
* recipients (``To``, ``Cc``): a model must not learn who the mail was for.
* e-mail addresses in text: they are replaced by a placeholder, so a corpus that rewrote them
  (``zzzz@``, ``spamassassin.taint.org``, ``example.sourceforge.net``) scores like one that did not.

Bulk-mail conventions are read from the sender's own headers: ``List-Unsubscribe``,
``List-Unsubscribe-Post`` (RFC 8058 one-click), ``Feedback-ID``, ``Precedence``, and the ``d=`` of
every ``DKIM-Signature`` (presence and alignment with the From domain only: a signature is not
verified here, so it proves nothing by itself).

``Authentication-Results`` is **not** read: a client can write any verdict into it. ``auth`` holds
results only when the receiving gateway's own checks supply them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from edgeward.content.htmltext import Link, read_html
from edgeward.content.mime import ParsedMessage

__all__ = ["MessageFacts", "extract_facts", "registered_domain"]

MAX_URLS = 100
MAX_TEXT_CHARS = 100_000

_URL = re.compile(r"""(?:https?://|www\.)[^\s<>"'()\[\]{}]{2,500}""", re.I)
_URL_LOWER = re.compile(r"""(?:https?://|www\.)[^\s<>"'()\[\]{}]{2,500}""")
# Starts with a literal "@" so the engine can skip ahead; the local part is walked back by hand.
_EMAIL_DOMAIN = re.compile(r"@[\w-]{1,63}(?:\.[\w-]{1,63})+", re.UNICODE)
_ANGLE = re.compile(r"<([^<>]*)>")
_BARE = re.compile(r"[^\s<>()\",;:]+@[^\s<>()\",;:]+")
_PAREN = re.compile(r"\(([^()]*)\)")
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+=-")
_LIST_TAG = re.compile(r"^\s*(?:(?:re|fwd?|aw)\s*:\s*)*\[[^\]]{1,40}\]\s*", re.I)
_DKIM_D = re.compile(r"(?:^|;)\s*d\s*=\s*([^;\s]+)", re.I)
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go"})


@dataclass
class MessageFacts:
    subject: str = ""
    from_display: str = ""
    from_domain: str = ""
    reply_to_domain: str = ""
    text: str = ""
    has_plain: bool = False
    has_html: bool = False
    links: list[Link] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    url_count: int = 0
    tag_counts: dict[str, int] = field(default_factory=dict)
    password_inputs: int = 0
    hidden_text: int = 0
    tracking_pixels: int = 0
    # Characters of HTML source and of the text it shows (for the text-to-markup ratio).
    html_chars: int = 0
    html_text_chars: int = 0
    list_unsubscribe: bool = False
    one_click_unsubscribe: bool = False
    feedback_id: bool = False
    precedence: str = ""
    dkim_domains: list[str] = field(default_factory=list)
    auth: dict[str, str] = field(default_factory=dict)
    header_flags: set[str] = field(default_factory=set)
    parsed: ParsedMessage = field(default_factory=ParsedMessage)


def registered_domain(host: str) -> str:
    """Approximate registrable domain (``a.b.example.co.uk`` -> ``example.co.uk``) without a PSL."""
    labels = [label for label in host.lower().strip(".").split(".") if label]
    if len(labels) <= 2:
        return ".".join(labels)
    if len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def url_host(url: str) -> str:
    """Lower-cased host of ``url`` (``www.x`` without scheme accepted), or ``""``."""
    if not url.lower().startswith(("http://", "https://")):
        url = "http://" + url
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.strip(".")


def is_ip_literal(host: str) -> bool:
    # Fast path for the usual name: IPv4 and hex/decimal forms end in a digit or hex digit after
    # "0x", IPv6 has ":" (and "]" when bracketed); ip_address() raising costs more than the rest.
    if not host[-1:].isdigit() and ":" not in host and not host.endswith("]"):
        return host.lower().startswith("0x")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        # Dotless or hex/octal forms ("http://0x7f000001") are IP literals too for a browser.
        return host.isdigit() or host.lower().startswith("0x")
    return True


def split_address(value: str) -> tuple[str, str]:
    """``(display name, address)`` of the first mailbox in a From-style header; lenient and fast
    (``email.utils.parseaddr`` is several times slower and no better on broken headers)."""
    value = value[:1000]
    match = _ANGLE.search(value)
    if match is not None:
        return value[: match.start()].strip().strip('"').strip(), match.group(1).strip()
    bare = _BARE.search(value)
    if bare is None:
        return value.strip().strip('"'), ""
    display = _PAREN.search(value)
    return (display.group(1).strip() if display else ""), bare.group(0)


def _strip_emails(text: str) -> str:
    """Replace every ``local@domain`` with a placeholder word."""
    out: list[str] = []
    last = 0
    for match in _EMAIL_DOMAIN.finditer(text):
        start = match.start()
        while start > last and match.start() - start < 64 and text[start - 1] in _LOCAL_CHARS:
            start -= 1
        if start == match.start():
            continue  # "@" without a local part: not an address
        out.append(text[last:start])
        out.append(" emailaddr ")
        last = match.end()
    out.append(text[last:])
    return "".join(out)


def _take_urls(text: str, lowered: str, urls: list[str]) -> str:
    """Append the URLs in ``text`` to ``urls`` (at most ``2 * MAX_URLS``) and return ``text``
    without them: URLs are described by their own features, and removing them from the running
    text keeps host names (and corpus-obfuscated addresses) out of the word features."""
    # One pass over the lower-cased copy without re.I: a case-insensitive pattern cannot skip
    # ahead on its literal prefix, which made this the slowest step of scoring plain text.
    # Lower-casing keeps offsets except for a few characters (e.g. U+0130); then use re.I.
    same_offsets = len(lowered) == len(text)
    matches = _URL_LOWER.finditer(lowered) if same_offsets else _URL.finditer(text)
    pieces: list[str] = []
    last = 0
    for match in matches:
        start, end = match.span()
        if len(urls) < MAX_URLS * 2:
            urls.append(text[start:end])
        pieces.append(text[last:start])
        last = end
    pieces.append(text[last:])
    return " ".join(pieces)


def _header_flags(msg: ParsedMessage) -> set[str]:
    flags: set[str] = set()
    names = {name for name, _ in msg.headers}
    if "date" not in names:
        flags.add("NO_DATE")
    message_id = msg.header("message-id")
    if not message_id:
        flags.add("NO_MESSAGE_ID")
    elif "@" not in message_id or not message_id.strip().startswith("<"):
        flags.add("MESSAGE_ID_MALFORMED")
    if "in-reply-to" in names or "references" in names:
        flags.add("IS_REPLY")
    if "mime-version" not in names and len(msg.structure) > 1:
        flags.add("MIME_NO_VERSION")
    if msg.header("x-priority").strip()[:1] == "1" or msg.header("x-msmail-priority").lower() == "high":
        flags.add("HIGH_PRIORITY")
    return flags


def _bulk_headers(msg: ParsedMessage, facts: MessageFacts) -> None:
    for name, value in msg.headers:
        if name == "list-unsubscribe":
            facts.list_unsubscribe = True
        elif name == "list-unsubscribe-post":
            facts.one_click_unsubscribe = "one-click" in value.lower()
        elif name == "feedback-id":
            facts.feedback_id = True
        elif name == "precedence":
            facts.precedence = value.strip().lower()[:16]
        elif name == "dkim-signature" and len(facts.dkim_domains) < 8:
            match = _DKIM_D.search(value)
            if match is not None:
                facts.dkim_domains.append(match.group(1).lower().strip(".")[:255])


def extract_facts(msg: ParsedMessage, auth: Mapping[str, str] | None = None) -> MessageFacts:
    """Collect the classifier-relevant facts; bounded by :data:`MAX_URLS` and :data:`MAX_TEXT_CHARS`.

    ``auth`` (method: result, e.g. ``{"spf": "pass"}``) are the gateway's own results; the
    message's Authentication-Results fields are never read.
    """
    facts = MessageFacts(parsed=msg)
    facts.subject = _LIST_TAG.sub("", msg.header("subject"))[:500]
    display, address = split_address(msg.header("from"))
    facts.from_display = display[:200]
    facts.from_domain = address.rpartition("@")[2].lower().strip(">. ")[:255]
    facts.reply_to_domain = split_address(msg.header("reply-to"))[1].rpartition("@")[2].lower()[:255]
    facts.header_flags = _header_flags(msg)
    _bulk_headers(msg, facts)
    if auth is not None:
        facts.auth.update({method.lower(): result.lower() for method, result in auth.items()})
    chunks: list[str] = []
    urls: list[str] = []
    for part in msg.texts:
        if part.content_type == "text/html":
            facts.has_html = True
            summary = read_html(part.text[:MAX_TEXT_CHARS], max_links=MAX_URLS)
            facts.links.extend(summary.links)
            for tag, count in summary.tag_counts.items():
                facts.tag_counts[tag] = facts.tag_counts.get(tag, 0) + count
            facts.password_inputs += summary.password_inputs
            facts.hidden_text += summary.hidden_text
            facts.tracking_pixels += summary.tracking_pixels
            facts.html_chars += len(part.text)
            facts.html_text_chars += len(summary.text.strip())
            text = summary.text
            urls.extend(link.href for link in summary.links)
        else:
            facts.has_plain = True
            text = part.text
        chunks.append(text[:MAX_TEXT_CHARS])
    text = "\n".join(chunks)[:MAX_TEXT_CHARS]
    lowered = text.lower()
    if "http" in lowered or "www." in lowered:
        text = _take_urls(text, lowered, urls)
    if "@" in text:
        text = _strip_emails(text)
    facts.text = text
    seen: set[str] = set()
    for url in urls:
        if url.lower().startswith(("mailto:", "#", "cid:")):
            continue
        facts.url_count += 1
        host = url_host(url)
        if host and host not in seen and len(facts.hosts) < MAX_URLS:
            seen.add(host)
            facts.hosts.append(host)
    return facts
