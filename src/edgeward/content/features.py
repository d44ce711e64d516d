"""Feature strings for the spam model.

This module owns the vocabulary the model sees. A message becomes a set of short strings with a
one-letter namespace, each later hashed into a fixed-size weight vector:

* ``w:`` body words, ``b:`` adjacent word pairs, ``s:`` subject words, ``d:`` From display-name words;
* ``u:`` URL facts: registrable domains, top-level domains, IP literals, punycode hosts,
  shorteners, counts of URLs and of distinct domains;
* ``h:`` HTML structure (HTML-only, tag counts in buckets, hidden text, shown-text-to-markup
  ratio, images with almost no text, tracking pixels);
* ``m:`` MIME structure, charsets, transfer encodings, attachment types, parser anomalies;
* ``x:`` header facts (missing Date/Message-ID, reply, priority), header consistency (an
  address of another domain in the From display name, a free-mail Reply-To under a company From);
* ``k:`` bulk-mail conventions (List-Unsubscribe, RFC 8058 one-click, Feedback-ID, Precedence,
  a DKIM-Signature and whether its ``d=`` aligns with the From domain);
* ``p:`` phishing cues (see :mod:`edgeward.content.phishing`).

The features come in two blocks (:class:`Features`): *words* (``w:``, ``b:``, ``s:``, ``d:`` and
the link domains ``u:d:``, ``u:tld:``), whose number grows with the length of the message, and
*facts* (every other namespace: structure, headers, bulk conventions, URL counts, cues), of which
a message has a few dozen whatever its length. The model scales the two differently
(:mod:`edgeward.content.model`), so a long newsletter's DKIM alignment or one-click unsubscribe
weighs as much as a short note's.

What is deliberately *not* here is listed in :mod:`edgeward.content.facts`. Host names that exist
only because a corpus obfuscated addresses (``spamassassin.taint.org``, ``example.sourceforge.net``)
are dropped, so that obfuscation does not move a score.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import NamedTuple

from edgeward.content.facts import MessageFacts, is_ip_literal, registered_domain

__all__ = ["MAX_WORDS", "Features", "message_features"]

MAX_WORDS = 3000
_WORD = re.compile(r"[^\W_](?:[\w'$€£.-]{0,22}[\w$€£])?", re.UNICODE)
_DIGITS = re.compile(r"\d")
# For ASCII text, where ``\d`` is 0-9: str.translate does what _DIGITS.sub does, 10 to 40 times
# faster on text with numbers (receipts, statements), where the pattern stops at every digit.
_ASCII_DIGITS = str.maketrans("012345678", "999999999")
_SPACE = re.compile(r"[ \t\r\n]")
# Characters of text lowered and scanned at a time for words (``_words``).
_STEP = 8192
_OBFUSCATION_SUFFIXES = ("spamassassin.taint.org", "example.sourceforge.net", "example.com")
# Words that only name the training corpus itself (its project, its obfuscation domain).
_CORPUS_WORDS = ("spamassassin", "taint.org", "zzzz")
# Structure that is normal in current mail (most of which is HTML, QP or base64 and UTF-8) but
# was rare in the 2002 ham of the training corpus; as features they would teach "modern = spam".
_COMMON_TYPES = frozenset({"text/plain", "text/html", "multipart/alternative", "multipart/mixed"})
_COMMON_CHARSETS = frozenset({"us-ascii", "utf-8", "iso-8859-1", "iso-8859-15", "windows-1252"})
SHORTENERS = frozenset({
    "bit.ly", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "buff.ly", "rebrand.ly", "cutt.ly",
    "shorturl.at", "rb.gy", "tiny.cc", "t.ly", "bl.ink", "lnkd.in", "s.id", "v.gd", "shorte.st",
})  # fmt: skip
FREEMAIL = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "hotmail.com", "outlook.com",
    "live.com", "msn.com", "aol.com", "icloud.com", "me.com", "mail.com", "gmx.com", "gmx.de",
    "gmx.net", "web.de", "yandex.com", "yandex.ru", "mail.ru", "proton.me", "protonmail.com",
    "zoho.com", "qq.com", "163.com", "126.com", "inbox.com",
})  # fmt: skip
# Cues that rest on the gateway's own results or configuration, absent from every training
# message: they count in the phishing level, not in the model.
_UNTRAINED_CUES = frozenset({"PHISH_AUTH_FAIL", "PHISH_LOOKALIKE_OWN_DOMAIN"})
_DISPLAY_ADDRESS = re.compile(r"[\w.+-]+@([\w-]+(?:\.[\w-]+)+)")


def _bucket(n: int) -> str:
    """Coarse log-scale bucket so counts generalise (0, 1, 2-3, 4-7, 8-15, ...)."""
    return str(n.bit_length())


def _words(text: str, limit: int = MAX_WORDS, step: int = _STEP) -> list[str]:
    """The first ``limit`` words of the first ``limit * 40`` characters of the lowered text.

    The text is read in pieces of about ``step`` characters, each cut just before white space,
    until ``limit`` words are found: prose holds 3000 words in about 20 KB, so a 100 KB text is
    not lowered and scanned to its end. Cutting there changes nothing. A word never contains
    white space, so no word spans two pieces; and ``str.lower`` is per character but for the
    final sigma, whose look-around over case-ignorable characters stops at white space, which
    is neither cased nor case-ignorable. A piece is lowered and scanned as the whole would be.
    """
    window = limit * 40
    words: list[str] = []
    begin, seen, marked = 0, 0, False
    while begin < len(text) and seen < window and len(words) < limit:
        cut = _SPACE.search(text, begin + step)
        end = len(text) if cut is None else cut.start()
        # Digits become "9": numbers are mostly noise (dates, prices, ids), their shape is not.
        lowered = text[begin:end].lower()
        lowered = lowered.translate(_ASCII_DIGITS) if lowered.isascii() else _DIGITS.sub("9", lowered)
        words += _WORD.findall(lowered, 0, window - seen)
        marked = marked or any(marker in lowered for marker in _CORPUS_WORDS)
        begin, seen = end, seen + len(lowered)
    del words[limit:]
    # A marker in no piece read is in none of their words: only a read piece can call for this.
    if marked:
        words = [w for w in words if not any(marker in w for marker in _CORPUS_WORDS)]
    return words


class Features(NamedTuple):
    """The distinct feature strings of one message: the word block and the fact block."""

    words: list[str]
    facts: list[str]


def _text_features(facts: MessageFacts, feats: set[str], meta: set[str]) -> None:
    words = _words(facts.text)
    # The hottest loop of scoring. A bound str method under map() costs no Python frame per
    # word; for the pairs an f-string, built by one opcode, takes half the time str.format
    # takes parsing its format string on every call.
    feats.update(map("w:".__add__, words))
    feats.update([f"b:{first}_{second}" for first, second in pairwise(words)])
    feats.update(map("s:".__add__, _words(facts.subject)))
    feats.update(map("d:".__add__, _words(facts.from_display)))
    meta.add("x:textlen:" + _bucket(len(facts.text) // 64))
    letters = [c for c in facts.subject if c.isalpha()]
    if len(letters) >= 8 and sum(c.isupper() for c in letters) > 0.7 * len(letters):
        meta.add("x:subject_caps")
    if facts.subject.count("!") >= 2:
        meta.add("x:subject_bangs")
    if not facts.subject.strip():
        meta.add("x:subject_empty")
    if facts.text.count("!") >= 5:
        meta.add("x:text_bangs")


def _url_features(facts: MessageFacts, feats: set[str], meta: set[str]) -> None:
    meta.add("u:count:" + _bucket(facts.url_count))
    domains: set[str] = set()
    for host in facts.hosts:
        if host.endswith(_OBFUSCATION_SUFFIXES):
            continue
        if is_ip_literal(host):
            meta.add("u:ip")
            continue
        domain = registered_domain(host)
        domains.add(domain)
        feats.add("u:d:" + domain)
        feats.add("u:tld:" + domain.rsplit(".", 1)[-1])
        if "xn--" in host:
            meta.add("u:punycode")
        if domain in SHORTENERS or host in SHORTENERS:
            meta.add("u:shortener")
    meta.add("u:hosts:" + _bucket(len(facts.hosts)))
    meta.add("u:domains:" + _bucket(len(domains)))


def _structure_features(facts: MessageFacts, feats: set[str]) -> None:
    msg = facts.parsed
    if facts.has_html:
        if not facts.has_plain:
            feats.add("h:html_only")
        for tag, count in facts.tag_counts.items():
            feats.add(f"h:{tag}:{_bucket(count)}")
        if facts.hidden_text:
            feats.add("h:hidden_text")
        if facts.tracking_pixels:
            feats.add("h:tracking_pixel")
        # Tenths of shown text per markup character, capped: a newsletter is mostly markup, a
        # hand-written HTML mail mostly text; both ends and the middle say something.
        ratio = facts.html_text_chars / max(1, facts.html_chars)
        feats.add("h:text_ratio:" + str(min(5, int(ratio * 10))))
        if facts.tag_counts.get("img", 0) and facts.html_text_chars < 200 and not facts.has_plain:
            feats.add("h:images_only")
    feats.add("m:parts:" + _bucket(len(msg.structure)))
    feats.update("m:t:" + ctype for ctype in msg.structure[:16] if ctype not in _COMMON_TYPES)
    feats.update("m:cs:" + cs for cs in msg.charsets[:8] if cs not in _COMMON_CHARSETS)
    feats.update("m:att:" + ext for ext in msg.attachment_exts[:8])
    feats.update("m:" + anomaly for anomaly in msg.anomalies)


def _header_features(facts: MessageFacts, feats: set[str]) -> None:
    feats.update("x:" + flag for flag in facts.header_flags)
    # The sender's TLD is not a feature: in the corpus ".com" senders are mostly spam and ".org"
    # mostly list ham, which says nothing about today's mail.
    if not facts.from_domain:
        feats.add("x:from_no_domain")
    # No x:auth: features: no training message carries this gateway's SPF/DKIM/DMARC results, so
    # their weights could never be learned (only hash collisions would give them one). The score
    # table adds the authentication findings to the SCL instead (docs/content-model.md).
    from_domain = registered_domain(facts.from_domain) if facts.from_domain else ""
    if "@" in facts.from_display:
        shown = _DISPLAY_ADDRESS.search(facts.from_display)
        if shown is not None and registered_domain(shown.group(1)) != from_domain:
            feats.add("x:display_address_other_domain")
    if facts.reply_to_domain:
        reply_to = registered_domain(facts.reply_to_domain)
        if reply_to != from_domain:
            feats.add("x:reply_to_other_domain")
            if reply_to in FREEMAIL and from_domain not in FREEMAIL:
                feats.add("x:reply_to_freemail_company_from")


def _bulk_features(facts: MessageFacts, feats: set[str]) -> None:
    if facts.list_unsubscribe:
        feats.add("k:list_unsubscribe")
        if facts.one_click_unsubscribe:
            feats.add("k:one_click_unsubscribe")
    if facts.feedback_id:
        feats.add("k:feedback_id")
    if facts.precedence in ("bulk", "list", "junk"):
        feats.add("k:precedence:" + facts.precedence)
    if facts.dkim_domains:
        feats.add("k:dkim_signature")
        # Without a From domain there is nothing to align with; x:from_no_domain says that.
        if facts.from_domain:
            from_domain = registered_domain(facts.from_domain)
            aligned = any(registered_domain(d) == from_domain for d in facts.dkim_domains)
            feats.add("k:dkim_aligned" if aligned else "k:dkim_unaligned")


def message_features(facts: MessageFacts, cues: list[str]) -> Features:
    """The distinct feature strings of one message (each block in no particular order)."""
    words: set[str] = set()
    meta: set[str] = set()
    _text_features(facts, words, meta)
    _url_features(facts, words, meta)
    _structure_features(facts, meta)
    _header_features(facts, meta)
    _bulk_features(facts, meta)
    meta.update("p:" + cue for cue in cues if cue not in _UNTRAINED_CUES)
    return Features(list(words), list(meta))
