"""The seeded train/dev split of the modern archives: stable, grouped, and never leaking."""

from __future__ import annotations

from collections import Counter

from edgeward.content.corpora import _group_keys, corpus_sets, split_archive

from .conftest import corpus


def _message(subject: str, body: str, sender: str = "news@shop.example", mid: str = "") -> bytes:
    head = f"From: Shop <{sender}>\nSubject: {subject}\n"
    if mid:
        head += f"Message-ID: {mid}\n"
    return (head + "\n" + body + "\n").encode()


def _letters(n: int) -> str:
    # Subjects differing only in digits are one template, so distinct test subjects use letters.
    return chr(97 + n % 26) + chr(97 + n // 26)


def test_near_duplicates_share_a_side() -> None:
    items = [(f"m{i:03d}.eml", _message(f"Offer {_letters(i)}", f"body number {i} " * 3)) for i in range(40)]
    # A template resent with a new number in the subject, and a body resent with other spacing.
    items += [(f"t{i}.eml", _message(f"Your invoice {i}", "same template")) for i in range(5)]
    items += [("w1.eml", _message("a", "one  two\nthree")), ("w2.eml", _message("b", "one two three"))]
    train, dev = split_archive(items)
    dev_names = {name for name, _ in dev}
    assert len(train) + len(dev) == len(items)
    assert len({n in dev_names for n, _ in items if n.startswith("t")}) == 1
    assert ("w1.eml" in dev_names) == ("w2.eml" in dev_names)
    assert 0.2 < len(dev) / len(items) < 0.45


def test_split_is_stable_under_input_order_and_seed_sensitive() -> None:
    items = [(f"m{i:03d}.eml", _message(f"Subject {_letters(i)}", f"text {i}")) for i in range(60)]
    first = split_archive(items)
    assert split_archive(list(reversed(items))) == first
    assert split_archive(items, seed=1) != first


def test_anonymised_message_ids_do_not_group() -> None:
    assert not any(k.startswith("m:") for k in _group_keys(_message("x", "y", mid="<[removed]>")))
    assert any(k.startswith("m:") for k in _group_keys(_message("x", "y", mid="<a1@mail.example>")))


def test_shared_corpora_split_has_no_leak() -> None:
    root = corpus()
    sets = corpus_sets(root)
    sources = Counter((s.source, s.split) for s in sets)
    assert sources[("spamassassin", "train")] == 2 and sources[("spamassassin", "dev")] == 2
    for source in {s.source for s in sets} - {"spamassassin"}:
        train = next(s for s in sets if s.source == source and s.split == "train")
        dev = next(s for s in sets if s.source == source and s.split == "dev")
        assert dev.messages and train.messages
        train_keys = {k for _, raw, _ in train.messages for k in _group_keys(raw)}
        assert not any(k in train_keys for _, raw, _ in dev.messages for k in _group_keys(raw))
        assert not {n for n, _, _ in train.messages} & {n for n, _, _ in dev.messages}
