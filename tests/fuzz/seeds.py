"""Seed inputs for the fuzz targets and the mutations applied to them.

Seeds come from three places: the shared parser-test corpora (``<repo>/../shared/corpora``,
MIME and RFC 822 messages from other parsers' test suites, read straight out of their
``.tar.gz``), the shared SMTP corpora (smuggling end-of-data sequences, open-relay address
forms), and the project's own golden transcripts. The shared folder is optional: tests that
need it skip with the reason when it is absent (``EDGEWARD_CORPORA`` names another folder),
and every target also has generated inputs.

Mutations are the classic byte-level ones (flip, insert, delete, duplicate, truncate, splice
two seeds) plus insertion of the bytes that matter to these parsers: CR, LF, NUL, DEL, 8-bit
bytes, a lone dot line, MIME dashes, encoded-word openers.
"""

from __future__ import annotations

import functools
import json
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

from hypothesis import strategies as st

from tests.smtp.smtp_transcript import Transcript, load, transcripts

ROOT = Path(__file__).resolve().parents[2]
# EDGEWARD_CORPORA points elsewhere (a checkout that is not beside the shared folder).
CORPORA = Path(os.environ.get("EDGEWARD_CORPORA") or ROOT.parent / "shared" / "corpora")
PARSER_TESTS = CORPORA / "parser-tests"
SMTP_CORPORA = CORPORA / "smtp"
TRANSCRIPTS = ROOT / "tests" / "smtp" / "transcripts"

# Seeds are cut to this size: mutations near the end of a 2 MB message find nothing a 16 KiB
# prefix does not, and keep each example fast.
SEED_BYTES = 16 * 1024
MAX_MESSAGE_BYTES = 512 * 1024

SPECIAL = (
    b"\r",
    b"\n",
    b"\r\n",
    b"\x00",
    b"\x7f",
    b"\x80",
    b"\xff",
    b"\xc3",
    b"\xe2\x80",
    b"\r\n.\r\n",
    b"\n.\n",
    b"\r\n\r\n",
    b".",
    b"--",
    b":",
    b";",
    b"=",
    b" ",
    b"\t",
    b"=?utf-8?b?",
    b"=?x?q?",
    b"<",
    b">",
    b"@",
    b'"',
    b"\\",
    b"[",
    b"]",
)


def corpus_reason(folder: Path) -> str:
    return f"shared corpus folder {folder} is not present on this machine"


@functools.lru_cache(maxsize=1)
def corpus_messages() -> tuple[bytes, ...]:
    """Every regular file of the parser-test archives (up to ``MAX_MESSAGE_BYTES`` each)."""
    out: list[bytes] = []
    for archive in sorted(PARSER_TESTS.glob("*.tar.gz")):
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if not member.isfile() or member.size == 0:
                    continue
                handle = tar.extractfile(member)
                if handle is not None:
                    with handle:
                        out.append(handle.read(MAX_MESSAGE_BYTES))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def message_seeds() -> tuple[bytes, ...]:
    """Corpus messages that look like messages (a colon early on), cut to ``SEED_BYTES``."""
    return tuple(m[:SEED_BYTES] for m in corpus_messages() if b":" in m[:200])


@functools.lru_cache(maxsize=1)
def smuggling_sequences() -> tuple[bytes, ...]:
    path = SMTP_CORPORA / "smtp-smuggling-eod-sequences.json"
    if not path.is_file():
        return ()
    data = json.loads(path.read_text("utf-8"))
    return tuple(bytes.fromhex(s["hex"]) for s in data["sequences"])


_PLACEHOLDERS = {
    "from": "antispam",
    "to": "relaytest",
    "domain": "evil.test",
    "ip": "192.0.2.25",
    "srvname": "mx.example.net",
}


@functools.lru_cache(maxsize=1)
def relay_addresses() -> tuple[str, ...]:
    """The open-relay address forms of the shared corpus, placeholders filled in."""
    path = SMTP_CORPORA / "open-relay-address-forms.json"
    if not path.is_file():
        return ()
    data = json.loads(path.read_text("utf-8"))
    forms = {case[key] for case in data["tests"] for key in ("mail_from", "rcpt_to")}
    return tuple(sorted(form.format(**_PLACEHOLDERS) for form in forms))


@functools.lru_cache(maxsize=1)
def golden_transcripts() -> tuple[Transcript, ...]:
    return tuple(load(path) for path in transcripts(TRANSCRIPTS))


def client_stream(transcript: Transcript) -> bytes:
    """Everything the client of a transcript writes, as one stream."""
    return b"".join(step.data for step in transcript.steps if step.kind == "write")


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes], max_ops: int = 8) -> bytes:
    """A seed changed by up to ``max_ops`` byte-level mutations."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.sampled_from(("flip", "insert", "special", "delete", "dup", "truncate", "splice")))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "special":
            data[pos:pos] = draw(st.sampled_from(SPECIAL)) * draw(st.integers(1, 3))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "dup":
            end = pos + draw(st.integers(1, 256))
            data[pos:pos] = data[pos:end]
        elif op == "truncate":
            del data[pos:]
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, len(other)))
            data[pos:] = other[start:]
    return bytes(data)


def cuts(length: int) -> st.SearchStrategy[list[int]]:
    """Points at which to split a stream of ``length`` bytes into separate reads."""
    return st.lists(st.integers(0, length), max_size=10).map(lambda xs: sorted(set(xs)))
