"""A strict RFC 5424 parser for the tests: every rule of the ABNF in §6 that a sender must keep.

It refuses what a lenient receiver would guess at: a PRI outside 0-191 or with a leading zero,
a version other than 1, header fields with non-PRINTUSASCII or over their length, a timestamp
not in RFC 3339 form, SD-NAMEs with '=', ' ', ']' or '"', an SD-PARAM value with an unescaped
'"' or a backslash before anything but '"', '\\' or ']', and a MSG that is not UTF-8.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEADER = re.compile(
    rb"^<(0|[1-9][0-9]{0,2})>1 "
    rb"(-|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})) "
    rb"([\x21-\x7e]{1,255}) ([\x21-\x7e]{1,48}) ([\x21-\x7e]{1,128}) ([\x21-\x7e]{1,32}) "
)
_SD_NAME = rb"[\x21-\x7e]{1,32}"


@dataclass
class Message:
    pri: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    sd: dict[str, dict[str, str]] = field(default_factory=dict)
    msg: str = ""

    @property
    def facility(self) -> int:
        return self.pri // 8

    @property
    def severity(self) -> int:
        return self.pri % 8


def _name(data: bytes, i: int) -> tuple[str, int]:
    m = re.compile(_SD_NAME).match(data, i)
    if not m:
        raise ValueError(f"no SD-NAME at {i}")
    name = m.group().split(b"=")[0].split(b"]")[0].split(b'"')[0]
    if not name:
        raise ValueError(f"empty SD-NAME at {i}")
    return name.decode("ascii"), i + len(name)


def parse_sd(data: bytes, i: int = 0) -> tuple[dict[str, dict[str, str]], int]:
    """The structured data starting at ``i``; returns it and the index after it."""
    if data[i : i + 1] == b"-":
        return {}, i + 1
    elements: dict[str, dict[str, str]] = {}
    while data[i : i + 1] == b"[":
        sd_id, i = _name(data, i + 1)
        params: dict[str, str] = {}
        while data[i : i + 1] == b" ":
            pname, i = _name(data, i + 1)
            if data[i : i + 2] != b'="':
                raise ValueError(f"no =\" after {pname}")
            i += 2
            value = bytearray()
            while True:
                c = data[i : i + 1]
                if not c:
                    raise ValueError("unterminated PARAM-VALUE")
                if c == b"\\":
                    nxt = data[i + 1 : i + 2]
                    if nxt not in (b'"', b"\\", b"]"):
                        raise ValueError(f"backslash before {nxt!r} (RFC 5424 6.3.3)")
                    value += nxt
                    i += 2
                    continue
                if c == b'"':
                    i += 1
                    break
                if c == b"]":
                    raise ValueError("unescaped ] in PARAM-VALUE")
                value += c
                i += 1
            params[pname] = value.decode("utf-8")
        if data[i : i + 1] != b"]":
            raise ValueError(f"SD-ELEMENT {sd_id} not closed at {i}")
        elements[sd_id] = params
        i += 1
    if not elements:
        raise ValueError("no STRUCTURED-DATA")
    return elements, i


def parse(data: bytes) -> Message:
    m = _HEADER.match(data)
    if not m:
        raise ValueError(f"not an RFC 5424 header: {data[:80]!r}")
    pri = int(m.group(1))
    if pri > 191:
        raise ValueError("PRI out of range")
    sd, i = parse_sd(data, m.end())
    rest = data[i:]
    msg = ""
    if rest:
        if not rest.startswith(b" "):
            raise ValueError("no SP between STRUCTURED-DATA and MSG")
        body = rest[1:]
        if body.startswith(b"\xef\xbb\xbf"):
            body = body[3:]
        msg = body.decode("utf-8")
    head = [g.decode("ascii") for g in m.groups()[1:]]
    return Message(pri, *head, sd=sd, msg=msg)
