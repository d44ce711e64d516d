"""The Authentication-Results header field (RFC 8601): the one we write, and the ones a client
sent under our name, which we remove.

:func:`build` writes a single field with our authserv-id from the SPF, DKIM, DMARC and ARC
results, one result per folded line. SPF comes in as plain inputs (:class:`SpfReport`) so this
module does not depend on how SPF was checked.

:func:`remove_own` deletes every Authentication-Results field whose authserv-id is ours
(compared without regard to case, after comments and folding), leaving fields of other
authserv-ids alone. RFC 8601 §5 requires this: a field under our name that we did not write is a
forgery, and anything downstream that trusts our name (the content classifier, a mailbox
filter) would believe it.

Security: every value copied into the header comes from the sender (addresses, HELO names,
signature domains). Each is written as an RFC 8601 §2.2 ``pvalue`` when it is a plain domain or
address, otherwise as a quoted-string with control characters removed, so no value can end the
field, start a new one, or add a result.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from edgeward.senderauth.arc import ArcResult
from edgeward.senderauth.dkim import DkimResult, DkimStatus
from edgeward.senderauth.dmarc import DmarcResult, DmarcStatus

__all__ = ["SpfReport", "authserv_id", "build", "own_results", "remove_own"]

FIELD = "Authentication-Results"
SPF_RESULTS = frozenset({"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy"})

_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+$")  # RFC 2045 token, without tspecials
_ADDRESS = re.compile(
    r"^(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)?@[A-Za-z0-9.-]+$"
)
_MAX_VALUE = 256
_SHORT_LINE = 100  # a result longer than this is folded between its properties


@dataclass(frozen=True, slots=True)
class SpfReport:
    """An SPF result as RFC 8601 reports it: the result word and the identities checked."""

    result: str
    mailfrom: str = ""
    helo: str = ""


def _value(text: str) -> str:
    """``text`` as an RFC 8601 pvalue: bare if it is a token or an address, else quoted."""
    cleaned = "".join(ch for ch in text if ch.isprintable())[:_MAX_VALUE]
    if cleaned and (_TOKEN.match(cleaned) or _ADDRESS.match(cleaned)):
        return cleaned
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str) -> str:
    cleaned = "".join(ch for ch in text if ch.isprintable() and ch not in "()\\")[:_MAX_VALUE]
    return f"({cleaned})"


def _line(parts: list[str]) -> str:
    """One result: on one line when short, else one property per folded line, so no line can
    pass RFC 5322's 998 octets however long the sender made its names."""
    joined = " ".join(parts)
    return joined if len(joined) <= _SHORT_LINE else "\r\n\t".join(parts)


def _spf(spf: SpfReport) -> list[str]:
    result = spf.result.strip().lower()
    if result not in SPF_RESULTS:
        result = "permerror"
    parts = [f"spf={result}"]
    if spf.mailfrom:
        parts.append(f"smtp.mailfrom={_value(spf.mailfrom)}")
    if spf.helo:
        parts.append(f"smtp.helo={_value(spf.helo)}")
    return parts


def _dkim(dkim: DkimResult) -> list[list[str]]:
    if not dkim.signatures:
        return [["dkim=none"]]
    results = []
    for sig in dkim.signatures:
        parts = [f"dkim={sig.status.value}"]
        if sig.key_bits:
            parts.append(_comment(f"{sig.key_bits}-bit key"))
        if sig.status is not DkimStatus.PASS and sig.reason:
            parts.append(f"reason={_value(sig.reason)}")
        for name, value in (("d", sig.domain), ("s", sig.selector), ("a", sig.algorithm)):
            if value:
                parts.append(f"header.{name}={_value(value)}")
        if sig.signature:
            parts.append(f"header.b={_value(sig.signature)}")  # RFC 6008: tells signatures apart
        results.append(parts)
    return results


def _dmarc(dmarc: DmarcResult) -> list[str]:
    parts = [f"dmarc={dmarc.status.value}"]
    if dmarc.record is not None:
        details = f"p={dmarc.record.policy.value}"
        if dmarc.record.subdomain_policy is not None:
            details += f" sp={dmarc.record.subdomain_policy.value}"
        if dmarc.status is DmarcStatus.FAIL:
            details += f" dis={dmarc.applied.value}"
        parts.append(_comment(details))
    elif dmarc.reason and dmarc.status is not DmarcStatus.PASS:
        parts.append(f"reason={_value(dmarc.reason)}")
    if dmarc.from_domain:
        parts.append(f"header.from={_value(dmarc.from_domain)}")
    return parts


def _arc(arc: ArcResult) -> list[str]:
    parts = [f"arc={arc.status.value}"]
    if arc.sets:
        parts.append(_comment(f"i={arc.sets[0].instance} d={arc.sets[0].sealer}"))
    return parts


def build(
    authserv_id: str,
    *,
    spf: SpfReport | None = None,
    dkim: DkimResult | None = None,
    dmarc: DmarcResult | None = None,
    arc: ArcResult | None = None,
) -> str:
    """One ``Authentication-Results:`` field, folded, ending in CRLF."""
    results = [_spf(spf)] if spf else []
    results += _dkim(dkim) if dkim else []
    results += [_dmarc(dmarc)] if dmarc else []
    results += [_arc(arc)] if arc else []
    head = f"{FIELD}: {_value(authserv_id)}"
    if not results:
        return f"{head}; none\r\n"
    return head + "".join(f";\r\n\t{_line(r)}" for r in results) + "\r\n"


def _skip_cfws(text: str, pos: int) -> int:
    """Past whitespace and (nested, escaped) comments from ``pos``."""
    depth = 0
    while pos < len(text):
        ch = text[pos]
        if depth and ch == "\\":
            pos += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif not depth and ch not in " \t\r\n":
            return pos
        pos += 1
    return pos


def _id_and_rest(value: str) -> tuple[str | None, str]:
    pos = _skip_cfws(value, 0)
    if pos < len(value) and value[pos] == '"':
        out, pos = [], pos + 1
        while pos < len(value) and value[pos] != '"':
            if value[pos] == "\\":
                pos += 1
            out.append(value[pos : pos + 1])
            pos += 1
        ident = "".join(out)
        pos += 1
    else:
        start = pos
        while pos < len(value) and value[pos] not in " \t\r\n;(":
            pos += 1
        ident = value[start:pos]
    return (ident or None), value[pos:]


def authserv_id(value: str) -> str | None:
    """The authserv-id of an Authentication-Results field value, or None if it has none."""
    return _id_and_rest(value)[0]


def own_results(values: Sequence[str], ours: str) -> list[str]:
    """The result text (after the authserv-id and any version) of each field carrying ``ours``;
    fields that report ``none`` contribute nothing."""
    found = []
    for value in values:
        ident, rest = _id_and_rest(value)
        if ident is None or ident.casefold() != ours.casefold():
            continue
        _, sep, results = rest.partition(";")
        results = results.strip().rstrip(";").strip()
        if sep and results and results.lower() != "none":
            found.append(results)
    return found


def remove_own(message: bytes, ours: str) -> tuple[bytes, int]:
    """``message`` without the Authentication-Results fields carrying authserv-id ``ours``, and
    how many were removed. Other fields, their order, folding and the body are left as they were."""
    lines = message.splitlines(keepends=True)
    out: list[bytes] = []
    removed = 0
    index = 0
    while index < len(lines):
        line = lines[index]
        if line in (b"\r\n", b"\n"):
            out.extend(lines[index:])  # the body, untouched
            break
        if line[:1] in (b" ", b"\t"):
            out.append(line)  # a continuation with no field before it: not ours to judge
            index += 1
            continue
        end = index + 1
        while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
            end += 1
        field = b"".join(lines[index:end])
        name, colon, value = field.partition(b":")
        if colon and name.rstrip(b" \t").lower() == b"authentication-results":
            ident = authserv_id(value.decode("utf-8", "surrogateescape"))
            if ident is not None and ident.casefold() == ours.casefold():
                removed += 1
                index = end
                continue
        out.append(field)
        index = end
    return b"".join(out), removed
