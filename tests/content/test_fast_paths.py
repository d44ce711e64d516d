"""The fast paths of the parser give the same answers as the general code they short-cut."""

from __future__ import annotations

import pytest

from edgeward.content.facts import extract_facts, is_ip_literal
from edgeward.content.htmltext import read_html
from edgeward.content.mime import parse_message


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("1.2.3.4", True),
        ("[1.2.3.4]", True),
        ("::1", True),
        ("[2001:db8::1]", True),
        ("0x7f000001", True),
        ("0xdeadbeef", True),
        ("2130706433", True),
        ("example.com", False),
        ("host1.example2", False),
        ("", False),
    ],
)
def test_ip_literal(host: str, expected: bool) -> None:
    assert is_ip_literal(host) is expected


def test_urls_found_and_removed_in_any_case() -> None:
    raw = b"Subject: x\n\nSee HTTP://Example.COM/Path and www.Other.org/x today.\n"
    facts = extract_facts(parse_message(raw))
    assert facts.hosts == ["example.com", "www.other.org"]
    assert "Example" not in facts.text and "Other" not in facts.text
    assert "today" in facts.text


def test_urls_found_when_lowercasing_changes_offsets() -> None:
    # U+0130 lower-cases to two characters, so offsets of the lower-cased copy do not apply.
    raw = "Subject: x\nContent-Type: text/plain; charset=utf-8\n\n\u0130\u0130 http://a.example.net/ end\n"
    facts = extract_facts(parse_message(raw.encode()))
    assert facts.hosts == ["a.example.net"]
    assert facts.text.rstrip().endswith("end") and "example" not in facts.text


def test_hidden_text_and_password_inputs_in_any_case() -> None:
    summary = read_html('<DIV STYLE="Display: None">x</DIV><FONT SIZE=1>y</FONT><INPUT TYPE="PASSWORD">')
    assert summary.hidden_text == 2
    assert summary.password_inputs == 1
