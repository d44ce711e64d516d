"""Plain-language reasons for a user's digest: why a message was held, in one sentence.

One table maps findings to wording; the first row (in table order) that a quarantined entry's
findings meet is its reason, so the most serious finding speaks: a virus before a phishing
level, a phishing level before a plain spam score. Wording names what the reader can check
(the virus's name, the file) and never repeats text from the message itself except through
the entry's escaped fields; the digest escapes it again for HTML.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from edgeward.quarantine.entry import HeldFinding, QuarantineEntry

__all__ = ["REASONS", "plain_reason"]

_PROGRAM = re.compile(
    r"(\.(exe|com|scr|bat|cmd|pif|msi|dll|cpl|js|jse|vbs|vbe|wsf|hta|ps1|jar|lnk)\b)"
    r"|dosexec|executable|msdownload|portable-executable",
    re.IGNORECASE,
)
_SIGNATURE = re.compile(r"signature=(\S+)")
PHISHING_PCL = 4
_PHISHING = "looks like a phishing message pretending to be your bank or another service you use"


@dataclass(frozen=True, slots=True)
class Reason:
    test: Callable[[HeldFinding], bool]
    wording: Callable[[HeldFinding], str]


def _named(*names: str) -> Callable[[HeldFinding], bool]:
    return lambda f: f.name in names


def _virus(f: HeldFinding) -> str:
    m = _SIGNATURE.search(f.detail)
    return f"contains a virus ({m.group(1)})" if m and m.group(1) else "contains a virus"


def _phishing(f: HeldFinding) -> bool:
    # Every rated message carries its PCL; Exchange's levels 1-3 are "not phishing".
    level = f.name.removeprefix("PCL_")
    return f.name.startswith("PCL_") and level.isdigit() and int(level) >= PHISHING_PCL


def _fixed(text: str) -> Callable[[HeldFinding], str]:
    return lambda _f: text


REASONS: tuple[Reason, ...] = (
    Reason(_named("AV_INFECTED", "AV_YARA_MATCH", "AV_HASH_BLOCKED"), _virus),
    Reason(
        lambda f: f.name == "ATTACH_BLOCKED" and bool(_PROGRAM.search(f.detail)),
        _fixed("the attachment is a program"),
    ),
    Reason(
        _named("ATTACH_TYPE_MISMATCH"),
        _fixed("the attachment is a program disguised as another kind of file"),
    ),
    Reason(
        _named("ATTACH_BLOCKED"), _fixed("the attachment is a kind of file your organisation does not accept")
    ),
    Reason(
        _named("AV_MACRO_AUTOEXEC", "AV_MACRO_SUSPICIOUS", "AV_XLM_MACRO", "AV_MACRO"),
        _fixed("the attached document contains macros that could run a program"),
    ),
    Reason(
        _named("AV_DDE", "AV_OLE_OBJECT", "AV_EXTERNAL_REFERENCE"),
        _fixed("the attached document can fetch or run content from elsewhere"),
    ),
    Reason(
        _named("ARCHIVE_ENCRYPTED"),
        _fixed("the attachment is encrypted, so it could not be checked for viruses"),
    ),
    Reason(
        _named("ARCHIVE_BOMB", "ARCHIVE_TOO_DEEP", "MIME_TOO_DEEP", "MIME_TOO_MANY_PARTS", "MIME_TOO_LARGE"),
        _fixed("its structure is built to get past virus checks"),
    ),
    Reason(_phishing, _fixed(_PHISHING)),
    Reason(
        _named("LOOKALIKE_OWN_DOMAIN"),
        _fixed("comes from an address made to look like your organisation's own"),
    ),
    Reason(
        _named(
            "DMARC_FAIL_REJECT",
            "DMARC_FAIL_QUARANTINE",
            "DMARC_FROM_INVALID",
            "SENDER_SPOOFS_ACCEPTED_DOMAIN",
        ),
        _fixed("claims to come from a sender it does not come from"),
    ),
    Reason(
        _named("FROM_MISSING", "FROM_MULTIPLE", "FROM_MALFORMED"),
        _fixed("its sender address is missing or malformed"),
    ),
    Reason(_named("RULE_MATCH"), _fixed("a mail rule of your organisation holds messages like it")),
)
_SPAM = "looks like spam"


def plain_reason(entry: QuarantineEntry) -> str:
    """The sentence for ``entry``: the first table row its findings meet, else by who held it."""
    findings = entry.details or tuple(HeldFinding(name) for name in entry.findings)
    for reason in REASONS:
        for finding in findings:
            if reason.test(finding):
                return reason.wording(finding)
    if entry.reason.startswith("transport-rules"):
        return "a mail rule of your organisation holds messages like it"
    return _SPAM
