"""The ServerConnection contract, the DATA reader, and properties over random input."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edgeward.smtp import (
    NEED_DATA,
    ConnectionClosed,
    Data,
    Helo,
    MessageData,
    NeedData,
    ProtocolLimits,
    ProtocolViolation,
    ServerConnection,
    SessionMisuse,
    State,
    replies,
)
from edgeward.smtp.data import DataReader, MessageBuffer
from edgeward.smtp.state import TABLE, Input, next_state
from edgeward.types import Reply
from tests.smtp.smtp_transcript import DEFAULT_EXTENSIONS, Driver

TRANSACTION = (
    b"EHLO client.example\r\nMAIL FROM:<a@client.example> SIZE=100\r\nRCPT TO:<b@example.net>\r\n"
    b"RCPT TO:<c@example.net> NOTIFY=NEVER\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\nbody\r\n.\r\n"
    b"MAIL FROM:<>\r\nRCPT TO:<d@example.net>\r\nBDAT 5\r\nab\r\ncBDAT 0 LAST\r\nRSET\r\nQUIT\r\n"
)


def connection(**limits: object) -> ServerConnection:
    return ServerConnection(ProtocolLimits(**limits), DEFAULT_EXTENSIONS)  # type: ignore[arg-type]


def test_need_data_is_a_sentinel_that_works_every_way() -> None:
    conn = connection()
    event = conn.next_event()
    assert event is NeedData
    assert event is NEED_DATA
    assert isinstance(event, NeedData)
    assert repr(event) == "NeedData"
    assert not isinstance(Helo("x", True), NeedData)


def test_next_event_before_send_is_a_session_bug() -> None:
    conn = connection()
    conn.receive_data(b"NOOP\r\nNOOP\r\n")
    conn.next_event()
    with pytest.raises(SessionMisuse):
        conn.next_event()


def test_unsolicited_reply_and_421() -> None:
    conn = connection()
    assert conn.send(Reply(250, "2.0.0", "OK")) == b"250 2.0.0 OK\r\n"
    assert not conn.closed
    assert conn.send(Reply(421, "4.4.2", "Idle timeout")) == b"421 4.4.2 Idle timeout\r\n"
    assert conn.closed
    assert isinstance(conn.next_event(), ConnectionClosed)


def test_greeting_421_closes_and_554_refuses() -> None:
    conn = connection()
    assert conn.greeting(Reply(421, "4.3.2", "busy")) == b"421 4.3.2 busy\r\n"
    assert conn.closed
    conn = connection()
    conn.greeting(Reply(554, "5.7.1", "no"))
    assert conn.state is State.REFUSED


def test_session_reply_421_to_a_command_closes() -> None:
    conn = connection()
    conn.receive_data(b"EHLO x\r\n")
    assert isinstance(conn.next_event(), Helo)
    conn.send(Reply(421, "4.7.0", "go away"))
    assert conn.closed


def test_refused_data_reads_commands_not_a_body() -> None:
    conn = connection()
    driver = Driver(conn)
    driver.write(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n")
    conn.receive_data(b"DATA\r\nNOOP\r\n")
    assert isinstance(conn.next_event(), Data)
    conn.send(Reply(451, "4.3.0", "try later"))
    assert conn.state is State.RCPT
    assert conn.next_event() is not NeedData  # NOOP read as a command


def test_refused_helo_keeps_the_transaction() -> None:
    conn = connection()
    driver = Driver(conn)
    driver.write(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\n")
    conn.receive_data(b"EHLO y\r\n")
    conn.next_event()
    conn.send(Reply(550, "5.7.1", "no"))
    assert conn.state is State.MAIL


def test_extensions_can_be_replaced_and_auth_needs_tls() -> None:
    conn = ServerConnection(ProtocolLimits(), DEFAULT_EXTENSIONS)
    conn.receive_data(b"EHLO x\r\n")
    conn.next_event()
    first = conn.send(Reply(250, "2.0.0", "mx.example.net"))
    assert first.startswith(b"250-mx.example.net\r\n")  # no enhanced code on EHLO (RFC 2034 §3)
    assert b"STARTTLS" in first and b"AUTH" not in first
    conn.receive_data(b"STARTTLS\r\n")
    conn.next_event()
    conn.send(replies.READY_TO_START_TLS)
    conn.tls_started()
    conn.extensions = DEFAULT_EXTENSIONS.__class__(
        hostname="mx.example.net", size=0, starttls=False, auth_mechanisms=("PLAIN",)
    )
    conn.receive_data(b"EHLO x\r\n")
    conn.next_event()
    second = conn.send(Reply(250, None, "mx.example.net"))
    assert b"STARTTLS" not in second and second.endswith(b"250 AUTH PLAIN\r\n")
    assert conn.tls_active


def test_implicit_tls_before_any_command() -> None:
    conn = connection()
    conn.tls_started()
    assert conn.tls_active and conn.state is State.CONNECTED


def test_table_is_total_for_refusals_and_never_reaches_data_by_accident() -> None:
    for state in State:
        assert next_state(state, Input.REFUSED_INPUT, False) is state
        assert next_state(state, Input.REFUSED_INPUT, True) is state
    # DATA is entered only from RCPT, by a positive reply to DATA.
    assert [key for key, t in TABLE.items() if t.on_success is State.DATA] == [(State.RCPT, Input.DATA)]


# --- the DATA reader ----------------------------------------------------------------------------


def _read(chunks: list[bytes]) -> tuple[MessageData | None, bytes]:
    reader = DataReader(1 << 20, 1 << 16)
    for i, chunk in enumerate(chunks):
        consumed = reader.feed(chunk)
        if consumed is not None:
            from edgeward.smtp.data import finish_data

            rest = chunk[consumed:] + b"".join(chunks[i + 1 :])
            return finish_data(reader.message, "reject"), rest
    return None, b""


@pytest.mark.parametrize(
    "stream",
    [
        b".\r\nREST",
        b"a\r\n.\r\nREST",
        b"Subject: x\r\n\r\n..a\r\n.b\r\n\r\n.\r\nREST",
        b"\r\n.\r\nREST",
    ],
)
def test_terminator_at_every_split_point(stream: bytes) -> None:
    whole, rest = _read([stream])
    assert whole is not None and rest == b"REST"
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            got, rest = _read([stream[:i], stream[i:j], stream[j:]])
            assert got == whole and rest == b"REST", (i, j)


def test_message_buffer_stops_storing_past_the_limit() -> None:
    conn = connection(max_message_size=1 << 20)
    driver = Driver(conn)
    driver.write(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    driver.write(b"Subject: big\r\n\r\n")
    chunk = b"x" * 1000 + b"\r\n"
    piece = chunk * 64
    for _ in range(300):  # about 19 MB
        assert driver.write(piece) == b""
        assert conn._reader is not None and len(conn._reader.message.with_prefix()) <= (1 << 20) + 2
    assert driver.write(b".\r\n") == b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"


def test_long_line_is_never_buffered_whole() -> None:
    conn = connection(max_line=512)
    for _ in range(200):
        conn.receive_data(b"a" * 65536)
        assert conn.next_event() is NeedData
        assert len(conn._buf) <= 65536 + 512
    conn.receive_data(b"\r\n")
    event = conn.next_event()
    assert event == ProtocolViolation(replies.LINE_TOO_LONG)


def test_data_throughput_is_reasonable() -> None:
    """A 10 MB message in 64 KiB reads: C-level scanning keeps this well under a second."""
    conn = connection(max_message_size=20 << 20)
    driver = Driver(conn)
    driver.write(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    body = (b"Subject: x\r\n\r\n" + (b"y" * 76 + b"\r\n.z\r\n") * (10 << 14))[: 10 << 20] + b"\r\n.\r\n"
    start = time.perf_counter()
    out = driver.write(body, split=65536)
    elapsed = time.perf_counter() - start
    assert out.startswith(b"250 2.0.0 Queued")
    assert elapsed < 2.0, elapsed


def test_message_buffer_header_measure_split() -> None:
    buffer = MessageBuffer(1000, 10)
    for byte in b"Sub: 12345\r\n\r\nbody":
        buffer.append(bytes([byte]))
    assert buffer.violation is not None  # 12-octet header > 10
    buffer = MessageBuffer(1000, 12)
    for byte in b"Sub: 12345\r\n\r\nbody":
        buffer.append(bytes([byte]))
    assert buffer.violation is None and buffer.content() == b"Sub: 12345\r\n\r\nbody"


# --- properties ---------------------------------------------------------------------------------


def _events(stream: bytes, cuts: list[int], **limits: object) -> tuple[list[object], bytes]:
    conn = connection(**limits)
    driver = Driver(conn)
    out = bytearray()
    last = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        out += driver.write(stream[last:cut])
        last = cut
    return list(driver.events), bytes(out)


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=len(TRANSACTION)), max_size=12))
def test_random_splits_give_the_same_events(cuts: list[int]) -> None:
    expected = _events(TRANSACTION, [])
    assert _events(TRANSACTION, cuts) == expected
    assert sum(isinstance(e, MessageData) for e in expected[0]) == 2


_TOKENS = st.sampled_from(
    [
        b"EHLO x\r\n",
        b"HELO x\r\n",
        b"MAIL FROM:<a@b.example>\r\n",
        b"RCPT TO:<c@d.example>\r\n",
        b"DATA\r\n",
        b"BDAT 3\r\n",
        b"BDAT 1 LAST\r\n",
        b"bdat 0 last\r\n",
        b"STARTTLS\r\n",
        b"RSET\r\n",
        b"QUIT\r\n",
        b"\r\n.\r\n",
        b".",
        b"\r",
        b"\n",
        b"\x00",
        b"\xff",
        b" ",
        b"x",
        b"AUTH PLAIN\r\n",
        b"VRFY a\r\n",
    ]
)
_GARBAGE = st.one_of(
    st.binary(max_size=300),
    st.lists(_TOKENS, max_size=40).map(b"".join),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_GARBAGE, st.lists(st.integers(min_value=0, max_value=300), max_size=6), st.booleans())
def test_garbage_never_raises(stream: bytes, cuts: list[int], normalize: bool) -> None:
    policy = "normalize" if normalize else "reject"
    events, _ = _events(stream, [c for c in cuts if c <= len(stream)], max_line=64, bare_lf=policy)
    for event in events:
        assert not isinstance(event, NeedData)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_GARBAGE, st.lists(st.integers(min_value=0, max_value=300), max_size=6))
def test_no_message_without_a_real_end(stream: bytes, cuts: list[int]) -> None:
    assume(b"\r\n.\r\n" not in stream and b"last" not in stream.lower())
    events, _ = _events(stream, [c for c in cuts if c <= len(stream)], bare_lf="normalize")
    assert not any(isinstance(e, MessageData) for e in events)


@settings(max_examples=200)
@given(_GARBAGE)
def test_eof_always_ends_in_connection_closed(stream: bytes) -> None:
    conn = connection()
    driver = Driver(conn)
    driver.write(stream)
    conn.receive_data(b"")
    driver.pump()
    assert conn.closed
    assert isinstance(conn.next_event(), ConnectionClosed)
