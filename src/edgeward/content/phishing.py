"""Phishing cues and the phishing confidence level (PCL).

This module owns the hand-written phishing rules: each cue is a named finding with a fixed weight
(the SpamAssassin public corpus has no modern phishing to learn them from). The cue weights are
summed and mapped to a PCL on Exchange's 1-8 scale (1-3 neutral, 4-8 suspicious; see
``X-MS-Exchange-Organization-PCL``), so a single strong cue (a link whose text names one domain
while it goes to another) already reaches "suspicious", and PCL 8 needs several cues together.

Cues: link text naming a different domain than its href, IP-literal URLs, punycode/IDN hosts,
brand look-alike hosts (digit/letter swaps, brand inside an unrelated domain), a brand in the
From display name with an unrelated sender domain, credential forms (password inputs), credential
and urgency wording, ``user@host`` URLs, a Reply-To on another domain, and failed
spf/dkim/dmarc results of the gateway's own checks (never a client-sent header; see
:mod:`edgeward.content.facts`).
"""

from __future__ import annotations

import re

from edgeward.content.facts import MessageFacts, is_ip_literal, registered_domain, url_host

__all__ = ["BRANDS", "PHISH_WEIGHTS", "pcl_from_cues", "phishing_cues"]

# brand -> domains it legitimately sends from / links to.
BRANDS: dict[str, tuple[str, ...]] = {
    "paypal": ("paypal.com",),
    "apple": ("apple.com", "icloud.com"),
    "microsoft": ("microsoft.com", "office.com", "live.com", "outlook.com", "office365.com"),
    "office365": ("microsoft.com", "office.com", "office365.com"),
    "outlook": ("microsoft.com", "outlook.com", "live.com"),
    "amazon": ("amazon.com", "amazon.co.uk", "amazon.de", "amazonses.com"),
    "google": ("google.com", "gmail.com", "youtube.com"),
    "ebay": ("ebay.com", "ebay.co.uk", "ebay.de"),
    "netflix": ("netflix.com",),
    "chase": ("chase.com", "jpmorgan.com"),
    "citibank": ("citibank.com", "citi.com"),
    "wellsfargo": ("wellsfargo.com",),
    "bankofamerica": ("bankofamerica.com", "bofa.com"),
    "dhl": ("dhl.com", "dhl.de"),
    "fedex": ("fedex.com",),
    "usps": ("usps.com",),
    "docusign": ("docusign.com", "docusign.net"),
    "dropbox": ("dropbox.com",),
    "linkedin": ("linkedin.com",),
    "facebook": ("facebook.com", "facebookmail.com"),
    "instagram": ("instagram.com",),
    "adobe": ("adobe.com",),
    "irs": ("irs.gov",),
}

PHISH_WEIGHTS: dict[str, float] = {
    "PHISH_LINK_TEXT_MISMATCH": 3.0,
    "PHISH_LOOKALIKE_DOMAIN": 3.0,
    # Added by analyze() when the classifier knows the site's accepted domains (content.lookalike).
    "PHISH_LOOKALIKE_OWN_DOMAIN": 3.0,
    "PHISH_BRAND_DISPLAY_NAME": 2.5,
    "PHISH_CREDENTIAL_FORM": 2.5,
    "PHISH_URL_IP_LITERAL": 2.0,
    "PHISH_URL_PUNYCODE": 2.0,
    "PHISH_CREDENTIAL_WORDS": 1.5,
    "PHISH_AUTH_FAIL": 1.5,
    "PHISH_URGENCY": 1.0,
    "PHISH_URL_USERINFO": 1.0,
    "PHISH_REPLY_TO_OTHER_DOMAIN": 0.5,
}

_CONFUSABLE = str.maketrans({"0": "o", "1": "l", "3": "e", "5": "s", "4": "a", "7": "t", "@": "a"})
_DOMAIN_IN_TEXT = re.compile(r"(?:https?://)?((?:[a-z0-9-]{1,63}\.)+[a-z]{2,24})\b", re.I)
_BRAND_NAMES = re.compile("|".join(BRANDS))
_PHISH_WORD = re.compile(r"secure|login|signin|verify|account|update|support|billing|service|confirm")
_CREDENTIAL_HINTS = (
    "verif",
    "confirm",
    "updat",
    "validat",
    "unlock",
    "restor",
    "reactivat",
    "log",
    "sign",
    "social",
)
_URGENCY_HINTS = ("hours", "account", "unusual", "immediate", "failure", "final")
_CREDENTIAL = re.compile(
    r"\b(?:verify|confirm|update|validate|unlock|restore|reactivate)\s+(?:your\s+)?"
    r"(?:account|password|identity|billing|payment|login|credentials|card|mailbox)|"
    r"\b(?:log\s?in|sign\s?in)\s+(?:to\s+)?(?:your\s+)?account\b|\bsocial security number\b"
)
# No leading \b: the alternatives then start with literals the engine can skip ahead to (about
# 3x faster on long text); _starts_word checks the boundary instead.
_URGENCY = re.compile(
    r"(?:within\s+(?:24|48|72)\s+hours|account\s+(?:has\s+been\s+|will\s+be\s+)?"
    r"(?:suspended|locked|disabled|limited|closed|terminated)|unusual\s+(?:sign-in\s+)?activity|"
    r"immediate(?:ly)?\s+action|failure\s+to\s+(?:comply|verify|respond)|final\s+(?:notice|warning))"
)


def _has_any(text: str, hints: tuple[str, ...]) -> bool:
    """Whether any of ``hints`` occurs in ``text``.

    A hint's first letter is looked for first: finding one character is a plain scan, while a
    word is searched with skips of its own length at most, so a long text without the letter (a
    non-Latin script, long runs of one character) is read in a fraction of the time; text that
    has the letter finds it early and pays little more."""
    return any(hint[0] in text and hint in text for hint in hints)


def _starts_word(pattern: re.Pattern[str], text: str) -> bool:
    """Whether ``pattern`` matches in ``text`` at a word start (like a leading ``\\b``)."""
    match = pattern.search(text)
    while match is not None:
        start = match.start()
        if start == 0 or not (text[start - 1].isalnum() or text[start - 1] == "_"):
            return True
        match = pattern.search(text, start + 1)
    return False


def _brand_of(label_text: str) -> str | None:
    squashed = re.sub(r"[^a-z0-9@]", "", label_text.lower())
    plain = squashed.translate(_CONFUSABLE).replace("rn", "m").replace("vv", "w")
    for brand in BRANDS:
        if brand in plain:
            return brand
    return None


def _is_brand_domain(brand: str, domain: str) -> bool:
    return any(domain == d or domain.endswith("." + d) for d in BRANDS[brand])


def _lookalike(host: str) -> bool:
    """A host posing as a brand's: a brand's own domain embedded in another domain
    (``paypal.com.secure-login.net``), a digit/letter swap (``paypa1``, ``rnicrosoft``), or the
    brand joined to phishing words (``paypal-verify``, ``secureapple``). A brand merely appearing
    inside an unrelated name (``applecore.example``) is not enough: that is common in ham.
    """
    host = host.lower()
    if host.startswith("xn--") or ".xn--" in host:
        return False  # reported as PHISH_URL_PUNYCODE instead
    normalised = host.translate(_CONFUSABLE).replace("rn", "m").replace("vv", "w")
    if _BRAND_NAMES.search(normalised) is None:
        return False
    domain = registered_domain(host)
    labels = host.split(".")
    for brand, legit in BRANDS.items():
        if _is_brand_domain(brand, domain):
            continue
        if any(f".{d}." in f".{host}" and not host.endswith(d) for d in legit):
            return True
        for label in labels:
            plain = label.translate(_CONFUSABLE).replace("rn", "m").replace("vv", "w")
            if plain == brand and label != brand:
                return True
            if brand in plain and plain != brand and _PHISH_WORD.search(plain.replace(brand, " ")):
                return True
    return False


def _link_mismatch(facts: MessageFacts) -> bool:
    """Link text that is itself a URL (``http...``/``www...``) on a different registrable domain
    than the href. Text that merely mentions a domain ("Visit Example.com") is not counted:
    newsletters route such links through click trackers all the time.
    """
    for link in facts.links:
        if not link.href.lower().startswith(("http://", "https://", "www.")):
            continue
        text = link.text.strip().lower()
        if not text.startswith(("http://", "https://", "www.")):
            continue
        match = _DOMAIN_IN_TEXT.match(text)
        href_host = url_host(link.href)
        if match is None or not href_host:
            continue
        if registered_domain(match.group(1)) != registered_domain(href_host):
            return True
    return False


def phishing_cues(facts: MessageFacts) -> list[str]:
    """Names of the phishing cues present in ``facts`` (each at most once)."""
    cues: list[str] = []
    if _link_mismatch(facts):
        cues.append("PHISH_LINK_TEXT_MISMATCH")
    hosts = facts.hosts
    if any(is_ip_literal(h) for h in hosts):
        cues.append("PHISH_URL_IP_LITERAL")
    if any(h.startswith("xn--") or ".xn--" in h or not h.isascii() for h in hosts):
        cues.append("PHISH_URL_PUNYCODE")
    if any(_lookalike(h) for h in hosts) or (facts.from_domain and _lookalike(facts.from_domain)):
        cues.append("PHISH_LOOKALIKE_DOMAIN")
    brand = _brand_of(facts.from_display) if facts.from_display else None
    if brand is not None and facts.from_domain and not _is_brand_domain(brand, facts.from_domain):
        cues.append("PHISH_BRAND_DISPLAY_NAME")
    if facts.password_inputs:
        cues.append("PHISH_CREDENTIAL_FORM")
    # Cheap substring tests first: most mail has none of the anchor words, and the patterns
    # themselves cannot skip ahead on a literal prefix.
    words = (facts.subject + "\n" + facts.text).lower()
    if _has_any(words, _CREDENTIAL_HINTS) and _CREDENTIAL.search(words):
        cues.append("PHISH_CREDENTIAL_WORDS")
    if _has_any(words, _URGENCY_HINTS) and _starts_word(_URGENCY, words):
        cues.append("PHISH_URGENCY")
    if any(
        "@" in link.href.split("//", 1)[-1].split("/", 1)[0]
        for link in facts.links
        if link.href.lower().startswith(("http://", "https://"))
    ):
        cues.append("PHISH_URL_USERINFO")
    if (
        facts.reply_to_domain
        and facts.from_domain
        and registered_domain(facts.reply_to_domain) != registered_domain(facts.from_domain)
    ):
        cues.append("PHISH_REPLY_TO_OTHER_DOMAIN")
    if any(facts.auth.get(method) == "fail" for method in ("spf", "dkim", "dmarc")):
        cues.append("PHISH_AUTH_FAIL")
    return cues


def pcl_from_cues(cues: list[str]) -> tuple[int, float]:
    """Map cues to (PCL 1-8, summed weight). PCL = 1 + floor(weight), capped at 8."""
    weight = sum(PHISH_WEIGHTS[c] for c in cues)
    return min(8, 1 + int(weight)), weight
