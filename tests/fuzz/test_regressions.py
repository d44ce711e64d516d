"""Every failure the fuzz targets found, as a plain test with the exact input.

Each test names the target that found it and what was wrong; the fix is in the module the
test imports.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.config.load import load_config
from edgeward.content.mime import parse_message
from edgeward.delivery.dsn import DsnKind, build_dsn
from edgeward.errors import ConfigError
from edgeward.headers import parse_headers, remove_fields
from edgeward.queue.model import MessageRecord, RecipientRecord
from edgeward.smtp import MessageData, ProtocolLimits
from edgeward.types import Reply
from tests.fuzz.smtp_driver import run_core
from tests.smtp.smtp_transcript import DEFAULT_EXTENSIONS

# --- header reader ------------------------------------------------------------------------------


def test_bare_lf_in_a_header_block_ends_a_line() -> None:
    """test_fuzz_headers: ``Subject:\\n\\n`` gave the value ``"\\n\\n"`` (a line break in a
    value). BODY=BINARYMIME messages reach the reader unnormalised."""
    block = parse_headers(b"Subject:\n\n")
    assert block.fields == (("Subject", ""),)
    block = parse_headers(b"Return-Path:\r <bbb@zzz.org>\r\nReceived: a\nReceived: b\r\n\r\nbody")
    assert block.fields == (("Return-Path", " <bbb@zzz.org>"), ("Received", "a"), ("Received", "b"))
    assert block.count("Received") == 2


def test_internal_header_behind_a_bare_lf_is_removed() -> None:
    """test_fuzz_headers: ``X-Edgeward-*`` after a bare LF survived ``remove_fields`` inside
    the line before it, and a next hop that ends lines at LF would have read it as a field."""
    data = b"Subject: x\nX-Edgeward-SCL: -1\r\n\r\nbody"
    assert remove_fields(data, (b"x-edgeward-",)) == b"Subject: x\r\n\r\nbody"
    data = b"Subject: x\rX-Edgeward-SCL: -1\r\n folded\nTo: y\r\n\r\n\nbody\nX-Edgeward-Keep: 1"
    assert remove_fields(data, (b"x-edgeward-",)) == b"Subject: x\nTo: y\r\n\r\n\nbody\nX-Edgeward-Keep: 1"


# --- MIME walker --------------------------------------------------------------------------------


def test_padded_base64_text_keeps_its_last_bytes() -> None:
    """test_fuzz_mime: the text ``0000`` sent as base64 (``MDAwMA==``) was read as ``000``:
    stripping junk also stripped the padding, and the body was then cut to a multiple of 4."""
    raw = b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\nMDAwMA==\n"
    assert [p.text for p in parse_message(raw).texts] == ["0000"]
    raw = b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGk\n"
    assert [p.text for p in parse_message(raw).texts] == ["hi"]


# --- DSN writer ---------------------------------------------------------------------------------


def _status_of(reply: str, kind: DsnKind = "failure") -> str:
    record = MessageRecord("Q0", "a@src.test", (RecipientRecord("b@dst.test"),), 1_800_000_000.0, 0)
    raw = build_dsn(
        record, [(record.recipients[0], reply)], kind, b"Subject: x\r\n\r\n", "mx.test", 1_800_000_000.0
    )
    fields = [line for line in raw.split(b"\r\n") if line.startswith(b"Status: ")]
    assert len(fields) == 1
    return fields[0][len(b"Status: ") :].decode("utf-8")


def test_success_reply_never_gives_a_success_status() -> None:
    """test_fuzz_dsn: a stored reply ``200`` gave ``Status: 2.0.0`` next to ``Action: failed``."""
    assert _status_of("200") == "5.0.0"
    assert _status_of("250 2.1.5 ok") == "5.0.0"
    assert _status_of("250 2.1.5 ok", "delay") == "4.0.0"


def test_status_digits_are_ascii() -> None:
    """test_fuzz_dsn: a remote's ``550 5.\u0667.1`` (Arabic-Indic seven, matched by ``\\d``)
    became ``Status: 5.\u0667.1``; RFC 3464 §2.3.4 allows only ASCII digits."""
    assert _status_of("550 5.\u0667.1 no") == "5.0.0"
    assert _status_of("5\u0661\u0661 5.1.1 no") == "5.1.1"
    assert _status_of("451 4.4.7 Message expired") == "4.4.7"


# --- configuration loader -----------------------------------------------------------------------


def _config_error(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "edgeward.toml"
    path.write_text(text, "utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    return info.value


def test_size_past_float_range(tmp_path: Path) -> None:
    """test_fuzz_config: ``max_message_size = "999…9"`` (400 digits) raised OverflowError."""
    error = _config_error(tmp_path, f'[[receive_connectors]]\nname = "a"\nmax_message_size = "{"9" * 400}"\n')
    assert [p[0] for p in error.problems] == ["receive_connectors.0.max_message_size"]


def test_duration_past_float_range(tmp_path: Path) -> None:
    """test_fuzz_config: ``handshake_timeout = 0xfff…f`` (a 1200-bit integer) raised OverflowError."""
    error = _config_error(tmp_path, f"[tls]\nhandshake_timeout = 0x{'f' * 300}\n")
    assert [p[0] for p in error.problems] == ["tls.handshake_timeout"]


def test_integer_too_long_to_print(tmp_path: Path) -> None:
    """test_fuzz_config: a hex integer past 4300 decimal digits made repr() raise ValueError
    while the error was being described."""
    error = _config_error(tmp_path, f"[dns]\nport = 0x{'f' * 5000}\n")
    assert error.problems[0][0] == "dns.port"
    assert error.problems[0][2] == "an integer of 20000 bits"


def test_decimal_integer_too_long_to_read(tmp_path: Path) -> None:
    """test_fuzz_config: tomllib let int() raise a plain ValueError for 5000 decimal digits."""
    error = _config_error(tmp_path, f"[dns]\nport = {'9' * 5000}\n")
    assert "not valid TOML" in str(error)


def test_deeply_nested_toml(tmp_path: Path) -> None:
    """test_fuzz_config: 5000 nested arrays made tomllib raise RecursionError."""
    error = _config_error(tmp_path, "x = " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested too deeply" in str(error)


def test_domain_that_is_not_a_string(tmp_path: Path) -> None:
    """test_fuzz_config: ``accepted_domains = [false]`` raised AttributeError in the validator."""
    error = _config_error(tmp_path, "accepted_domains = [false]\n")
    assert [p[0] for p in error.problems] == ["accepted_domains.0"]


def test_nul_in_data_dir(tmp_path: Path) -> None:
    """test_fuzz_config: ``data_dir = "a\\u0000b"`` made Path.resolve() raise ValueError."""
    error = _config_error(tmp_path, '[server]\ndata_dir = "a\\u0000b"\n')
    assert [p[0] for p in error.problems] == ["server.data_dir"]


# --- SMTP core ----------------------------------------------------------------------------------


def _eod_violation(stream: bytes, cuts: list[int]) -> Reply | None:
    limits = ProtocolLimits(max_message_size=64, max_header_size=32)
    run = run_core(stream, cuts, limits, DEFAULT_EXTENSIONS)
    (message,) = [e for e in run.events if isinstance(e, MessageData)]
    return message.violation


def test_the_limit_passed_first_is_reported_however_the_body_is_split() -> None:
    """test_fuzz_smtp: a body over both the header and the size limit got ``552 5.3.4 Message
    size exceeds ...`` when read at once and ``552 5.3.4 Message header size exceeds limit``
    when the header arrived in an earlier read."""
    stream = (
        b"EHLO client.example\r\nMAIL FROM:<a@client.example>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
        b"Subject: a header line that is long\r\n\r\n" + b"0123456789" * 6 + b"\r\n.\r\nQUIT\r\n"
    )
    at_once = _eod_violation(stream, [])
    assert at_once is not None and at_once.text == "Message header size exceeds limit"
    for cut in range(1, len(stream)):
        assert _eod_violation(stream, [cut]) == at_once, cut
    # Over the size limit only: still the size refusal.
    small_header = stream.replace(b"Subject: a header line that is long", b"Subject: x")
    assert _eod_violation(small_header, [])
    assert _eod_violation(small_header, []).text.startswith("Message size exceeds")  # type: ignore[union-attr]
