"""One pass over a raw message: parse, collect facts, phishing cues and model features.

This module owns :func:`analyze`, the single entry point shared by training, scoring and
learning, so that the three can never disagree about what a message's features are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edgeward.content.facts import MessageFacts, extract_facts
from edgeward.content.features import message_features
from edgeward.content.lookalike import Lookalike, OwnDomains, own_lookalikes
from edgeward.content.mime import ParsedMessage, ParseLimits, parse_message
from edgeward.content.phishing import phishing_cues

__all__ = ["GTUBE", "Analysis", "analyze"]

# The Generic Test for Unsolicited Bulk Email (SpamAssassin); must always give SCL 9.
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@dataclass(frozen=True)
class Analysis:
    """``features`` holds the word block first and the fact block last (its ``fact_count``
    features), the order the model's two scales expect."""

    facts: MessageFacts
    cues: tuple[str, ...]
    features: tuple[str, ...]
    gtube: bool
    fact_count: int = 0
    lookalikes: tuple[Lookalike, ...] = ()


def analyze(
    raw: bytes,
    limits: ParseLimits | None = None,
    parsed: ParsedMessage | None = None,
    auth: Mapping[str, str] | None = None,
    own: OwnDomains | None = None,
) -> Analysis:
    """Analyse ``raw`` (or its ``parsed`` form, when a caller parsed it already); never raises.

    ``auth``: the sender-authentication results the gateway found (``facts.extract_facts``);
    ``own``: the site's accepted domains, whose look-alikes are a phishing cue.
    """
    facts = extract_facts(parsed if parsed is not None else parse_message(raw, limits), auth)
    cues = phishing_cues(facts)
    lookalikes = own_lookalikes(facts, own) if own is not None else ()
    if lookalikes:
        cues.append("PHISH_LOOKALIKE_OWN_DOMAIN")
    words, fact_features = message_features(facts, cues)
    # GTUBE is searched in the raw bytes too: it must fire even inside an encoded part.
    gtube = GTUBE in raw or GTUBE.decode() in facts.text
    features = (*words, *fact_features)
    return Analysis(facts, tuple(cues), features, gtube, len(fact_features), lookalikes)
