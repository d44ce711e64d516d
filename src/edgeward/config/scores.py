"""The catalogue of finding names: every name an agent can emit, its default weight and meaning.

This is the score table the operator reads (``edgeward agents list``, ``config show
--defaults``) and overrides per name (``[scores] SPF_FAIL = 3.0``); a name not listed here is a
configuration error, so a typo cannot silently score nothing. It lives with the configuration
because the schema validates overrides against it, and agents sit above the configuration.

Weights follow rspamd's split of findings from scores: a finding says what was seen, the table
what it weighs, the thresholds of ``[policy]`` what the total does. Findings of hard controls
(relay denied, size, hop count ...) weigh 0: those agents decide on the spot and their finding
only explains the refusal.

The content classifier's ``SCL_<n>`` weighs less than ``n`` below SCL 8 (:data:`SCL_WEIGHTS`):
content alone reaches the default reject total of 7 only at SCL 8 (spam probability >= 0.98),
where it is very sure, while an SCL 7 with an SPF fail (5 + 3), an SCL 6 with an SPF fail or an
SCL 5 with a DMARC fail under p=quarantine (3 + 4) is rejected too. The table and its reasoning:
``docs/content-model.md`` ("The score table").

A new agent adds its names here, with a weight and one line of meaning, in the same change.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType
from typing import NamedTuple


class ScoreDefinition(NamedTuple):
    weight: float
    description: str


_HARD = "hard decision of {}: the finding explains the refusal"

# SCL -> weight. Steps of 1 from SCL 4 up to 7, then 2: the calibrated probability rises from
# 0.86 (SCL 7) to 0.98 (SCL 8), and only from there may content decide alone.
SCL_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 9.0)
# SRL -> weight. sender-reputation blocks at SRL 7 by default, so 7-9 weigh only where its
# block_threshold was raised; SRL 5-6 (mostly mail of SCL 6-8, or missing rDNS) add to a medium SCL.
SRL_WEIGHTS = (0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 2.0, 3.0, 3.0, 3.0)

_TABLE: dict[str, ScoreDefinition] = {
    "AGENT_FAILURE": ScoreDefinition(0.0, "an agent raised or timed out (451 4.3.0 unless it is fail-open)"),
    "BACK_PRESSURE_DISK": ScoreDefinition(0.0, _HARD.format("back-pressure (452 4.3.1)")),
    "RATE_LIMITED": ScoreDefinition(0.0, _HARD.format("message-rate (450 4.7.1)")),
    "SIZE_DECLARED_TOO_BIG": ScoreDefinition(0.0, _HARD.format("message-size at MAIL (552 5.3.4)")),
    "SIZE_TOO_BIG": ScoreDefinition(0.0, _HARD.format("message-size at end of data (552 5.3.4)")),
    "SENDER_SPOOFS_ACCEPTED_DOMAIN": ScoreDefinition(0.0, _HARD.format("sender-authority (550 5.7.1)")),
    "SENDER_LOGIN_NULL": ScoreDefinition(0.0, _HARD.format("sender-login (553 5.7.1)")),
    "SENDER_LOGIN_MISMATCH": ScoreDefinition(0.0, _HARD.format("sender-login (553 5.7.1)")),
    "RCPT_RELAY_DENIED": ScoreDefinition(0.0, _HARD.format("relay-control (550 5.7.1)")),
    "RCPT_ROUTING_TRICK": ScoreDefinition(0.0, _HARD.format("relay-control (550 5.7.1)")),
    "RCPT_UNKNOWN": ScoreDefinition(0.0, _HARD.format("local-recipients (550 5.1.1)")),
    "HOP_COUNT_EXCEEDED": ScoreDefinition(0.0, _HARD.format("hop-count (554 5.4.6)")),
    "FROM_MISSING": ScoreDefinition(0.0, _HARD.format("from-header (550 5.6.0)")),
    "FROM_MULTIPLE": ScoreDefinition(0.0, _HARD.format("from-header (550 5.6.0)")),
    "FROM_MALFORMED": ScoreDefinition(0.0, _HARD.format("from-header (550 5.6.0)")),
    "POLICY_STORE_TEMPERROR": ScoreDefinition(0.0, "the policy store could not answer a list lookup (451)"),
    "RATE_LIMIT_EXCEEDED": ScoreDefinition(0.0, _HARD.format("rate-limits (450 4.7.1; 421 at connect)")),
    "RATE_TEMPERROR": ScoreDefinition(0.0, "rate-limits could not count (policy store down): not limited"),
    "SENDER_BLOCKED": ScoreDefinition(6.0, "sender-filter: the sender, its domain or a parent is blocked"),
    "SENDER_BLANK": ScoreDefinition(6.0, "sender-filter: the blank sender <> with block_blank_sender on"),
    "RCPT_BLOCKED": ScoreDefinition(0.0, _HARD.format("recipient-filter (550 5.1.1)")),
    "RCPT_LOOKUP_TEMPERROR": ScoreDefinition(0.0, "local-recipients: the recipient source failed (451)"),
    "SENDER_BLOCKED_BY_RECIPIENT": ScoreDefinition(
        0.0, "safe-senders: the recipient blocked the sender (550 5.7.1 for that recipient)"
    ),
    "CONTENT_BYPASSED": ScoreDefinition(0.0, "the content classifier did not rate the message (too big)"),
    "LOOKALIKE_OWN_DOMAIN": ScoreDefinition(
        3.0, "a link host, the From or the Reply-To domain imitates one of the accepted domains"
    ),
    **{
        f"SCL_{n}": ScoreDefinition(SCL_WEIGHTS[n], f"the content classifier rated the message SCL {n}")
        for n in range(10)
    },
    # Sender authentication (issue 8 §2.4-5); the agents that emit them plug in behind this table.
    "SPF_PASS": ScoreDefinition(0.0, "SPF pass for the MAIL FROM or HELO identity"),
    "SPF_FAIL": ScoreDefinition(3.0, "SPF fail: the client is not allowed to send for the domain"),
    "SPF_SOFTFAIL": ScoreDefinition(1.0, "SPF softfail: the domain says the client is probably not allowed"),
    "SPF_NEUTRAL": ScoreDefinition(0.0, "SPF neutral: the domain makes no assertion"),
    "SPF_NONE": ScoreDefinition(0.5, "SPF none: the domain publishes no SPF record"),
    "SPF_TEMPERROR": ScoreDefinition(0.0, "SPF temperror: DNS failed during the check"),
    "SPF_PERMERROR": ScoreDefinition(1.0, "SPF permerror: the domain's SPF record is broken"),
    "DKIM_NONE": ScoreDefinition(0.0, "DKIM: the message carries no signature"),
    "DKIM_PASS": ScoreDefinition(0.0, "DKIM: a signature verified"),
    "DKIM_FAIL": ScoreDefinition(1.0, "DKIM: a signature did not verify (changed or forged)"),
    "DKIM_TEMPERROR": ScoreDefinition(0.0, "DKIM: the key lookup failed temporarily"),
    "DKIM_PERMERROR": ScoreDefinition(0.5, "DKIM: a signature or its key is malformed, or the key too weak"),
    "DKIM_LENGTH_LIMITED": ScoreDefinition(0.5, "DKIM: a passing signature covers only part of the body"),
    "DKIM_TOO_MANY_SIGNATURES": ScoreDefinition(0.5, "DKIM: more signatures than are evaluated"),
    "DMARC_PASS": ScoreDefinition(0.0, "DMARC pass: DKIM or SPF aligned with the From domain"),
    "DMARC_NONE": ScoreDefinition(0.0, "DMARC none: the From domain publishes no DMARC record"),
    "DMARC_FAIL": ScoreDefinition(1.0, "DMARC fail under p=none (or sampled out by pct)"),
    "DMARC_FAIL_QUARANTINE": ScoreDefinition(4.0, "DMARC fail under p=quarantine ([dmarc])"),
    "DMARC_FAIL_REJECT": ScoreDefinition(7.0, "DMARC fail under p=reject ([dmarc] reject_action)"),
    "DMARC_FROM_INVALID": ScoreDefinition(0.0, "DMARC: no single readable From author (counted as p=reject)"),
    "DMARC_TEMPERROR": ScoreDefinition(0.0, "DMARC temperror: a DNS lookup failed during the check"),
    "DMARC_PERMERROR": ScoreDefinition(0.5, "DMARC permerror: the domain's DMARC record is malformed"),
    "ARC_NONE": ScoreDefinition(0.0, "ARC: the message carries no ARC chain"),
    "ARC_PASS": ScoreDefinition(0.0, "ARC: the chain validated"),
    "ARC_FAIL": ScoreDefinition(0.5, "ARC: the chain is broken or forged"),
    "ARC_TEMPERROR": ScoreDefinition(0.0, "ARC: a key lookup failed temporarily"),
    "ARC_OVERRIDE": ScoreDefinition(
        0.0, "a trusted ARC sealer's passing chain overrode the DMARC failure of forwarded mail"
    ),
    # 0 by default: connection-filter already refuses a listed client at RCPT, so the weight would
    # only fall on mail to its bypassed recipients (postmaster@, abuse@), which must get through.
    "DNSBL_LISTED": ScoreDefinition(0.0, "listed by a DNS block list provider (550 5.7.1 at RCPT)"),
    "DNSBL_TEMPERROR": ScoreDefinition(0.0, "a DNS block list query failed (never a listing)"),
    # Connection filtering (issue 8 §2.1).
    "IP_BLOCKED": ScoreDefinition(0.0, _HARD.format("connection-filter (550 5.7.1 at RCPT)")),
    "IP_LIST_TEMPERROR": ScoreDefinition(0.0, "the IP allow/block lists could not be read (never a listing)"),
    "DNSBL_ERROR": ScoreDefinition(0.0, "a DNS list provider gave an error answer such as 127.255.255.x"),
    "DNSWL_LISTED": ScoreDefinition(-3.0, "the client's address is listed by a DNS allow list provider"),
    # Protocol analysis, sender reputation, greylisting (issue 8 §2.6-2.8).
    "PROTOCOL_PREGREET": ScoreDefinition(2.0, "the client spoke before the banner (greet_pause)"),
    "PROTOCOL_PIPELINING": ScoreDefinition(
        1.5, "the client pipelined commands without being offered PIPELINING"
    ),
    "PROTOCOL_BARE_LF": ScoreDefinition(1.0, "the client ended lines with a bare LF (refused)"),
    "PROTOCOL_ERRORS": ScoreDefinition(1.0, "the client sent several commands the server refused"),
    "PROTOCOL_JUNK": ScoreDefinition(0.5, "the client sent many NOOP, RSET, VRFY or HELP commands"),
    "HELO_INVALID": ScoreDefinition(0.5, "the HELO/EHLO name is neither a domain nor an address literal"),
    "HELO_LITERAL_MISMATCH": ScoreDefinition(1.0, "the HELO address literal is not the client's address"),
    "HELO_FORGED": ScoreDefinition(2.0, "the HELO name is this gateway's own name or an accepted domain"),
    "RDNS_NONE": ScoreDefinition(1.0, "the client's address has no reverse DNS (PTR)"),
    "RDNS_UNCONFIRMED": ScoreDefinition(0.5, "the client's PTR name does not resolve back to its address"),
    "RDNS_TEMPERROR": ScoreDefinition(0.0, "the reverse DNS lookup failed (never held against the client)"),
    **{
        f"SRL_{n}": ScoreDefinition(SRL_WEIGHTS[n], f"sender reputation rates the client address SRL {n}")
        for n in range(10)
    },
    "OPEN_PROXY": ScoreDefinition(4.0, "the client's address relayed to this gateway as an open proxy"),
    "REPUTATION_BLOCKED": ScoreDefinition(0.0, _HARD.format("sender-reputation (550 5.7.1)")),
    "REPUTATION_TEMPERROR": ScoreDefinition(0.0, "the policy store failed: reputation not read or counted"),
    "GREYLIST_DEFERRED": ScoreDefinition(0.0, _HARD.format("greylisting (451 4.7.1)")),
    "GREYLIST_PASSED": ScoreDefinition(0.0, "a greylisted triplet retried in time and passed"),
    "GREYLIST_SKIPPED": ScoreDefinition(0.0, "greylisting did not apply; the detail says why"),
    "GREYLIST_TEMPERROR": ScoreDefinition(0.0, "the policy store failed; the recipient was not greylisted"),
    # Site learning (filters/agents/site_learning.py). Negative: content alone must not refuse
    # an authenticated reply or a known correspondent (SCL 9 - 3 stays under reject at 7).
    "REPLY_TO_LOCAL": ScoreDefinition(
        -3.0, "authenticated reply to a message a local user sent (learned as ham)"
    ),
    "KNOWN_CORRESPONDENT": ScoreDefinition(
        -3.0, "authenticated mail from an address a local recipient wrote to (learned as ham)"
    ),
    "SPAM_REPORT": ScoreDefinition(0.0, "a local user's spam report: the message it carries is learned"),
    "SPAM_REPORT_OUTSIDER": ScoreDefinition(0.0, "mail to the spam-report address from outside: ignored"),
    "TRAP_HIT": ScoreDefinition(0.0, _HARD.format("site-learning (mail to a trap address is discarded)")),
    # The scanning walk and the attachment filter (issue 10). A walk cut short by a bound left
    # content unscanned: its findings reach the default reject threshold (7) on their own, so such
    # mail is never passed as clean even where no agent refuses it (attachment-filter does, 554).
    "MIME_TOO_DEEP": ScoreDefinition(7.0, "MIME nesting deeper than the bound: the rest not scanned"),
    "MIME_TOO_MANY_PARTS": ScoreDefinition(7.0, "more MIME parts than the bound: the rest not scanned"),
    "MIME_TOO_LARGE": ScoreDefinition(7.0, "more decoded content than the bound: the rest not scanned"),
    "MIME_DECODE_ERROR": ScoreDefinition(1.0, "a part's structure or transfer encoding was malformed"),
    "MIME_AMBIGUOUS": ScoreDefinition(
        2.0, "parsers could read the message two ways (two Content-Types, boundaries or file names)"
    ),
    "ARCHIVE_BOMB": ScoreDefinition(7.0, "an archive expands past the bounds (overlap, ratio, size, count)"),
    "ARCHIVE_TOO_DEEP": ScoreDefinition(7.0, "archives nested deeper than the bound: the rest not scanned"),
    "ARCHIVE_ENCRYPTED": ScoreDefinition(3.0, "an encrypted archive or Office document: not scannable"),
    "ARCHIVE_CORRUPT": ScoreDefinition(2.0, "an archive could not be read (malformed or unsupported method)"),
    "ATTACH_NAME_HOSTILE": ScoreDefinition(
        3.0, "a file name with ../, an absolute path, NUL, control or bidi characters, or over 255 characters"
    ),
    "ATTACH_TYPE_MISMATCH": ScoreDefinition(3.0, "a program (by content) named or typed as something else"),
    # Anti-virus (issue 10): hard decisions of the antivirus agent.
    "AV_INFECTED": ScoreDefinition(0.0, _HARD.format("antivirus (550 5.7.1 naming the virus)")),
    "AV_UNAVAILABLE": ScoreDefinition(0.0, "a scan engine did not answer (451 4.7.0 if the bias is missed)"),
    "AV_UNSCANNABLE": ScoreDefinition(0.0, "an item is larger than a scan engine takes (552 5.3.4)"),
    # Scan engines: YARA, Office/RTF analysis, the SHA-256 list (issue 10). A YARA or hash-list hit
    # is an infection the anti-virus agent acts on ([antivirus] action), so it weighs 0; the
    # Office findings weigh what they say about intent, for when [antivirus.office] scores them.
    "AV_YARA_MATCH": ScoreDefinition(0.0, "a YARA rule matched an item (the rule name is the signature)"),
    "AV_HASH_BLOCKED": ScoreDefinition(0.0, "an item's SHA-256 is on the hash block list"),
    "AV_MACRO": ScoreDefinition(2.0, "an Office document carries VBA macros"),
    "AV_MACRO_AUTOEXEC": ScoreDefinition(5.0, "VBA that runs by itself on open, close or a control event"),
    "AV_MACRO_SUSPICIOUS": ScoreDefinition(3.0, "VBA calls what droppers call (Shell, CreateObject ...)"),
    "AV_XLM_MACRO": ScoreDefinition(5.0, "an Excel 4 (XLM) macro sheet, a common malware dropper"),
    "AV_DDE": ScoreDefinition(5.0, "a DDE field or link that can start a program (Word, Excel, RTF, CSV)"),
    "AV_OLE_OBJECT": ScoreDefinition(2.0, "an embedded OLE object or package (a file hidden in a document)"),
    "AV_EXTERNAL_REFERENCE": ScoreDefinition(
        5.0, "a document loads remote content: a template, object or frame, or an mhtml:/ms-msdt: target"
    ),
    "ATTACH_BLOCKED": ScoreDefinition(
        0.0, _HARD.format("attachment-filter (strip, 550 5.7.1 or silent delete, as [attachments] says)")
    ),
    # Phishing level (issue 9): judged by [policy] pcl_quarantine / pcl_reject, not by the total,
    # so weight 0 keeps the SCL calibration of the total unchanged.
    **{
        f"PCL_{n}": ScoreDefinition(0.0, f"the content classifier rated the message phishing level PCL {n}")
        for n in range(1, 9)
    },
    # SPF of the HELO identity (RFC 7208 §2.3), checked at HELO. Weaker than MAIL FROM's: a HELO
    # name is a host name, which few publish SPF for and DMARC never aligns with; "none" is the
    # norm for it and weighs nothing.
    "SPF_HELO_PASS": ScoreDefinition(0.0, "SPF pass for the HELO/EHLO name"),
    "SPF_HELO_FAIL": ScoreDefinition(1.5, "SPF fail for the HELO/EHLO name: its owner disowns the client"),
    "SPF_HELO_SOFTFAIL": ScoreDefinition(0.5, "SPF softfail for the HELO/EHLO name"),
    "SPF_HELO_NEUTRAL": ScoreDefinition(0.0, "SPF neutral for the HELO/EHLO name"),
    "SPF_HELO_NONE": ScoreDefinition(0.0, "SPF none for the HELO/EHLO name (most host names publish none)"),
    "SPF_HELO_TEMPERROR": ScoreDefinition(0.0, "SPF temperror for the HELO/EHLO name: DNS failed"),
    "SPF_HELO_PERMERROR": ScoreDefinition(0.5, "SPF permerror for the HELO/EHLO name: its record is broken"),
    # Transport rules (issue 10): which rules matched, and the SCL a rule set (Exchange's SetSCL).
    "RULE_MATCH": ScoreDefinition(0.0, "a transport rule matched (the detail names it); its actions follow"),
    "RULE_LOG_EVENT": ScoreDefinition(0.0, "a transport rule's LogEventText: the rule and its text"),
    "RULE_COPY_TO": ScoreDefinition(
        0.0, "a transport rule's CopyTo: the rule and the recipients copied (in Cc)"
    ),
    **{
        f"RULE_SCL_{n}": ScoreDefinition(float(n), f"a transport rule set SCL {n}: adds {n} to the total")
        for n in range(10)
    },
    "RULE_GROUP_TEMPERROR": ScoreDefinition(0.0, "transport-rules: the group source failed (451 4.3.0)"),
}

SCORE_TABLE: MappingProxyType[str, ScoreDefinition] = MappingProxyType(_TABLE)


def unknown_names(names: Iterable[str]) -> list[str]:
    """Names in ``names`` that no agent emits, for the configuration error."""
    return sorted(n for n in names if n not in SCORE_TABLE)
