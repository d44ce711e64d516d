"""The true type without libmagic's text tests: same answer for everything a binary test or the
JSON/CSV tests name, ``text/plain`` marked coarse for other text, and the subtype read again
(``refine``) by whoever asks for it."""

from __future__ import annotations

import base64

from edgeward.config.attachments import AttachmentsConfig
from edgeward.filters.agents.attachments import AttachmentRules, reads_text_subtypes
from edgeward.scanning.truetype import refine, true_type
from edgeward.scanning.walk import WalkLimits, walk_message
from tests.scanning.builders import EXE, message, raw_message

SCRIPT = b"#!/bin/sh\nrm -rf /tmp/x\necho done\n"
CSV = b"name,amount,note\r\nalice,10,=cmd|' /C calc'!A0\r\nbob,20,ok\r\n"


def test_binary_json_and_csv_answers_are_libmagics_own() -> None:
    for data in (
        EXE,
        b'{"a": [1, 2], "b": "x"}',
        CSV,
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
        bytes(range(256)),
    ):
        assert true_type(data, text_subtype=False) == true_type(data)


def test_text_no_binary_test_names_is_text_plain_and_bytes_stay_unknown() -> None:
    assert true_type(SCRIPT) == "text/x-shellscript"
    assert true_type(SCRIPT, text_subtype=False) == "text/plain"
    assert true_type(b"<html><body><p>hi</p></body></html>", text_subtype=False) == "text/plain"
    noise = bytes([0, 255, 3, 7, 200, 1, 9, 128]) * 64
    assert true_type(noise, text_subtype=False) == true_type(noise) == "application/octet-stream"


def test_a_program_in_a_text_body_part_is_still_a_program() -> None:
    data = raw_message("Content-Type: text/plain\nContent-Transfer-Encoding: base64\n",
                       base64.b64encode(EXE).decode())  # fmt: skip
    full = walk_message(data)
    fast = walk_message(data, WalkLimits(text_subtypes=False))
    assert fast.items[0].true_type == full.items[0].true_type != "text/plain"
    assert fast.findings == full.findings and any(n == "ATTACH_TYPE_MISMATCH" for n, _ in fast.findings)


def test_without_text_subtypes_text_is_coarse_and_refine_reads_the_subtype() -> None:
    data = message(("clean.sh", SCRIPT, "text/plain"), text=SCRIPT.decode())
    coarse = {i.path: i for i in walk_message(data, WalkLimits(text_subtypes=False)).items}
    assert {p: (i.true_type, i.coarse) for p, i in coarse.items()} == {
        "1": ("text/plain", True), "2/clean.sh": ("text/plain", True),
    }  # fmt: skip
    full = {i.path: i for i in walk_message(data).items}
    assert not any(i.coarse for i in full.values())
    assert {p: refine(i) for p, i in coarse.items()} == {p: i.true_type for p, i in full.items()}
    assert full["2/clean.sh"].true_type == "text/x-shellscript"


def test_binary_answers_are_never_coarse() -> None:
    data = message(("a.bin", EXE, "application/octet-stream"), ("t.csv", CSV, "text/plain"), text="hello")
    coarse = {i.path: i for i in walk_message(data, WalkLimits(text_subtypes=False)).items}
    full = {i.path: i for i in walk_message(data).items}
    for path in ("2/a.bin", "3/t.csv"):
        assert coarse[path].true_type == full[path].true_type and not coarse[path].coarse
    assert coarse["3/t.csv"].true_type == "text/csv"


def test_a_true_type_list_reads_text_subtypes_only_when_it_names_more_than_binary_types() -> None:
    assert not reads_text_subtypes(AttachmentsConfig().true_types)
    assert reads_text_subtypes(("text/x-shellscript",))
    assert reads_text_subtypes(("application/x-*",))
    data = message(("notes.txt", SCRIPT, "text/plain"), text="hello")
    entry = walk_message(data, WalkLimits(text_subtypes=False)).entries[-1]
    assert entry.item.coarse
    rules = AttachmentRules(AttachmentsConfig(true_types=("text/x-shellscript",)))
    assert rules.match(entry) == "TrueType text/x-shellscript"
    assert AttachmentRules(AttachmentsConfig()).match(entry) == ""


def test_an_ascii_body_part_skips_libmagic_only_when_nothing_reads_its_type() -> None:
    data = message(("clean.sh", SCRIPT, "text/plain"), text=CSV.decode())
    no_magic = WalkLimits(text_subtypes=False, body_libmagic=False)
    items = walk_message(data, no_magic).items
    # The body is coarse text/plain without libmagic; refine still reads libmagic's answer.
    assert [(i.path, i.true_type, i.coarse) for i in items] == [
        ("1", "text/plain", True), ("2/clean.sh", "text/plain", True),
    ]  # fmt: skip
    assert [refine(i) for i in items] == ["text/csv", "text/x-shellscript"]
    # With the Office engine on (body_libmagic), the CSV body keeps libmagic's own answer.
    with_magic = walk_message(data, WalkLimits(text_subtypes=False))
    assert with_magic.items[0].true_type == "text/csv"


def test_a_program_in_a_text_body_part_is_still_a_program_without_body_libmagic() -> None:
    for body in (EXE, b"MZ" + EXE[2:]):
        data = raw_message("Content-Type: text/plain\nContent-Transfer-Encoding: base64\n",
                           base64.b64encode(body).decode())  # fmt: skip
        fast = walk_message(data, WalkLimits(text_subtypes=False, body_libmagic=False))
        assert fast.items[0].true_type == walk_message(data).items[0].true_type != "text/plain"
        assert any(n == "ATTACH_TYPE_MISMATCH" for n, _ in fast.findings)


def test_the_gateway_walk_leaves_text_subtypes_to_their_readers_and_libmagic_to_the_office_engine() -> None:
    from edgeward.config.load import parse_config
    from edgeward.runtime_policy import _walk_limits

    def limits(**extra: object) -> WalkLimits:
        return _walk_limits(parse_config({"server": {"hostname": "mx.example.test"}, **extra}))

    assert not limits().body_libmagic  # init's defaults: antivirus off
    assert not limits(antivirus={"enabled": True}).text_subtypes
    assert limits(antivirus={"enabled": True}).body_libmagic  # its Office engine is on by default
    assert not limits(antivirus={"enabled": True, "office": {"enabled": False}}).body_libmagic
    # A list naming a text type refines the items it looks at itself (above).
    assert not limits(attachments={"true_types": ["text/x-shellscript"]}).body_libmagic
