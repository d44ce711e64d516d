"""The true type without libmagic's text tests: same answer for everything a binary test or the
JSON/CSV tests name, ``text/plain`` for other text, and only for body parts when asked."""

from __future__ import annotations

import base64

from edgeward.config.attachments import AttachmentsConfig
from edgeward.filters.agents.attachments import text_subtypes_matter
from edgeward.scanning.truetype import true_type
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


def test_only_body_parts_skip_the_text_tests() -> None:
    data = message(("clean.sh", SCRIPT, "text/plain"), text=SCRIPT.decode())
    by_path = {i.path: i.true_type for i in walk_message(data, WalkLimits(text_subtypes=False)).items}
    assert by_path == {"1": "text/plain", "2/clean.sh": "text/x-shellscript"}
    assert {i.path: i.true_type for i in walk_message(data).items}["1"] == "text/x-shellscript"


def test_text_subtypes_matter_for_yara_and_for_lists_naming_more_than_binary_types() -> None:
    assert not text_subtypes_matter(AttachmentsConfig(), yara=False)
    assert text_subtypes_matter(AttachmentsConfig(), yara=True)
    assert text_subtypes_matter(AttachmentsConfig(true_types=("text/x-shellscript",)), yara=False)
    assert text_subtypes_matter(AttachmentsConfig(true_types=("application/x-*",)), yara=False)
