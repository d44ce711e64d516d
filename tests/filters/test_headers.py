from __future__ import annotations

from edgeward.headers import parse_headers, remove_fields, sanitize

MSG = (
    b"Received: from a\r\n\tby b; date\r\n"
    b"X-Edgeward-SCL: 0\r\n"
    b"Subject: folded\r\n line\r\n"
    b"x-edgeward-report: forged\r\n continued\r\n"
    b"broken line without colon\r\n"
    b"\r\n"
    b"X-Edgeward-SCL: in the body stays\r\n"
)


def test_parse_unfolds_and_counts() -> None:
    block = parse_headers(MSG)
    assert block.count("received") == 1
    assert block.get("Subject") == "folded line"
    assert block.malformed == 1
    assert MSG[block.body_offset :] == b"X-Edgeward-SCL: in the body stays\r\n"


def test_remove_fields_drops_headers_and_continuations_but_not_the_body() -> None:
    out = remove_fields(MSG, (b"x-edgeward-",))
    head, body = out.split(b"\r\n\r\n", 1)
    assert b"edgeward" not in head.lower() and b"continued" not in head
    assert b"Subject: folded\r\n line" in head
    assert body == b"X-Edgeward-SCL: in the body stays\r\n"


def test_message_without_body_or_headers() -> None:
    assert parse_headers(b"Subject: x\r\n").get("subject") == "x"
    assert parse_headers(b"\r\nbody").fields == ()


def test_sanitize_removes_line_breaks() -> None:
    assert "\r" not in sanitize("a\r\nInjected: yes") and "\n" not in sanitize("a\nb")
