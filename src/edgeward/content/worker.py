"""A content-scoring worker process: ``python -m edgeward.content.worker FD LIMIT``.

Started by :class:`edgeward.content.workers.ScoringWorkers` on one end of a socket pair. It
answers every request frame with exactly one answer frame, in order, so the gateway matches
answers to requests by position:

- ``{"op": "model", "version", "good", "bad", "own"}`` with the model file's bytes: build the
  classifier (custom words, accepted domains, learning off: the gateway's own classifier
  learns and sends the result) and answer ``{"loaded": version}``;
- ``{"op": "score", "auth"}`` with the message's bytes: answer ``{"verdict": {...}, "cpu": s}``
  (``verdict_to_json``), the CPU seconds the scoring took;
- anything that fails answers ``{"error": "..."}`` and the worker reads on.

A frame is ``!II`` (header length, data length), the JSON header, then the data. Answers are
JSON, never pickle: the worker has parsed hostile mail, and the gateway must not run what it
says. ``LIMIT`` is an address-space limit in bytes (0: none), set before anything is parsed.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
from typing import Any

from edgeward.content.classifier import ContentVerdict, SpamClassifier
from edgeward.content.lookalike import Lookalike
from edgeward.content.model import LinearModel
from edgeward.content.words import CustomWords
from edgeward.worker_process import limit_address_space

FRAME = struct.Struct("!II")
ANSWER = struct.Struct("!I")
# A scored message is at most the content filter's max_size (11 MB by default) or a file
# message's text window; a model file is a few MB. Anything larger is not a request of ours.
MAX_HEADER = 1024 * 1024
MAX_DATA = 256 * 1024 * 1024

__all__ = ["ANSWER", "FRAME", "MAX_DATA", "MAX_HEADER", "serve", "verdict_from_json", "verdict_to_json"]


def verdict_to_json(verdict: ContentVerdict) -> dict[str, Any]:
    return {
        "p": verdict.probability,
        "scl": verdict.scl,
        "pcl": verdict.pcl,
        "findings": [[name, weight] for name, weight in verdict.findings],
        "lookalikes": [[hit.host, hit.domain, hit.trick, hit.where] for hit in verdict.lookalikes],
    }


def verdict_from_json(value: object) -> ContentVerdict:
    """The verdict a worker sent, checked field by field; ``ValueError`` for anything else."""
    if not isinstance(value, dict):
        raise ValueError("a verdict is an object")
    probability, scl, pcl = value.get("p"), value.get("scl"), value.get("pcl")
    if not isinstance(probability, (int, float)) or not 0.0 <= probability <= 1.0:
        raise ValueError("bad probability")
    if type(scl) is not int or not 0 <= scl <= 9 or type(pcl) is not int or not 0 <= pcl <= 8:
        raise ValueError("bad SCL or PCL")
    findings = value.get("findings")
    lookalikes = value.get("lookalikes")
    if not isinstance(findings, list) or not isinstance(lookalikes, list):
        raise ValueError("bad findings")
    pairs: list[tuple[str, float]] = []
    for item in findings:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], (int, float))):  # fmt: skip
            raise ValueError("bad finding")
        pairs.append((item[0], float(item[1])))
    hits: list[Lookalike] = []
    for item in lookalikes:
        if not (isinstance(item, list) and len(item) == 4 and all(isinstance(x, str) for x in item)):
            raise ValueError("bad look-alike")
        hits.append(Lookalike(item[0], item[1], item[2], item[3]))
    return ContentVerdict(float(probability), scl, pcl, tuple(pairs), tuple(hits))


def _read_exact(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise EOFError("the gateway closed the socket")
        got += n
    return bytes(buffer)


def _answer(sock: socket.socket, reply: dict[str, Any]) -> None:
    body = json.dumps(reply, separators=(",", ":")).encode()
    sock.sendall(ANSWER.pack(len(body)) + body)


def _handle(header: dict[str, Any], data: bytes, state: dict[str, SpamClassifier]) -> dict[str, Any]:
    op = header.get("op")
    if op == "model":
        words = CustomWords(tuple(header.get("good", ())), tuple(header.get("bad", ())))
        state["classifier"] = SpamClassifier(
            LinearModel.from_bytes(data), words=words, learning=False, own_domains=header.get("own", ())
        )
        return {"loaded": header.get("version")}
    if op == "score":
        classifier = state.get("classifier")
        if classifier is None:
            return {"error": "no model loaded"}
        started = time.process_time()
        verdict = classifier.score(data, None, header.get("auth") or {})
        return {"verdict": verdict_to_json(verdict), "cpu": time.process_time() - started}
    return {"error": f"unknown request {op!r}"}


def serve(sock: socket.socket) -> None:
    state: dict[str, SpamClassifier] = {}
    while True:
        try:
            header_size, data_size = FRAME.unpack(_read_exact(sock, FRAME.size))
            if header_size > MAX_HEADER or data_size > MAX_DATA:
                return  # not our gateway speaking: nothing after this can be framed
            header = json.loads(_read_exact(sock, header_size))
            data = _read_exact(sock, data_size)
        except (EOFError, OSError, ValueError):
            return
        try:
            reply = _handle(header, data, state) if isinstance(header, dict) else {"error": "bad request"}
        except MemoryError:
            reply = {"error": "the message needs more memory than scoring may use"}
        except Exception as exc:  # analysis never raises for bad mail; anything else is a bug to report
            reply = {"error": f"scoring failed: {type(exc).__name__}: {exc}"}
        try:
            _answer(sock, reply)
        except OSError:
            return


def main(argv: list[str]) -> None:
    fd, limit = int(argv[1]), int(argv[2])
    limit_address_space(limit)
    serve(socket.socket(fileno=fd))


if __name__ == "__main__":
    main(sys.argv)
