"""SASL transcripts: every path of AUTH PLAIN and AUTH LOGIN through the sans-IO server."""

from __future__ import annotations

import base64

import pytest

from edgeward.auth.sasl import (
    AUTH_CANCELLED,
    AUTH_INVALID,
    BAD_BASE64,
    ENCRYPTION_REQUIRED,
    LINE_TOO_LONG,
    MALFORMED_RESPONSE,
    MAX_LINE,
    UNKNOWN_MECHANISM,
    Challenge,
    Credentials,
    Failure,
    SaslServer,
)


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def plain(authzid: str, authcid: str, password: str) -> str:
    return b64(f"{authzid}\0{authcid}\0{password}")


# -- PLAIN ------------------------------------------------------------------------------------


def test_plain_with_initial_response() -> None:
    sasl = SaslServer()
    step = sasl.start("PLAIN", plain("", "alice", "s3cret"))
    assert step == Credentials("", "alice", "s3cret")
    assert sasl.done
    assert sasl.mechanism == "PLAIN"


def test_plain_without_initial_response_gets_an_empty_challenge() -> None:
    sasl = SaslServer()
    step = sasl.start("PLAIN", None)
    assert step == Challenge("")
    assert isinstance(step, Challenge)
    assert step.line() == "334 "  # the space stays (RFC 4954 §4)
    assert step.to_bytes() == b"334 \r\n"
    assert not sasl.done
    assert sasl.step(plain("", "alice", "s3cret")) == Credentials("", "alice", "s3cret")
    assert sasl.done


def test_mechanism_name_is_case_insensitive() -> None:
    assert SaslServer().start("plain", plain("", "a", "b")) == Credentials("", "a", "b")


def test_plain_with_matching_authzid_is_accepted() -> None:
    step = SaslServer().start("PLAIN", plain("Alice", "alice", "pw"))
    assert step == Credentials("Alice", "alice", "pw")


def test_plain_with_other_authzid_is_refused_535() -> None:
    step = SaslServer().start("PLAIN", plain("bob", "alice", "pw"))
    assert step == Failure(AUTH_INVALID)
    assert AUTH_INVALID.code == 535 and AUTH_INVALID.enhanced == "5.7.8"


def test_plain_with_invalid_authzid_is_refused_535() -> None:
    assert SaslServer().start("PLAIN", plain("\x01alice", "alice", "pw")) == Failure(AUTH_INVALID)


def test_equals_sign_is_an_empty_initial_response() -> None:
    # An empty PLAIN message has no fields: malformed, not a request for a challenge.
    assert SaslServer().start("PLAIN", "=") == Failure(MALFORMED_RESPONSE)
    # For LOGIN it is an empty user name, which is refused the same way.
    assert SaslServer().start("LOGIN", "=") == Failure(MALFORMED_RESPONSE)


def test_empty_initial_text_counts_as_absent() -> None:
    assert SaslServer().start("PLAIN", "") == Challenge("")


@pytest.mark.parametrize(
    "message",
    [
        b"alice\0pw",  # one separator
        b"\0alice\0pw\0",  # three separators
        b"\0\0pw",  # empty authcid
        b"\0alice\0",  # empty password
        b"\0al\xffice\0pw",  # not UTF-8
        b"\xff\0alice\0pw",  # authzid not UTF-8
    ],
)
def test_malformed_plain_messages_are_501(message: bytes) -> None:
    assert SaslServer().start("PLAIN", b64(message)) == Failure(MALFORMED_RESPONSE)


def test_plain_keeps_utf8_and_spaces() -> None:
    step = SaslServer().start("PLAIN", plain("", "jürgen", " pass wörd "))
    assert step == Credentials("", "jürgen", " pass wörd ")


# -- base64 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "not base64!",
        "YWxpY2U",  # missing padding
        "YWxp Y2U=",  # inner space
        "YWxpY2U=\t",  # trailing white space
        "=YWxpY2U",  # leading padding
        "YWxpY2U=YQ==",  # data after padding
        "YWxpY2Ü=",  # not ASCII
    ],
)
def test_bad_base64_in_initial_response_is_501_5_5_2(text: str) -> None:
    assert SaslServer().start("PLAIN", text) == Failure(BAD_BASE64)
    assert BAD_BASE64.code == 501 and BAD_BASE64.enhanced == "5.5.2"


def test_bad_base64_in_a_continuation_is_501_5_5_2() -> None:
    sasl = SaslServer()
    sasl.start("LOGIN", None)
    assert sasl.step("%%%") == Failure(BAD_BASE64)
    assert sasl.done


# -- cancel -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_star_cancels_with_501_5_7_0(mechanism: str) -> None:
    sasl = SaslServer()
    sasl.start(mechanism, None)
    assert sasl.step("*") == Failure(AUTH_CANCELLED)
    assert AUTH_CANCELLED.code == 501 and AUTH_CANCELLED.enhanced == "5.7.0"
    assert sasl.done


def test_star_cancels_at_the_login_password_prompt() -> None:
    sasl = SaslServer()
    sasl.start("LOGIN", None)
    sasl.step(b64("alice"))
    assert sasl.step("*") == Failure(AUTH_CANCELLED)


# -- unknown mechanism ------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["CRAM-MD5", "XOAUTH2", "", "PLAIN2"])
def test_unknown_mechanism_is_504_5_5_4(mechanism: str) -> None:
    assert SaslServer().start(mechanism, None) == Failure(UNKNOWN_MECHANISM)
    assert UNKNOWN_MECHANISM.code == 504 and UNKNOWN_MECHANISM.enhanced == "5.5.4"


def test_mechanism_not_offered_by_the_connector_is_504() -> None:
    sasl = SaslServer(mechanisms=["PLAIN"])
    assert sasl.start("LOGIN", None) == Failure(UNKNOWN_MECHANISM)


def test_unsupported_mechanism_cannot_be_configured() -> None:
    with pytest.raises(ValueError, match="CRAM-MD5"):
        SaslServer(mechanisms=["PLAIN", "CRAM-MD5"])


# -- LOGIN ------------------------------------------------------------------------------------


def test_login_transcript() -> None:
    sasl = SaslServer()
    first = sasl.start("LOGIN", None)
    assert isinstance(first, Challenge)
    assert first == Challenge("VXNlcm5hbWU6")
    assert base64.b64decode(first.text_base64) == b"Username:"
    second = sasl.step(b64("alice"))
    assert isinstance(second, Challenge)
    assert second == Challenge("UGFzc3dvcmQ6")
    assert base64.b64decode(second.text_base64) == b"Password:"
    assert sasl.step(b64("s3cret")) == Credentials("", "alice", "s3cret")
    assert sasl.done


def test_login_with_user_name_as_initial_response() -> None:
    sasl = SaslServer()
    assert sasl.start("LOGIN", b64("alice")) == Challenge("UGFzc3dvcmQ6")
    assert sasl.step(b64("pw")) == Credentials("", "alice", "pw")


@pytest.mark.parametrize(
    ("user", "password"),
    [(b"", b"pw"), (b"al\0ice", b"pw"), (b"\xff", b"pw"), (b"alice", b""), (b"alice", b"p\0w")],
)
def test_login_malformed_answers_are_501(user: bytes, password: bytes) -> None:
    sasl = SaslServer()
    sasl.start("LOGIN", None)
    step = sasl.step(b64(user))
    if isinstance(step, Challenge):
        step = sasl.step(b64(password))
    assert step == Failure(MALFORMED_RESPONSE)


# -- bounds and misuse ------------------------------------------------------------------------


def test_line_of_exactly_the_limit_is_decoded() -> None:
    # 12288 base64 characters: 9216 bytes, here a valid PLAIN message with a long password.
    password = "x" * (9216 - len("\0alice\0"))
    line = plain("", "alice", password)
    assert len(line) == MAX_LINE
    sasl = SaslServer()
    sasl.start("PLAIN", None)
    assert sasl.step(line) == Credentials("", "alice", password)


def test_oversized_continuation_line_is_500_5_5_6() -> None:
    sasl = SaslServer()
    sasl.start("PLAIN", None)
    assert sasl.step("A" * (MAX_LINE + 4)) == Failure(LINE_TOO_LONG)
    assert LINE_TOO_LONG.code == 500 and LINE_TOO_LONG.enhanced == "5.5.6"


def test_oversized_initial_response_is_500_5_5_6() -> None:
    assert SaslServer().start("PLAIN", "A" * (MAX_LINE + 4)) == Failure(LINE_TOO_LONG)


def test_smaller_line_limit_is_honoured() -> None:
    sasl = SaslServer(max_line=16)
    assert sasl.start("PLAIN", plain("", "alice", "a-long-password")) == Failure(LINE_TOO_LONG)


def test_start_twice_and_step_after_the_end_are_programming_errors() -> None:
    sasl = SaslServer()
    with pytest.raises(RuntimeError, match="no SASL challenge"):
        sasl.step("")
    sasl.start("PLAIN", plain("", "a", "b"))
    with pytest.raises(RuntimeError, match="already started"):
        sasl.start("PLAIN", None)
    with pytest.raises(RuntimeError, match="no SASL challenge"):
        sasl.step("")


def test_credentials_repr_hides_the_password() -> None:
    creds = Credentials("", "alice", "hunter2")
    assert "hunter2" not in repr(creds)
    assert "alice" in repr(creds)


def test_encryption_required_reply() -> None:
    assert ENCRYPTION_REQUIRED.code == 538 and ENCRYPTION_REQUIRED.enhanced == "5.7.11"
    assert ENCRYPTION_REQUIRED.lines() == [
        "538 5.7.11 Encryption required for requested authentication mechanism"
    ]
