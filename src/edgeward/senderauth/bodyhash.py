"""DKIM and ARC body hashes (``bh=``) of a message kept in a file, computed in one streaming pass.

A message over the inline budget reaches the checks as a :class:`~edgeward.message_file.MessageFile`
(header block in memory, body in a spool file). dkimpy wants the whole message as bytes and
canonicalises the whole body once per signature, which for a 10 MB message would hold several
copies of it. Here instead:

- :func:`body_start` finds where dkimpy's own parser (``dkim.rfc822_parse``: lines split on
  ``\\r?\\n``, the first empty line ends the header) puts the body, so the header part dkimpy
  reads is exactly the one it would read in the whole message;
- :class:`BodyDigests` reads the body once, in bounded pieces, and feeds it through the body
  canonicalisations of RFC 6376 §3.4.3 (simple) and §3.4.4 (relaxed), written to give byte for
  byte what dkimpy's ``canonicalize_body`` gives (including its quirks: a last line without CRLF
  keeps a trailing space under relaxed), into one hash per distinct (canonicalisation, hash
  algorithm, ``l=``) triple. Every state carried from one piece to the next is bounded (a
  pending CR, one pending space, a count of pending empty lines), so memory stays O(piece)
  whatever the body holds (megabytes of spaces or of empty lines included). The triples of
  every DKIM signature and ARC field can be planned from the header block first
  (:meth:`BodyDigests.plan_header`), so that DKIM and ARC, run at once, share a single pass;
- :class:`PrecomputedBodyMixin` is the one hook into dkimpy: its ``verify_sig_process`` checks
  ``bh=`` against the digest computed here, raising the very ``ValidationError`` dkimpy raises
  on a mismatch, and only after that match lets dkimpy verify the header signature with ``bh``
  taken out of *its copy* of the tag dict (so dkimpy does not hash a body it does not have).

Security (the hook must never turn a mismatch into a pass):

- the comparison is done before dkimpy's header check and raises on any difference; there is
  no path on which a signature with ``bh=`` reaches dkimpy's header check unchecked;
- dkimpy's header hash covers the raw signature field (``sig_header``, bh= included), not the
  tag dict, so dropping ``bh`` from the dict changes nothing that is signed;
- the reader's ``body`` is set to ``None``: if any dkimpy path still read it, it would raise
  (a permerror or fail of that signature), never hash an empty body that an attacker could sign;
- a triple not computed in advance is computed on demand by another pass over the file, so a
  signature is never checked against a digest of something else.

``tests/senderauth/test_dkim_file.py`` checks the canonicalisations against dkimpy's on random
bodies cut at every piece size from 1 byte, and whole verifications against the bytes path.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import dkim as dkimpy
from dkim.canonicalization import CanonicalizationPolicy, InvalidCanonicalizationPolicyError

from edgeward.message_file import CHUNK, MessageFile

__all__ = [
    "BodyDigests",
    "FileARC",
    "FileDKIM",
    "PrecomputedBodyMixin",
    "Triple",
    "body_start",
    "header_part",
    "triple_of",
]

#: (body canonicalisation name, hash constructor, l= or None): what decides a body hash.
Triple = tuple[bytes, Callable[..., Any], int | None]

_LINE_END = re.compile(rb"\r?\n")
# dkimpy's ``[\t ]+\r\n``, tried only where a WSP run begins and never backtracked into: the
# same matches (a match always starts a run), but a long run not followed by CRLF costs its
# length once instead of its length squared.
_TRAILING_WSP = re.compile(rb"(?<![\t ])[\t ]++\r\n")
_WSP = re.compile(rb"[\t ]+")
_CRLF = b"\r\n"


def header_part(header: bytes) -> bytes:
    """What dkimpy is given of a message kept in a file: its header block up to the body."""
    start = body_start(header)
    return header if start is None else header[:start]


def body_start(header: bytes) -> int | None:
    """Where dkimpy's ``rfc822_parse`` starts the body in a message beginning with ``header``:
    just after the first empty line (``\\r?\\n`` line ends), or None if ``header`` has none.

    The end of ``header`` itself counts as an empty line when it ends with a line end, as it
    does in dkimpy (``re.split`` leaves an empty last element).
    """
    pos = 0
    while True:
        if header.startswith(b"\r\n", pos):
            return pos + 2
        if header.startswith(b"\n", pos):
            return pos + 1
        if pos == len(header):
            return pos if pos == 0 or header.endswith(b"\n") else None
        nl = header.find(b"\n", pos)
        if nl < 0:
            return None
        pos = nl + 1


def triple_of(sig: dict[bytes, bytes], default_c: bytes, tlsrpt: bool = False) -> Triple | None:
    """The triple dkimpy hashes the body under for signature tags ``sig``, or None where dkimpy
    would stop before the body (bad ``c=``, unknown ``a=``, an ``l=`` that is not a number)."""
    try:
        policy = CanonicalizationPolicy.from_c_value(sig.get(b"c", default_c))
        hasher = dkimpy.HASH_ALGORITHMS[sig[b"a"]]
        length = int(sig[b"l"]) if b"l" in sig and not tlsrpt else None
    except (InvalidCanonicalizationPolicyError, KeyError, ValueError):
        return None
    return policy.body_algorithm.name, hasher, length


#: What the regular expressions work on at a time. ``re.sub`` keeps every match of a piece as a
#: separate object until it joins them: over 1 MB for 64 KiB of ordinary text under relaxed, and
#: more for text made of tabs. Slices this small keep that near 100 KiB, whatever the text.
SLICE = 4096


def _slices(data: bytes) -> Iterator[bytes]:
    """``data`` in slices of about :data:`SLICE` bytes, never cut between the CR and LF of a
    line end (the canonicalisations take a piece that ends inside one for a bare CR)."""
    start = 0
    while len(data) - start > SLICE:
        end = start + SLICE
        if data[end - 1 : end + 1] == _CRLF:
            end += 1
        yield data[start:end]
        start = end
    if start < len(data):
        yield data[start:]


def _trailing_crlfs(piece: bytes) -> int:
    """How many CRLF pairs end ``piece``, a line-normalised piece (every LF follows a CR)."""
    tail = piece[len(piece.rstrip(b"\r\n")) :]  # CRLF pairs and bare CRs, in C rather than a loop
    if tail.endswith(b"\r"):
        return 0
    # A bare CR in the tail is one followed by another CR; only the pairs after the last count.
    return len(tail[tail.rfind(b"\r\r") + 1 :]) // 2


class _Canon:
    """One body canonicalisation over the line-normalised stream, with the RFC 6376 rule that
    trailing empty lines are ignored applied across piece edges."""

    def __init__(self, relaxed: bool, sinks: list[_Sink]) -> None:
        self.relaxed = relaxed
        self.sinks = sinks
        self.space = False  # relaxed: a WSP run at the end of the last piece, not yet known trailing
        self.empty_lines = 0  # CRLFs seen after the last non-empty content, not yet known trailing
        self.content = False  # anything but trailing empty lines emitted
        self.length = 0  # canonical length so far

    def _emit(self, data: bytes) -> None:
        self.length += len(data)
        for sink in self.sinks:
            sink.update(data)

    def feed(self, piece: bytes) -> None:
        """``piece`` never ends inside a CRLF (the reader holds a trailing CR back)."""
        if self.relaxed:
            if self.space:
                # One space stands for the whole pending run: compression makes any run one space
                # and a following CRLF removes it, so the run's length never matters.
                piece = b" " + piece
            piece = _WSP.sub(b" ", _TRAILING_WSP.sub(_CRLF, piece))
            self.space = piece.endswith(b" ")
            if self.space:
                piece = piece[:-1]
        end = len(piece) - 2 * _trailing_crlfs(piece)
        if end == 0:
            self.empty_lines += len(piece) // 2
            return
        self._flush_empty_lines()
        self._emit(piece[:end])
        self.content = True
        self.empty_lines = (len(piece) - end) // 2

    def _flush_empty_lines(self) -> None:
        # Empty lines followed by content are part of the body; emitted in bounded blocks so a
        # body of millions of empty lines never becomes one allocation.
        while self.empty_lines:
            n = min(self.empty_lines, CHUNK // 2)
            self._emit(_CRLF * n)
            self.empty_lines -= n

    def finish(self) -> None:
        if self.space:
            # A WSP run at the very end, after the last line end: dkimpy compresses it but keeps it.
            self._flush_empty_lines()
            self._emit(b" ")
            self.content = True
            self.space = False
        # dkimpy (strip_trailing_lines, correct_empty_body): content then exactly one CRLF; an empty
        # body is one CRLF under simple and nothing under relaxed.
        if self.content or not self.relaxed:
            self._emit(_CRLF)


class _Sink:
    """One hash over the canonical body, stopping after ``l=`` bytes when there is a limit."""

    def __init__(self, hasher: Callable[..., Any], length: int | None) -> None:
        self.hash = hasher()
        self.left = length

    def update(self, data: bytes) -> None:
        if self.left is None:
            self.hash.update(data)
        elif self.left > 0:
            self.hash.update(data[: self.left])
            self.left -= min(self.left, len(data))


class BodyDigests:
    """Body hashes and canonical lengths of one message's body, computed from its pieces."""

    def __init__(self, pieces: Callable[[], Iterable[bytes]]) -> None:
        self._pieces = pieces
        self._digests: dict[Triple, bytes] = {}
        self._lengths: dict[bytes, int] = {}
        self._planned: list[Triple] = []
        # DKIM and ARC may share one instance from two worker threads: the first to need a
        # digest makes the pass for everything planned, the other waits and finds it made.
        self._lock = threading.RLock()

    def plan(self, triples: Iterable[Triple]) -> None:
        """Triples the next pass computes along with whatever it is asked for."""
        with self._lock:
            self._planned.extend(triples)

    def plan_header(self, header: bytes, max_signatures: int, max_arc_fields: int) -> None:
        """Plan every body hash the signatures in ``header`` can ask for: the first
        ``max_signatures`` DKIM-Signature fields and up to ``max_arc_fields`` ARC fields (the
        bounds the DKIM and ARC checks apply), so that one pass serves both checks."""
        start = body_start(header)
        try:
            headers, _ = dkimpy.rfc822_parse(header if start is None else header[:start])
        except Exception:  # dkimpy parses attacker input; the checks report an unreadable header
            return
        dkim_fields = [v for n, v in headers if n.lower() == b"dkim-signature"][:max_signatures]
        arc_fields = [v for n, v in headers if n.lower() in (b"arc-seal", b"arc-message-signature")]
        fields = [(v, b"simple/simple") for v in dkim_fields]
        if len(arc_fields) <= max_arc_fields:
            fields += [(v, b"relaxed/relaxed") for v in arc_fields]
        for value, default_c in fields:
            try:
                tags = dkimpy.util.parse_tag_value(value)
            except dkimpy.util.InvalidTagValueList:
                continue
            triple = triple_of(tags, default_c) if b"bh" in tags else None
            if triple is not None:
                self.plan([triple])

    @classmethod
    def of_file(cls, message: MessageFile, start: int | None, chunk: int = CHUNK) -> BodyDigests:
        """The body dkimpy would see in ``message``: from ``start`` (:func:`body_start` of its
        header) to the end, or nothing when dkimpy finds no body."""

        def pieces() -> Iterator[bytes]:
            if start is None:
                return
            yield from message.chunks(start, None, chunk)

        return cls(pieces)

    @classmethod
    def of_message(cls, message: MessageFile, chunk: int = CHUNK) -> BodyDigests:
        """The body dkimpy would see in ``message``, read in ``chunk``-sized pieces."""
        return cls.of_file(message, body_start(message.header), chunk)

    def _resolve(self, triple: Triple) -> Triple:
        # dkimpy slices ``body[:l]``: a negative l keeps all but the last -l bytes. A stream cannot
        # know where that is before its end, so such a limit becomes the positive one it amounts
        # to once the canonical length is known (one more pass, for a signature no signer makes).
        name, hasher, length = triple
        if length is None or length >= 0:
            return triple
        return name, hasher, max(0, self.canonical_length(name) + length)

    def compute(self, triples: Iterable[Triple], lengths: Iterable[bytes] = ()) -> None:
        """One pass over the body for every triple not yet known, recording the canonical length
        of every canonicalisation the pass runs (and of those in ``lengths``)."""
        with self._lock:
            triples = [*self._planned, *triples]
            self._planned = []
            self._compute(triples, lengths)

    def _compute(self, triples: list[Triple], lengths: Iterable[bytes]) -> None:
        if any(t[2] is not None and t[2] < 0 for t in triples):
            self._compute([t for t in triples if t[2] is None or t[2] >= 0], lengths)
            triples = [self._resolve(t) for t in triples]
        wanted = [t for t in dict.fromkeys(triples) if t not in self._digests]
        names = {t[0] for t in wanted} | (set(lengths) - self._lengths.keys())
        if not names:
            return
        sinks = {t: _Sink(t[1], t[2]) for t in wanted}
        canons = {
            name: _Canon(name == b"relaxed", [s for t, s in sinks.items() if t[0] == name]) for name in names
        }
        cr = b""  # a CR at the end of a piece: it may be the first half of a line end
        for raw in self._pieces():
            data = cr + raw
            cr = b"\r" if data.endswith(b"\r") else b""
            if cr:
                data = data[:-1]
            for part in _slices(data):
                if part.count(b"\n") != part.count(_CRLF):
                    # dkimpy splits on \r?\n and joins with CRLF: every line end becomes CRLF.
                    part = _LINE_END.sub(_CRLF, part)
                for canon in canons.values():
                    canon.feed(part)
        for canon in canons.values():
            if cr:
                canon.feed(cr)
            canon.finish()
        for t, sink in sinks.items():
            self._digests[t] = sink.hash.digest()
        for name, canon in canons.items():
            self._lengths[name] = canon.length

    def digest(self, triple: Triple) -> bytes:
        with self._lock:
            triple = self._resolve(triple)
            if triple not in self._digests:
                self.compute([triple])
            return self._digests[triple]

    def canonical_length(self, name: bytes) -> int:
        with self._lock:
            if name not in self._lengths:
                self.compute([], [name])
            return self._lengths[name]


class PrecomputedBodyMixin:
    """Put before ``dkim.DKIM`` or ``dkim.ARC``: their signature check, with ``bh=`` checked
    against :class:`BodyDigests` instead of a body held in memory.

    dkimpy's ``verify_sig_process`` does, in order: the tlsrpt service checks, ``c=``, the hash
    algorithm, the body hash (when ``bh=`` is present), then the header hash and the signature.
    This override repeats the steps before the body hash (same checks, same exceptions, so a
    signature fails the same way and with the same words), compares ``bh=``, and hands dkimpy
    the rest with ``bh`` removed from a copy of the tags.
    """

    digests: BodyDigests
    tlsrpt: bool | str  # dkimpy's own flag: False, True or "strict"
    seqtlsrpt: bool

    def verify_sig_process(
        self, sig: dict[bytes, bytes], include_headers: list[bytes], sig_header: Any, dnsfunc: Any
    ) -> Any:
        if b"bh" in sig:
            self._check_body_hash(sig)
            sig = {k: v for k, v in sig.items() if k != b"bh"}
        return super().verify_sig_process(sig, include_headers, sig_header, dnsfunc)  # type: ignore[misc]

    def _check_body_hash(self, sig: dict[bytes, bytes]) -> None:
        # dkimpy 1.1.8's checks ahead of the body hash, with its exceptions and messages
        # (test_dkim_file.py fails if dkimpy's function stops looking the way this assumes).
        if self.tlsrpt == "strict" and not self.seqtlsrpt:
            raise dkimpy.ValidationError("Message is tlsrpt and Service Type is not tlsrpt")
        if not self.tlsrpt and self.seqtlsrpt:
            raise dkimpy.ValidationError("Message is not tlsrpt and Service Type is tlsrpt")
        try:
            policy = CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
        except InvalidCanonicalizationPolicyError as e:
            raise dkimpy.MessageFormatError(f"invalid c= value: {e.args[0]}") from e
        hasher = dkimpy.HASH_ALGORITHMS[sig[b"a"]]
        length = int(sig[b"l"]) if b"l" in sig and not self.tlsrpt else None
        bodyhash = self.digests.digest((policy.body_algorithm.name, hasher, length))
        try:
            bh = base64.b64decode(re.sub(rb"\s+", b"", sig[b"bh"]))
        except TypeError as e:
            raise dkimpy.MessageFormatError(str(e)) from e
        if bodyhash != bh:
            # dkimpy's words ("%s" of bytes is their repr), which dkim.py reads as a plain fail.
            got, expected = base64.b64encode(bodyhash), sig[b"bh"]
            raise dkimpy.ValidationError(f"body hash mismatch (got {got!r}, expected {expected!r})")


class FileDKIM(PrecomputedBodyMixin, dkimpy.DKIM):  # type: ignore[misc]  # dkimpy ships no type information
    """dkimpy's DKIM verifier over a header block, the body hashed by :class:`BodyDigests`."""

    def __init__(self, header: bytes, digests: BodyDigests, **kwargs: Any) -> None:
        super().__init__(header, **kwargs)
        self.digests = digests
        self.body = None  # never read: any dkimpy path that tried would raise, not hash b""


class FileARC(PrecomputedBodyMixin, dkimpy.ARC):  # type: ignore[misc]  # dkimpy ships no type information
    """dkimpy's ARC verifier over a header block, the body hashed by :class:`BodyDigests`."""

    def __init__(self, header: bytes, digests: BodyDigests, **kwargs: Any) -> None:
        super().__init__(header, **kwargs)
        self.digests = digests
        self.body = None  # never read: any dkimpy path that tried would raise, not hash b""
