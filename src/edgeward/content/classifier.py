"""The content classifier the gateway calls: raw message in, :class:`ContentVerdict` out.

This module owns :class:`SpamClassifier` (load, score, learn) and the mapping of a calibrated spam
probability to Exchange's spam confidence level (SCL 0-9) and of phishing cues to the phishing
confidence level (PCL 1-8, Exchange's scale: 1-3 neutral, 4-8 suspicious).

Decision order in :meth:`SpamClassifier.score`, first match wins:

1. GTUBE anywhere in the message: SCL 9 (finding ``GTUBE``).
2. A custom good phrase: SCL 0 (``CUSTOM_GOOD_WORD``); else a custom bad phrase: SCL 9
   (``CUSTOM_BAD_WORD``). Good words win, as in Exchange.
3. The model's probability mapped through :data:`SCL_CUTS`; a PCL of 8 (several strong phishing
   cues together) raises the SCL to at least :data:`HIGH_PCL_SCL`, at which content alone is
   rejected by default (``PHISH_HIGH_PCL``).

Learning (:meth:`SpamClassifier.learn`) updates the live model in a :class:`ModelStateStore` when
one is given (read, update, write with optimistic versioning), else only in memory; it is a no-op
when the classifier was built with ``learning=False``.

A classifier built with a ``refresh_interval`` picks up what other processes taught the shared
model: :meth:`SpamClassifier.refresh_if_due`, called before scoring, asks the store for the
model's version at most once per interval and reloads the model when it changed, so the running
gateway follows ``edgeward spam learn`` and quarantine releases without a SIGHUP. A store that
cannot be read leaves the current model in use (logged), never failing the message.

Usage::

    classifier = SpamClassifier.load()                       # the shipped default model
    verdict = classifier.score(raw_bytes)                    # ContentVerdict(probability, scl, pcl, findings)
    classifier.learn(raw_bytes, is_spam=True)                # a user reported it as spam
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from edgeward.content.analyze import analyze
from edgeward.content.lookalike import Lookalike, OwnDomains
from edgeward.content.mime import ParsedMessage
from edgeward.content.model import LinearModel, feature_slots
from edgeward.content.phishing import PHISH_WEIGHTS, pcl_from_cues
from edgeward.content.state import ModelStateStore, StaleModelError
from edgeward.content.words import CustomWords
from edgeward.ports import Clock, SystemClock

__all__ = ["SCL_CUTS", "ContentVerdict", "SpamClassifier", "default_model_path", "scl_from_probability"]

# Probability at which each SCL from 1 to 9 starts. SCL 7 (Exchange's default reject threshold)
# starts at 0.86, chosen on the SpamAssassin dev split as the lowest cut with at most 2 ham of 663
# above it (SpamAssassin's own count at its reject score); SCL 4 (Exchange 2010+ junk-folder
# threshold) at 0.20, SCL 5 at 0.35, SCL 8 (where content alone is rejected) at 0.98.
SCL_CUTS: tuple[float, ...] = (0.02, 0.05, 0.10, 0.20, 0.35, 0.60, 0.86, 0.98, 0.995)
# The default content_filter.reject_threshold: content alone is rejected from this SCL on.
HIGH_PCL_SCL = 8
MAX_FINDINGS = 8
LEARN_RETRIES = 5
# Tells classifiers apart for the scoring workers (``content.workers``), which hold a copy.
_SERIALS = itertools.count(1)

log = logging.getLogger("edgeward.content")


def scl_from_probability(probability: float) -> int:
    """SCL 0-9 for a calibrated spam probability."""
    return bisect.bisect_right(SCL_CUTS, probability)


def default_model_path() -> Path:
    """The model shipped in the package (``edgeward/content/data/default-model.npz``)."""
    return Path(str(resources.files("edgeward.content").joinpath("data", "default-model.npz")))


@dataclass(frozen=True)
class ContentVerdict:
    """What the content filter says about one message.

    ``findings`` are ``(name, weight)`` pairs, strongest first: rules (``GTUBE``,
    ``CUSTOM_*_WORD``), phishing cues (``PHISH_*``, weight = cue weight) and the model features
    that moved the score most (``model:<feature>``, weight = signed contribution to the raw score).
    ``lookalikes`` are the hosts imitating one of the site's accepted domains (the classifier was
    given them), behind the cue ``PHISH_LOOKALIKE_OWN_DOMAIN``.
    """

    probability: float
    scl: int
    pcl: int
    findings: tuple[tuple[str, float], ...]
    lookalikes: tuple[Lookalike, ...] = ()


class SpamClassifier:
    """Scores raw messages; optionally learns from feedback into a shared state store."""

    def __init__(
        self,
        model: LinearModel,
        *,
        words: CustomWords | None = None,
        store: ModelStateStore | None = None,
        model_name: str = "default",
        learning: bool = True,
        version: int = 0,
        refresh_interval: float | None = None,
        clock: Clock | None = None,
        own_domains: Iterable[str] = (),
        blob: bytes | None = None,
    ) -> None:
        self.model = model
        # The model file's bytes when it was read from one: what a scoring worker is sent.
        self.blob = blob
        self.serial = next(_SERIALS)
        self.own_domains = tuple(own_domains)
        self.own = OwnDomains(self.own_domains)
        self.words = words or CustomWords()
        self.store = store
        self.model_name = model_name
        self.learning = learning
        self.version = version
        self.refresh_interval = refresh_interval
        self._clock = clock if clock is not None else SystemClock()
        self._next_check = self._clock.monotonic() + (refresh_interval or 0.0)

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        store: ModelStateStore | None = None,
        model_name: str = "default",
        words: CustomWords | None = None,
        learning: bool = True,
        refresh_interval: float | None = None,
        own_domains: Iterable[str] = (),
    ) -> SpamClassifier:
        """The live model from ``store`` if it holds one, else the model file (default: shipped).

        ``own_domains``: the accepted domains, whose look-alikes are reported."""
        stored = store.get(model_name) if store is not None else None
        if stored is not None:
            blob, version = stored.blob, stored.version
        else:
            blob, version = Path(path or default_model_path()).read_bytes(), 0
        return cls(
            LinearModel.from_bytes(blob),
            blob=blob,
            words=words,
            store=store,
            model_name=model_name,
            learning=learning,
            version=version,
            refresh_interval=refresh_interval,
            own_domains=own_domains,
        )

    def refresh(self) -> bool:
        """Re-read the live model if another writer changed it; True if it was replaced."""
        stored = self.store.get(self.model_name) if self.store is not None else None
        if stored is None or stored.version == self.version:
            return False
        self.model, self.version = LinearModel.from_bytes(stored.blob), stored.version
        self.blob = stored.blob
        return True

    def refresh_if_due(self) -> bool:
        """Reload the live model if the store's version moved; asks at most every refresh_interval."""
        if self.store is None or self.refresh_interval is None:
            return False
        now = self._clock.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.refresh_interval
        try:
            if self.store.version(self.model_name) == self.version:
                return False
            replaced = self.refresh()
        except Exception as exc:  # a locked, damaged or missing store must not fail the message
            log.warning("could not read the live model %r, scoring with version %d: %s",
                        self.model_name, self.version, exc)  # fmt: skip
            return False
        if replaced:
            log.info("live model %r reloaded at version %d", self.model_name, self.version)
        return replaced

    def score(
        self, raw: bytes, parsed: ParsedMessage | None = None, auth: Mapping[str, str] | None = None
    ) -> ContentVerdict:
        """Rate ``raw`` (the message as received, any line endings); never raises for bad MIME.

        ``parsed`` is ``raw`` already parsed (the gateway parses a message once at end of data);
        ``auth`` the gateway's own SPF/DKIM/DMARC results, trusted instead of the message's
        Authentication-Results fields (which a client wrote).
        """
        analysis = analyze(raw, parsed=parsed, auth=auth, own=self.own or None)
        pcl, _ = pcl_from_cues(list(analysis.cues))
        phish = tuple((cue, PHISH_WEIGHTS[cue]) for cue in analysis.cues)
        own = analysis.lookalikes
        if analysis.gtube:
            return ContentVerdict(1.0, 9, pcl, (("GTUBE", 100.0), *phish), own)
        if self.words:
            hit = self.words.match(analysis.facts.subject, analysis.facts.text)
            if hit is not None:
                kind, phrase = hit
                if kind == "good":
                    good = ((f"CUSTOM_GOOD_WORD:{phrase}", -100.0), *phish)
                    return ContentVerdict(0.0, 0, pcl, good, own)
                return ContentVerdict(1.0, 9, pcl, ((f"CUSTOM_BAD_WORD:{phrase}", 100.0), *phish), own)
        model = self.model
        # Distinct features may share a slot; like the training matrix, such a slot counts twice.
        per_feature = feature_slots(analysis.features, model.bits)
        probability = model.probability(model.raw_score(per_feature, analysis.fact_count))
        scl = scl_from_probability(probability)
        findings: list[tuple[str, float]] = list(phish)
        if pcl >= 8 and scl < HIGH_PCL_SCL:
            scl = HIGH_PCL_SCL
            findings.insert(0, ("PHISH_HIGH_PCL", 0.0))
        findings.extend(self._top_features(analysis.features, per_feature, analysis.fact_count))
        return ContentVerdict(probability, scl, pcl, tuple(findings[:MAX_FINDINGS]), own)

    def _top_features(
        self, features: tuple[str, ...], slots: np.ndarray, facts: int
    ) -> list[tuple[str, float]]:
        if not features:
            return []
        contrib = self.model.contributions(slots, facts)
        strength = np.abs(contrib)
        keep = min(len(features), MAX_FINDINGS * 4)
        candidates = (
            np.argpartition(-strength, keep - 1)[:keep] if keep < len(features) else range(len(features))
        )
        # Ties are broken by feature name so findings do not depend on set iteration order.
        order = sorted(candidates, key=lambda i: (-float(strength[i]), features[i]))
        return [
            (f"model:{features[i]}", round(float(contrib[i]), 4)) for i in order[:MAX_FINDINGS] if contrib[i]
        ]

    def _model_changed(self) -> None:
        """The model was changed in place: a scoring worker's copy of it is out of date."""
        self.blob = None
        self.serial = next(_SERIALS)

    def learn(self, raw: bytes, is_spam: bool) -> None:
        """Teach the live model that ``raw`` is spam (or ham); no-op when learning is off."""
        if not self.learning:
            return
        analysis = analyze(raw)
        slots = feature_slots(analysis.features, self.model.bits)
        if self.store is None:
            self.model.learn(slots, is_spam, analysis.fact_count)
            self._model_changed()
            return
        for _ in range(LEARN_RETRIES):
            self.refresh()
            if not self.model.learn(slots, is_spam, analysis.fact_count) and self.version:
                return  # already learned as told: nothing to write
            blob = self.model.to_bytes()
            self._model_changed()
            try:
                self.version = self.store.put(self.model_name, blob, self.version)
            except StaleModelError:
                continue
            self.blob = blob
            return
        raise StaleModelError(f"could not update model {self.model_name!r}: too many concurrent writers")
