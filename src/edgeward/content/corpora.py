"""The training and development sets the shipped model is built and measured on.

This module owns the layout of ``../shared/corpora`` as the trainer sees it and the seeded
train/dev split of the modern archives (``modern/*.tar.gz``):

* **SpamAssassin**: the corpus' own split (``spamassassin-train-*`` for training,
  ``spamassassin-dev-*`` for development), used as published.
* **Modern archives**: split here, per archive, into :data:`DEV_SHARE` dev and the rest train.
  Messages are first grouped so near-duplicates share a group and never cross the split: two
  messages are in one group when they have the same whitespace-normalised body, the same
  Message-ID (one that was not anonymised), or the same sender domain with the same subject
  once digits are removed (a newsletter or abuse-report template sent again with a new date or
  ticket number). Groups are
  ordered by a hash of their smallest member name and the :data:`SPLIT_SEED`, then taken into dev
  until it holds :data:`DEV_SHARE` of the archive's messages. The result depends only on the
  archive contents and the seed, never on file system order or the Python hash seed.

Training uses SpamAssassin train plus modern train (weighted by :data:`MODERN_WEIGHT`);
development (never used to choose anything) is SpamAssassin dev plus modern dev.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from edgeward.content.facts import split_address
from edgeward.content.mime import parse_message
from edgeward.content.sources import iter_messages, label_from_path

__all__ = [
    "DEV_SHARE",
    "MODERN_WEIGHT",
    "SPLIT_SEED",
    "CorpusSet",
    "Labelled",
    "corpus_sets",
    "group_keys",
    "groups_of",
    "split_archive",
    "training_items",
]

SPLIT_SEED = 20261201
DEV_SHARE = 0.3
# Each modern training message counts this many times: 1088 modern against 3869 SpamAssassin
# messages would otherwise let 2002 mail set the decision boundary. Chosen by 5-fold
# cross-validation on the train split only (1, 3, 10, 30 tried; docs/content-model.md).
MODERN_WEIGHT = 10.0
_SPACE = re.compile(rb"\s+")
_DIGITS = re.compile(r"\d+")
_SUBJECT_SPACE = re.compile(r"\s+")
_MESSAGE_ID = re.compile(r"<[^@<>\s\[\]]+@[^@<>\s\[\]]+\.[^@<>\s\[\]]+>")

# (name, raw, is_spam)
Labelled = tuple[str, bytes, bool]


@dataclass(frozen=True)
class CorpusSet:
    """One labelled source of one split: ``spamassassin`` or a modern archive's stem."""

    source: str
    split: str
    is_spam: bool
    messages: tuple[Labelled, ...]


def _group_keys(raw: bytes) -> list[str]:
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    keys = ["b:" + hashlib.sha256(_SPACE.sub(b" ", body).strip()).hexdigest()]
    msg = parse_message(head + b"\n\n")
    message_id = msg.header("message-id").strip()
    # Sources anonymised some Message-IDs ("<[removed]>", "<@>"): only a real one identifies.
    if _MESSAGE_ID.fullmatch(message_id):
        keys.append("m:" + message_id)
    subject = _SUBJECT_SPACE.sub(" ", _DIGITS.sub("", msg.header("subject").lower())).strip()
    domain = split_address(msg.header("from"))[1].rpartition("@")[2].lower().strip(">. ")
    if subject:
        keys.append(f"s:{domain}:{subject}")
    return keys


def group_keys(raw: bytes) -> list[str]:
    """The near-duplicate keys of one message: two messages sharing any key are one group."""
    return _group_keys(raw)


def groups_of(keys: list[list[str]]) -> list[list[int]]:
    """Indices grouped by shared keys (transitively), each group in index order."""
    parent = list(range(len(keys)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for index, item_keys in enumerate(keys):
        for key in item_keys:
            other = first.setdefault(key, index)
            parent[find(index)] = find(other)
    members: dict[int, list[int]] = {}
    for index in range(len(keys)):
        members.setdefault(find(index), []).append(index)
    return list(members.values())


def _groups(items: list[tuple[str, bytes]]) -> list[list[int]]:
    return groups_of([_group_keys(raw) for _, raw in items])


def split_archive(
    items: list[tuple[str, bytes]], *, seed: int = SPLIT_SEED, dev_share: float = DEV_SHARE
) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """``(train, dev)`` of one archive's ``(name, raw)`` messages; both in name order."""
    items = sorted(items, key=lambda item: item[0])
    groups = _groups(items)

    def order(group: list[int]) -> str:
        name = min(items[i][0] for i in group)
        return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()

    dev: set[int] = set()
    target = round(dev_share * len(items))
    for group in sorted(groups, key=order):
        if len(dev) >= target:
            break
        dev.update(group)
    train = [item for i, item in enumerate(items) if i not in dev]
    return train, [item for i, item in enumerate(items) if i in dev]


def _archive_label(path: Path) -> bool:
    label = label_from_path(path.name)
    if label is None:
        raise ValueError(f"{path}: the archive name does not say ham or spam")
    return label


def corpus_sets(root: Path) -> list[CorpusSet]:
    """Every labelled set under ``root`` (``../shared/corpora``), train and dev, in a fixed order."""
    spamassassin = root / "spamassassin"
    modern = sorted((root / "modern").glob("*.tar.gz"))
    if not spamassassin.is_dir() or not modern:
        raise ValueError(f"{root}: expected spamassassin/ and modern/*.tar.gz (the shared corpora)")
    sets: list[CorpusSet] = []
    for split in ("train", "dev"):
        for label in ("ham", "spam"):
            path = spamassassin / f"spamassassin-{split}-{label}.tar.gz"
            if not path.exists():
                raise ValueError(f"missing {path}")
            prefix = len(str(path)) + 1
            messages = tuple((n[prefix:], raw, label == "spam") for n, raw in iter_messages(path))
            sets.append(CorpusSet("spamassassin", split, label == "spam", messages))
    for path in modern:
        is_spam = _archive_label(path)
        # Member names only: the split must not depend on where the corpora folder is.
        prefix = len(str(path)) + 1
        train, dev = split_archive([(name[prefix:], raw) for name, raw in iter_messages(path)])
        source = path.name.removesuffix(".tar.gz")
        sets.append(CorpusSet(source, "train", is_spam, tuple((n, r, is_spam) for n, r in train)))
        sets.append(CorpusSet(source, "dev", is_spam, tuple((n, r, is_spam) for n, r in dev)))
    return sets


def training_items(root: Path) -> list[tuple[bytes, bool, float]]:
    """``(raw, is_spam, weight)`` of every training message under ``root``, in a fixed order."""
    return [
        (raw, spam, 1.0 if item.source == "spamassassin" else MODERN_WEIGHT)
        for item in corpus_sets(root)
        if item.split == "train"
        for _, raw, spam in item.messages
    ]
