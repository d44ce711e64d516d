"""Content filtering: the spam and phishing classifier (SCL 0-9, PCL 1-8) and its learning state.

Public API (what the gateway's content-filter agent calls)::

    from edgeward.content import SpamClassifier, ContentVerdict, CustomWords, SqliteModelStateStore

    classifier = SpamClassifier.load(store=SqliteModelStateStore("state/content.db"),
                                     words=CustomWords(good=["project falcon"], bad=["casino bonus"]),
                                     learning=True)
    verdict = classifier.score(raw)        # ContentVerdict(probability, scl, pcl, findings)
    classifier.learn(raw, is_spam=True)    # feedback; updates the shared live model

Module map: ``mime`` (bounded parser), ``htmltext`` (HTML reading), ``facts`` (what is read and
what is ignored), ``phishing`` (cues, PCL), ``features`` (model vocabulary), ``analyze`` (one pass),
``model`` (hashed linear model, safe file format), ``train`` / ``evaluate`` (offline), ``corpora``
/ ``devreport`` (the training and dev sets and per-source dev figures), ``state``
(live model store), ``words`` (custom good/bad phrases), ``sources`` (reading files, mbox, tar.gz),
``classifier`` (the API above).
"""

from edgeward.content.classifier import (
    ContentVerdict,
    SpamClassifier,
    default_model_path,
    scl_from_probability,
)
from edgeward.content.state import ModelStateStore, SqliteModelStateStore, StaleModelError
from edgeward.content.words import CustomWords

__all__ = [
    "ContentVerdict",
    "CustomWords",
    "ModelStateStore",
    "SpamClassifier",
    "SqliteModelStateStore",
    "StaleModelError",
    "default_model_path",
    "scl_from_probability",
]
