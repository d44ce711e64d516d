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


def test_an_ascii_body_part_skips_libmagic_only_when_nothing_reads_its_type() -> None:
    data = message(("clean.sh", SCRIPT, "text/plain"), text=CSV.decode())
    no_magic = WalkLimits(text_subtypes=False, body_libmagic=False)
    by_path = {i.path: i.true_type for i in walk_message(data, no_magic).items}
    # The body is text/plain without libmagic; the attachment still gets libmagic's full answer.
    assert by_path == {"1": "text/plain", "2/clean.sh": "text/x-shellscript"}
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


def test_body_libmagic_follows_yara_the_office_engine_and_the_true_type_list() -> None:
    from edgeward.config.load import parse_config
    from edgeward.runtime_policy import _walk_limits

    def limits(**extra: object) -> WalkLimits:
        return _walk_limits(parse_config({"server": {"hostname": "mx.example.test"}, **extra}))

    assert not limits().body_libmagic  # init's defaults: antivirus off
    assert limits(antivirus={"enabled": True}).body_libmagic  # its Office engine is on by default
    assert not limits(antivirus={"enabled": True, "office": {"enabled": False}}).body_libmagic
    assert limits(attachments={"true_types": ["text/x-shellscript"]}).body_libmagic
