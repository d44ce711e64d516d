"""HTML to text, links and structure, for classification only (never for display).

This module owns reading an HTML body with regular expressions: the visible text, every
``<a href>`` with its link text, and counts of the structural tells that spam and phishing use
(images, forms, password fields, hidden text, tables, font tags). It does not build a DOM: that
is slower and no more robust against deliberately broken markup.

Security: the input is bounded by the caller (:class:`~edgeward.content.mime.ParseLimits`);
every pattern here is linear (no nested quantifiers) so hostile markup cannot cause backtracking.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["HtmlSummary", "Link", "read_html"]


@dataclass(frozen=True)
class Link:
    """One anchor: where it points and what the reader sees."""

    href: str
    text: str


@dataclass
class HtmlSummary:
    text: str = ""
    links: list[Link] = field(default_factory=list)
    tag_counts: dict[str, int] = field(default_factory=dict)
    password_inputs: int = 0
    hidden_text: int = 0
    # Images of at most 2x2 pixels (width or height attribute, or CSS): open-tracking beacons.
    tracking_pixels: int = 0


_DROP = re.compile(r"<(script|style|head|title)\b[^>]*>.*?</\1\s*>|<!--.*?-->", re.I | re.S)
_ANCHOR = re.compile(r"<a\b([^>]*)>(.*?)</a\s*>", re.I | re.S)
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)
_TAG = re.compile(r"<\s*/?\s*([a-zA-Z][a-zA-Z0-9]*)[^>]*>")
_COUNTED = frozenset({"img", "form", "table", "font", "input", "iframe", "script", "a", "center", "b"})
# _TAG's matches, each as its name, or "" for one that begins "</": the look-ahead reads that
# slash without consuming it, so every match spans what _TAG's does.
_OPENING_NAME = re.compile(
    r"<(?!/)\s*/?\s*([a-zA-Z][a-zA-Z0-9]*)[^>]*>"  # _TAG where "<" is not followed by "/"
    r"|<\s*/?\s*(?:[a-zA-Z][a-zA-Z0-9]*)[^>]*>"  # _TAG itself, its name not captured
)
# Matched against the lower-cased source without re.I, one pattern per tell: a case-insensitive
# alternation cannot skip ahead on a literal prefix and was the slowest step of reading HTML.
_PASSWORD = re.compile(r"<input\b[^>]*type\s*=\s*[\"']?password")
_HIDDEN = (
    re.compile(r"display\s*:\s*none"),
    re.compile(r"visibility\s*:\s*hidden"),
    re.compile(r"font-size\s*:\s*[01](?:px|pt)?\b"),
    re.compile(r"<font[^>]*size\s*=\s*[\"']?[01]\b"),
)
_PIXEL = re.compile(r"<img\b[^>]*?\b(?:width|height)\s*[=:]\s*[\"']?[012](?:px)?[\"';\s/>]")
_BLOCK = re.compile(r"<\s*(?:br|p|div|tr|li|h[1-6])\b[^>]*>", re.I)
_SPACE = re.compile(r"[ \t\r\f\v]+")


def _strip_tags(fragment: str) -> str:
    return html.unescape(_TAG.sub(" ", fragment))


def read_html(source: str, max_links: int = 200) -> HtmlSummary:
    """Summarise an HTML body; bounded by ``max_links`` anchors."""
    summary = HtmlSummary()
    # Counting happens on the full source: scripts and styles are themselves evidence. Only the
    # names of tags that do not begin "</" are counted; the rest of the tag is skipped as _TAG
    # skips it, and Counter counts in C what a loop over match objects did per tag.
    names = Counter(map(str.lower, _OPENING_NAME.findall(source)))
    summary.tag_counts = {name: n for name, n in names.items() if name in _COUNTED}
    lowered = source.lower()
    # Substring tests first: these patterns cannot skip ahead on a literal prefix.
    if "password" in lowered:
        summary.password_inputs = len(_PASSWORD.findall(lowered))
    if "size" in lowered or "display" in lowered or "visibility" in lowered:
        summary.hidden_text = sum(len(pattern.findall(lowered)) for pattern in _HIDDEN)
    if "<img" in lowered:
        summary.tracking_pixels = len(_PIXEL.findall(lowered))
    body = _DROP.sub(" ", source)
    for match in _ANCHOR.finditer(body):
        if len(summary.links) >= max_links:
            break
        href_match = _HREF.search(match.group(1))
        if href_match is None:
            continue
        href = html.unescape(next(g for g in href_match.groups() if g is not None)).strip()
        summary.links.append(Link(href, _SPACE.sub(" ", _strip_tags(match.group(2))).strip()))
    text = _BLOCK.sub("\n", body)
    summary.text = _SPACE.sub(" ", _strip_tags(text))
    return summary
