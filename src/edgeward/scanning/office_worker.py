"""The Office analysis worker process: ``python -m edgeward.scanning.office_worker FD LIMIT``.

Started and killed by :class:`edgeward.scanning.office.OfficeEngine`. It reads a request
(a JSON header, then the item's bytes) from the socket ``FD``, answers with JSON
(``{"findings": [[finding, signature], ...]}`` or ``{"error": "..."}``) and waits for the
next. ``LIMIT`` is its address-space limit in bytes (0: none), set before oletools is loaded.
"""

from __future__ import annotations

import json
import sys
from multiprocessing.connection import Connection

from edgeward.worker_process import limit_address_space

MAX_ITEM = 1024**3


def serve(conn: Connection) -> None:
    from edgeward.scanning.office_analysis import analyze
    from edgeward.scanning.oletools_setup import harden_xml

    harden_xml()
    while True:
        try:
            header = json.loads(conn.recv_bytes(64 * 1024))
            data = conn.recv_bytes(MAX_ITEM)
        except (EOFError, OSError, ValueError):
            return
        try:
            findings = analyze(data, str(header.get("name", "")), str(header.get("declared_type", "")),
                               str(header.get("true_type", "")))  # fmt: skip
            reply: dict[str, object] = {"findings": findings}
        except MemoryError:
            reply = {"error": "the document needs more memory than the analysis may use"}
        except Exception as exc:  # analyze swallows parse errors; anything else is a bug to report
            reply = {"error": f"analysis failed: {type(exc).__name__}: {exc}"}
        try:
            conn.send_bytes(json.dumps(reply).encode())
        except OSError:
            return


def main(argv: list[str]) -> None:
    fd, limit = int(argv[1]), int(argv[2])
    limit_address_space(limit)
    serve(Connection(fd))


if __name__ == "__main__":
    main(sys.argv)
