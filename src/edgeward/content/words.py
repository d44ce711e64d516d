"""Custom good words and bad words (Exchange's ``Add-ContentFilterPhrase``).

This module owns :class:`CustomWords`: up to :data:`MAX_PHRASES` good phrases (a match forces
SCL 0) and as many bad phrases (a match forces SCL 9), matched case-insensitively on whole words
in the subject and the visible text. Good words win over bad words, as in Exchange, so an
operator can always rescue a known-good sender's wording.

Matching is one compiled alternation per list (the regex engine's trie-like prefix sharing keeps
it fast); phrases are escaped, so an operator's phrase can never be a pattern. Whitespace inside a
phrase matches any run of whitespace, so line breaks in a message do not hide a phrase.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MAX_PHRASES", "MAX_PHRASE_CHARS", "CustomWords"]

MAX_PHRASES = 800
MAX_PHRASE_CHARS = 128


def _compile(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    if not phrases:
        return None
    # Longest first so that overlapping phrases report the most specific one.
    parts = [r"\s+".join(re.escape(w) for w in p.split()) for p in sorted(phrases, key=len, reverse=True)]
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE)


def _clean(phrases: Iterable[str], kind: str) -> tuple[str, ...]:
    out: list[str] = []
    seen: set[str] = set()
    for phrase in phrases:
        normal = " ".join(phrase.split())
        if not normal:
            continue
        if len(normal) > MAX_PHRASE_CHARS:
            raise ValueError(f"{kind} phrase longer than {MAX_PHRASE_CHARS} characters: {normal[:40]}...")
        if normal.casefold() not in seen:
            seen.add(normal.casefold())
            out.append(normal)
    if len(out) > MAX_PHRASES:
        raise ValueError(f"at most {MAX_PHRASES} {kind} phrases are allowed, got {len(out)}")
    return tuple(out)


class CustomWords:
    """Operator phrase lists, validated and compiled once; treat as immutable."""

    __slots__ = ("_bad_re", "_good_re", "bad", "good")

    def __init__(self, good: Iterable[str] = (), bad: Iterable[str] = ()) -> None:
        self.good: tuple[str, ...] = _clean(good, "good")
        self.bad: tuple[str, ...] = _clean(bad, "bad")
        self._good_re = _compile(self.good)
        self._bad_re = _compile(self.bad)

    def __bool__(self) -> bool:
        return bool(self.good or self.bad)

    def match(self, *texts: str) -> tuple[str, str] | None:
        """``("good", phrase)`` or ``("bad", phrase)`` for the first list that matches, else None."""
        for kind, pattern in (("good", self._good_re), ("bad", self._bad_re)):
            if pattern is None:
                continue
            for text in texts:
                found = pattern.search(text)
                if found is not None:
                    return kind, found.group(0)
        return None
