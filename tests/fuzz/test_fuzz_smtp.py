"""Fuzzing the sans-IO SMTP core: command parser, state machine, DATA and BDAT readers.

Inputs are the golden transcripts' client streams mutated byte by byte, smuggling sequences
from the shared corpus spliced into message bodies, and command sequences generated from the
grammar (verbs, paths, ESMTP parameters, bodies, BDAT with right and wrong sizes). For every
input: the core never raises, every refusal is a 4xx/5xx with an enhanced code, every reply it
writes is one well-formed CRLF-terminated reply, the events and the output are the same however
the input is split into reads, and EOF always ends in ``ConnectionClosed``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeward.errors import ProtocolError
from edgeward.smtp import Extensions, ProtocolLimits
from edgeward.smtp.parse import parse_auth, parse_bdat, parse_helo
from tests.fuzz import seeds
from tests.fuzz.profiles import fuzz_settings
from tests.fuzz.smtp_driver import check_run, run_core
from tests.smtp.smtp_transcript import DEFAULT_EXTENSIONS

pytestmark = pytest.mark.fuzz

_TRANSCRIPTS = seeds.golden_transcripts()
_STREAMS = tuple(seeds.client_stream(t) for t in _TRANSCRIPTS)

LIMITS = st.builds(
    ProtocolLimits,
    max_line=st.sampled_from([16, 64, 512, 2048]),
    max_message_size=st.sampled_from([0, 10, 200, 4096, 10 * 1024 * 1024]),
    max_header_size=st.sampled_from([0, 8, 100, 64 * 1024]),
    max_recipients=st.integers(1, 4),
    max_commands=st.sampled_from([3, 20, 1000]),
    max_protocol_errors=st.sampled_from([0, 2, 5, 50]),
    bare_lf=st.sampled_from(["reject", "normalize"]),
)
EXTENSIONS = st.builds(
    Extensions,
    hostname=st.just("mx.example.net"),
    size=st.sampled_from([0, 1000, 10 * 1024 * 1024]),
    starttls=st.booleans(),
    auth_mechanisms=st.sampled_from([(), ("PLAIN",), ("PLAIN", "LOGIN")]),
    auth_before_tls=st.booleans(),
    requiretls=st.booleans(),
    chunking=st.booleans(),
    dsn=st.booleans(),
    smtputf8=st.booleans(),
    pipelining=st.booleans(),
)


def _same_however_split(stream: bytes, cuts: list[int], limits: ProtocolLimits, ext: Extensions) -> None:
    whole = run_core(stream, [], limits, ext)
    check_run(whole, limits)
    assert whole.closed
    split = run_core(stream, cuts, limits, ext)
    assert split.events == whole.events
    assert b"".join(split.writes) == b"".join(whole.writes)


# --- mutated transcripts ------------------------------------------------------------------------


@fuzz_settings(2)
@given(st.data())
def test_mutated_transcripts(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(_TRANSCRIPTS) - 1))
    transcript = _TRANSCRIPTS[index]
    stream = data.draw(seeds.mutated([_STREAMS[index], *_STREAMS[:3]]))
    limits = transcript.limits if data.draw(st.booleans()) else data.draw(LIMITS)
    ext = transcript.extensions if data.draw(st.booleans()) else data.draw(EXTENSIONS)
    split_at = data.draw(seeds.cuts(len(stream)))
    _same_however_split(stream, split_at, limits, ext)


@fuzz_settings(1)
@given(st.binary(max_size=600), st.data())
def test_random_bytes(stream: bytes, data: st.DataObject) -> None:
    limits = data.draw(LIMITS)
    _same_however_split(stream, data.draw(seeds.cuts(len(stream))), limits, DEFAULT_EXTENSIONS)


# --- generated command sequences ------------------------------------------------------------------

_ATOM = st.text("abcXYZ019-._+=%!#$&'*/?^`{|}~", min_size=1, max_size=12)
_DOMAIN = st.one_of(
    st.lists(st.text("abz09-", min_size=1, max_size=10), min_size=1, max_size=4).map(".".join),
    st.sampled_from(
        ["[127.0.0.1]", "[IPv6:::1]", "[ipv6:2001:db8::1]", "[300.1.1.1]", "example.net", "é.test"]
    ),
)
_LOCAL = st.one_of(
    _ATOM,
    st.text(' "\\@<>abc,:;é\x7f\t', max_size=10).map(lambda s: '"' + s + '"'),
)
_PATH = st.one_of(
    st.just(""),
    st.builds(lambda lp, d: f"{lp}@{d}", _LOCAL, _DOMAIN),
    st.builds(lambda r, lp, d: f"@{r}:{lp}@{d}", _DOMAIN, _LOCAL, _DOMAIN),
    st.sampled_from(["Postmaster", "postmaster", "a@b@c", "<a@b>", "a@", "@a"]),
    st.text(max_size=20),
)
_PARAM = st.one_of(
    st.sampled_from(
        [
            "SIZE=100",
            "SIZE=99999999999999999",
            "SIZE=",
            "BODY=8BITMIME",
            "BODY=BINARYMIME",
            "BODY=7bit",
            "SMTPUTF8",
            "RET=HDRS",
            "RET=full",
            "ENVID=a+2Bb",
            "ENVID=+0A",
            "ENVID=+zz",
            "AUTH=<>",
            "REQUIRETLS",
            "NOTIFY=NEVER",
            "NOTIFY=SUCCESS,FAILURE",
            "NOTIFY=DELAY,DELAY",
            "ORCPT=rfc822;a@b",
            "ORCPT=;x",
            "X-UNKNOWN=1",
        ]
    ),
    st.builds(lambda k, v: f"{k}={v}", st.text("ABCZ-1", min_size=1, max_size=6), st.text(max_size=8)),
)


_VERBS = ["EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY", "HELP"]
_VERBS += ["STARTTLS", "AUTH", "EXPN", "GET", "mail", "ehlo", "XYZZY"]


@st.composite
def _command(draw: st.DrawFn) -> bytes:
    verb = draw(st.sampled_from(_VERBS))
    if verb.upper() == "MAIL":
        params = draw(st.lists(_PARAM, max_size=3))
        arg = f"FROM:<{draw(_PATH)}>" + "".join(" " + p for p in params)
    elif verb == "RCPT":
        params = draw(st.lists(_PARAM, max_size=2))
        arg = f"TO:<{draw(_PATH)}>" + "".join(" " + p for p in params)
    elif verb == "BDAT":
        body = draw(st.binary(max_size=40))
        size = len(body) + draw(st.sampled_from([0, 0, 0, -1, 1]))
        last = draw(st.sampled_from(["", " LAST", " last", " NOW"]))
        return f"BDAT {max(size, 0)}{last}\r\n".encode() + body
    elif verb == "AUTH":
        arg = draw(st.sampled_from(["PLAIN", "PLAIN dGVzdA==", "LOGIN", "PLAIN a b", "CRAM-MD5", ""]))
    elif verb in ("EHLO", "HELO", "ehlo"):
        arg = draw(st.sampled_from(["client.example", "", "[192.0.2.1]", "x y", "é"]))
    elif verb in ("VRFY", "HELP"):
        arg = draw(st.text(max_size=10))
    else:
        arg = draw(st.sampled_from(["", "", "x"]))
    line = (verb + (" " + arg if arg else "")).encode("utf-8", "surrogatepass")
    end = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"\r\r\n", b"\x00\r\n"]))
    return line + end


@st.composite
def _body(draw: st.DrawFn) -> bytes:
    messages = seeds.message_seeds()
    base = (
        draw(seeds.mutated(messages)) if messages and draw(st.booleans()) else draw(st.binary(max_size=200))
    )
    sequences = seeds.smuggling_sequences() or (b"\n.\n",)
    for _ in range(draw(st.integers(0, 2))):
        pos = draw(st.integers(0, len(base)))
        base = base[:pos] + draw(st.sampled_from(sequences)) + base[pos:]
    return base[:3000] + b"\r\n.\r\n"


@st.composite
def _session(draw: st.DrawFn) -> bytes:
    out = bytearray()
    if draw(st.booleans()):
        out += b"EHLO client.example\r\nMAIL FROM:<a@client.example>\r\nRCPT TO:<b@example.net>\r\n"
    for _ in range(draw(st.integers(1, 12))):
        out += draw(_command())
        if out.endswith(b"DATA\r\n") and draw(st.booleans()):
            out += draw(_body())
    return bytes(out)


@fuzz_settings(2)
@given(_session(), st.data())
def test_generated_sessions(stream: bytes, data: st.DataObject) -> None:
    limits = data.draw(LIMITS) if data.draw(st.booleans()) else ProtocolLimits()
    ext = data.draw(EXTENSIONS) if data.draw(st.booleans()) else DEFAULT_EXTENSIONS
    _same_however_split(stream, data.draw(seeds.cuts(len(stream))), limits, ext)


@fuzz_settings(1)
@given(_session(), st.integers(1, 7))
def test_fixed_size_reads_match_one_read(stream: bytes, size: int) -> None:
    """The transcripts' 1-, 2-, 3- and 7-byte replay, on generated sessions."""
    limits = replace(ProtocolLimits(), max_protocol_errors=50)
    _same_however_split(stream, list(range(size, len(stream), size)), limits, DEFAULT_EXTENSIONS)


# --- the argument parsers of the other commands ---------------------------------------------------


@fuzz_settings(1)
@given(st.one_of(st.text(max_size=30), st.sampled_from(["0", "10 LAST", "10 last", "1 LAST x", " 1", "١"])))
def test_other_command_arguments(arg: str) -> None:
    """HELO, BDAT and AUTH arguments: a value, or ProtocolError with a 5xx syntax reply."""
    for parse in (parse_helo, parse_bdat, parse_auth):
        try:
            value = parse(arg)
        except ProtocolError as exc:
            assert exc.reply.code == 501 and exc.reply.enhanced == "5.5.4", exc.reply
            continue
        if parse is parse_bdat:
            size, last = value  # type: ignore[misc]
            assert parse_bdat(f"{size} LAST" if last else str(size)) == value
        elif parse is parse_helo:
            assert value == arg.strip(" ") and value


@fuzz_settings(1)
@given(st.integers(0, 10**15 - 1), st.booleans())
def test_bdat_sizes_read_back(size: int, last: bool) -> None:
    assert parse_bdat(f"{size} LAST" if last else str(size)) == (size, last)
