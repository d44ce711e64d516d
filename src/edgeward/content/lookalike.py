"""Look-alikes of the site's own accepted domains in link hosts, From and Reply-To.

This module owns :class:`OwnDomains`: built from the configuration's accepted domains, it tells
whether a host name imitates one of them without being it. A host under an accepted domain's
registrable domain (``example.com``, ``mail.example.com``) is the site's own and never a
look-alike. The tricks recognised, on the registrable domain of the host (Public Suffix List):

* **homoglyphs and punycode**: the name reads the same once every character is replaced by the
  ASCII letter it is confusable with (Unicode's confusables data, through
  ``confusable_homoglyphs``; ``xn--`` labels decoded first), digits posing as letters
  (``examp1e``, ``ex4mple``) and letter pairs posing as one (``rn`` for ``m``, ``vv`` for
  ``w``);
* **edit distance**: one typing slip (insert, delete, substitute or swap two neighbours: the
  optimal string alignment distance of ``rapidfuzz``) in a name of at least
  :data:`MIN_TYPO_LENGTH` characters, two in a name of at least :data:`MIN_TWO_TYPOS_LENGTH`; the
  same name under a public suffix one slip away (``example.co`` for ``example.com``) too;
* **hyphen tricks**: the name joined to a word by a hyphen (``example-login.com``,
  ``secure-example.com``, ``example-com.net``) or split by one (``exa-mple.com``);
* **sub-domain tricks**: the accepted domain written as the left part of another domain
  (``example.com.account-check.net``, ``example.com-secure.net``).

Decided, not reported: the same name under an unrelated suffix (``example.net`` for
``example.com``): organisations often hold several, and the sender-authentication checks judge
mail from them. Names shorter than :data:`MIN_NAME_LENGTH` are too short to imitate meaningfully.

The classifier reports a hit as the phishing cue ``PHISH_LOOKALIKE_OWN_DOMAIN`` (it counts in
the PCL) and the content filter as the finding ``LOOKALIKE_OWN_DOMAIN`` (weighed by the score
table); neither enters the spam model, which never saw the site's domains.
"""

from __future__ import annotations

import contextlib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from confusable_homoglyphs import confusables
from rapidfuzz.distance import OSA

from edgeward.content.facts import MessageFacts
from edgeward.suffixes import public_suffix_list

__all__ = [
    "MIN_NAME_LENGTH",
    "MIN_TWO_TYPOS_LENGTH",
    "MIN_TYPO_LENGTH",
    "Lookalike",
    "OwnDomains",
    "own_lookalikes",
    "skeleton",
]

MIN_NAME_LENGTH = 4
MIN_TYPO_LENGTH = 5
MIN_TWO_TYPOS_LENGTH = 10
# At most this many distinct link hosts are tested: a message with more is bulk mail, and the
# From and Reply-To domains, where impersonation sits, are always tested.
MAX_HOSTS = 40
_DIGITS_AS_LETTERS = str.maketrans({"0": "o", "1": "l", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b"})


@cache
def _ascii_twin(char: str) -> str:
    """The ASCII letter or digit ``char`` is confusable with, or ``char`` itself."""
    found = confusables.is_confusable(char, preferred_aliases=["latin"], greedy=True) or []
    for hit in found:
        for glyph in hit.get("homoglyphs", []):
            twin = str(glyph.get("c", ""))
            if len(twin) == 1 and twin.isascii() and twin.isalnum():
                return twin.lower()
    return char


def _unicode_labels(host: str) -> str:
    labels = []
    for label in host.split("."):
        if label.startswith("xn--"):
            # A broken punycode label is compared as written.
            with contextlib.suppress(UnicodeError):
                label = label.encode("ascii").decode("idna")
        labels.append(label)
    return ".".join(labels)


def skeleton(name: str) -> str:
    """``name`` as it reads: confusable characters to ASCII, digits to letters, ``rn`` to ``m``."""
    text = unicodedata.normalize("NFKC", name).lower()
    if not text.isascii():
        # Accents off first (ä reads as a), then what is left to its confusable twin.
        bare = (c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
        text = "".join(c if c.isascii() else _ascii_twin(c) for c in bare)
    return text.translate(_DIGITS_AS_LETTERS).replace("rn", "m").replace("vv", "w")


@dataclass(frozen=True, slots=True)
class _Own:
    domain: str  # registrable, ASCII: example.co.uk
    name: str  # the label left of the public suffix: example
    suffix: str  # co.uk
    shape: str  # skeleton(name)


@dataclass(frozen=True, slots=True)
class Lookalike:
    """``host`` (found ``where``: link, from, reply-to) imitates the accepted ``domain`` by ``trick``."""

    host: str
    domain: str
    trick: str
    where: str = "link"

    def describe(self) -> str:
        return f"{self.where} {self.host} imitates {self.domain} ({self.trick})"


class OwnDomains:
    """The registrable domains of the accepted domains, and the look-alike test against them."""

    def __init__(self, accepted: Iterable[str]) -> None:
        owns: dict[str, _Own] = {}
        for entry in accepted:
            domain = entry.strip().lower().rstrip(".").removeprefix("*.")
            if not domain or domain == "*":
                continue
            registrable = public_suffix_list().privatesuffix(domain) or domain
            name, _, suffix = registrable.partition(".")
            if len(name) >= MIN_NAME_LENGTH:
                owns[registrable] = _Own(registrable, name, suffix, skeleton(name))
        self._owns = tuple(owns.values())
        self._registrable = frozenset(owns)

    def __bool__(self) -> bool:
        return bool(self._owns)

    def lookalike(self, host: str) -> Lookalike | None:
        """The first accepted domain ``host`` imitates, or ``None`` (also for the site's own)."""
        host = host.strip().lower().rstrip(".")
        if not self._owns or not host or "." not in host or host[-1].isdigit() or ":" in host:
            return None  # no accepted domains, or an address literal (a cue of its own)
        ascii_host = host
        if not host.isascii():
            try:
                ascii_host = host.encode("idna").decode("ascii")
            except UnicodeError:
                ascii_host = host
        registrable = public_suffix_list().privatesuffix(ascii_host) or ascii_host
        if registrable in self._registrable:
            return None
        name, _, suffix = _unicode_labels(registrable).partition(".")
        shown = _unicode_labels(ascii_host)
        for own in self._owns:
            trick = _trick(own, name, suffix, shown)
            if trick is not None:
                return Lookalike(host, own.domain, trick)
        return None


def _trick(own: _Own, name: str, suffix: str, host: str) -> str | None:
    shape = skeleton(name)
    if name != own.name and shape == own.shape:
        return "homoglyph"
    if name == own.name:
        # The same name: a suffix one slip away is a typo-squat, another suffix is left alone.
        return "suffix" if OSA.distance(suffix, own.suffix) == 1 else None
    limit = 2 if len(own.name) >= MIN_TWO_TYPOS_LENGTH else 1 if len(own.name) >= MIN_TYPO_LENGTH else 0
    if limit and OSA.distance(shape, own.shape, score_cutoff=limit) <= limit:
        return "typo"
    parts = shape.split("-")
    if len(parts) > 1 and (own.shape in parts or "".join(parts) == own.shape):
        return "hyphen"
    # The whole accepted domain, on label boundaries, left of a registrable domain that is not it.
    written = f".{skeleton(host)}."
    own_domain = f".{own.shape}.{skeleton(own.suffix)}"
    if f"{own_domain}." in written or f"{own_domain}-" in written:
        return "subdomain"
    return None


def own_lookalikes(facts: MessageFacts, own: OwnDomains) -> tuple[Lookalike, ...]:
    """Every look-alike of an accepted domain among From, Reply-To and the link hosts."""
    if not own:
        return ()
    found: list[Lookalike] = []
    for where, host in (("from", facts.from_domain), ("reply-to", facts.reply_to_domain)):
        hit = own.lookalike(host) if host else None
        if hit is not None:
            found.append(Lookalike(hit.host, hit.domain, hit.trick, where))
    for host in facts.hosts[:MAX_HOSTS]:
        hit = own.lookalike(host)
        if hit is not None:
            found.append(hit)
    return tuple(found)
