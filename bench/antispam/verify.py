"""Proof that a stack checked the mail, not just relayed it; the benchmark stops if it did not.

Two kinds of evidence, both required:

1. Every message the sink received in a measured pass carries the stack's verdicts: for
   Edgeward its ``Authentication-Results`` (authserv-id edgeward.bench.test) with spf=pass,
   dkim=pass and dmarc=pass, ``Received-SPF: pass`` and the content filter's ``X-Edgeward-SCL``;
   for Postfix policyd-spf's ``Received-SPF: Pass``, OpenDKIM's ``dkim=pass`` and OpenDMARC's
   ``dmarc=pass`` under postfix.bench.test. For Postfix, the maillog must also show one
   postscreen PASS per connection of the pass.
2. Probe messages that must fail a check are refused (or, for a broken DKIM signature that
   DMARC still passes through SPF, delivered stamped dkim=fail): a client listed by the DNSBLs,
   an SPF fail, a DMARC p=reject failure, a pregreeting client (postscreen; Edgeward only when
   its greet_pause is on), and GTUBE (Edgeward's content filter; the peer has none).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from relay.procs import BenchError

from antispam.dns import FORGED_DOMAIN, LISTED_CLIENT, SENDER_DOMAIN
from antispam.mail import RECIPIENT, SENDER, SmtpClient, Variant, transaction, with_message_id

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
Fields = list[tuple[str, str]]


def header_fields(data: bytes) -> Fields:
    """The unfolded header fields of a message (smtp-sink dumps use LF line ends)."""
    text = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "replace")
    fields: Fields = []
    for line in text.split("\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + " " + line.strip())
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append((name.strip().lower(), value.strip()))
    return fields


def _results(fields: Fields, authserv: str) -> str:
    """All Authentication-Results of ``authserv`` joined (OpenDKIM and OpenDMARC stamp one each)."""
    found = [v for n, v in fields if n == "authentication-results" and v.split(";")[0].strip() == authserv]
    return " ; ".join(found)


def _has(method: str, result: str, results: str) -> bool:
    return re.search(rf"(^|[;\s]){method}={result}\b", results, re.IGNORECASE) is not None


def problems_edgeward(fields: Fields, dkim: str = "pass") -> list[str]:
    res = _results(fields, "edgeward.bench.test")
    out = [
        f"no {m}={r}" for m, r in (("spf", "pass"), ("dkim", dkim), ("dmarc", "pass")) if not _has(m, r, res)
    ]
    # The HELO identity gets its own Received-SPF (RFC 7208 section 2.3); the MAIL FROM one counts.
    spf = [v for n, v in fields if n == "received-spf" and "identity=helo" not in v]
    if not spf or not spf[0].lower().startswith("pass"):
        out.append(f"Received-SPF (mailfrom) is {spf[:1]!r}")
    if not any(n == "x-edgeward-scl" for n, _ in fields):
        out.append("no X-Edgeward-SCL (content filter)")
    return out


def problems_postfix(fields: Fields, dkim: str = "pass") -> list[str]:
    res = _results(fields, "postfix.bench.test")
    out = [f"no {m}={r}" for m, r in (("dkim", dkim), ("dmarc", "pass")) if not _has(m, r, res)]
    spf = [v for n, v in fields if n == "received-spf"]
    if not spf or not spf[0].lower().startswith("pass"):
        out.append(f"Received-SPF (policyd-spf) is {spf[:1]!r}")
    return out


def check_dump(dump_dir: Path, stack: str, expected: int) -> int:
    """Check every message in the sink's dump folder, then empty it; return how many were checked."""
    files = sorted(p for p in dump_dir.iterdir() if p.is_file())
    check: Callable[[Fields], list[str]] = problems_edgeward if stack == "edgeward" else problems_postfix
    bad: list[str] = []
    for path in files:
        if issues := check(header_fields(path.read_bytes())):
            bad.append(f"{path.name}: {', '.join(issues)}")
    if len(files) < expected:
        raise BenchError(f"{stack}: the sink dumped {len(files)} messages, expected {expected}")
    if bad:
        # The dumps stay for a look with --keep.
        raise BenchError(f"{stack}: {len(bad)} of {len(files)} delivered messages were not checked: {bad[0]}")
    for path in files:
        with contextlib.suppress(OSError):
            path.unlink()
    return len(files)


def postscreen_passes(maillog: Path, kind: str = "NEW|OLD") -> int:
    """postscreen's PASS lines so far (NEW: its tests ran now; OLD: passed from its cache)."""
    with contextlib.suppress(OSError):
        return len(re.findall(rf"postscreen\[\d+\]: PASS (?:{kind}) ", maillog.read_text(errors="replace")))
    return 0


@dataclass(frozen=True)
class Probe:
    name: str
    source: str
    sender: str
    message: bytes
    # True: must be refused (5xx); False: delivered, then its fields checked; None: either, as
    # the verdict on a finding that only scores depends on the rest of the message.
    refused: bool | None
    pregreet: bool = False
    says: str = ""  # a refusal must match this (case-insensitive regex): it names the check


def probes(signed: Variant, unsigned_from_forged: bytes, stack: str, greet_pause: float) -> list[Probe]:
    broken = signed.signed.replace(b"warehouse", b"Warehouse", 1) if b"warehouse" in signed.signed else b""
    if not broken:
        raise BenchError("probe set-up: no body text to alter")
    gtube = f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: test\r\n\r\n{GTUBE}\r\n".encode()
    out = [
        Probe(
            "DNSBL-listed client", LISTED_CLIENT, SENDER, with_message_id(signed, 900001), True, says="bl[12]"
        ),
        Probe(
            "SPF fail",
            "127.0.1.201",
            f"news@{FORGED_DOMAIN}",
            with_message_id(signed, 900002),
            True,
            says="SPF",
        ),
        Probe("DMARC p=reject fail", "127.0.1.202", SENDER, unsigned_from_forged, True, says="DMARC"),
        Probe(
            "broken DKIM signature", "127.0.1.203", SENDER, with_message_id(Variant(broken), 900003), False
        ),
    ]
    if stack == "postfix" or greet_pause > 0:
        out.append(
            Probe(
                "pregreet",
                "127.0.1.204",
                SENDER,
                with_message_id(signed, 900004),
                True if stack == "postfix" else None,
                True,
            )
        )
    if stack == "edgeward":
        out.append(Probe("GTUBE (content filter)", "127.0.1.205", SENDER, gtube, True, says="spam"))
    return out


async def _pregreet(port: int, probe: Probe, stack: str) -> tuple[int, str]:
    """Say EHLO before the banner, then go on as an ordinary client.

    postscreen swallows what a client says before its turn (it only notes it), so the client
    says EHLO again; Edgeward keeps the early bytes and answers them after its banner.
    """
    smtp = await SmtpClient.connect(port, probe.source)
    try:
        ehlo = f"EHLO client.{SENDER_DOMAIN}"
        smtp.writer.write(ehlo.encode() + b"\r\n")
        again = ehlo if stack == "postfix" else None
        for step in (None, again, f"MAIL FROM:<{probe.sender}>", f"RCPT TO:<{RECIPIENT}>", "DATA"):
            code, text = await (smtp.reply() if step is None else smtp.command(step))
            if code >= 400 or code == 0:
                return code, text
        return await smtp.send_data(probe.message)
    finally:
        await smtp.close()


def run_probes(port: int, stack: str, items: list[Probe]) -> list[tuple[Probe, int, str]]:
    async def one(probe: Probe) -> tuple[Probe, int, str]:
        if probe.pregreet:
            return (probe, *await _pregreet(port, probe, stack))
        return (probe, *await transaction(port, probe.source, probe.sender, probe.message))

    async def all_of() -> list[tuple[Probe, int, str]]:
        return list(await asyncio.gather(*(one(p) for p in items)))

    return asyncio.run(all_of())


def _logged_finding(agent_log: Path, finding: str, client: str, wait: float = 5.0) -> bool:
    """Whether Edgeward's agent log has ``finding`` for a session of ``client`` (it may lag)."""
    deadline = time.monotonic() + wait
    while True:
        with contextlib.suppress(OSError):
            for line in agent_log.read_text(errors="replace").splitlines():
                if f'"{finding}"' in line and f'"client_ip":"{client}"' in line.replace(" ", ""):
                    return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def judge_probes(
    stack: str, outcomes: list[tuple[Probe, int, str]], delivered: list[Fields], agent_log: Path | None = None
) -> list[str]:
    """One line per probe; raise if any probe went the wrong way."""
    lines, wrong = [], []
    for probe, code, text in outcomes:
        if probe.refused is None:
            ok = code == 250 or 500 <= code < 600
        elif probe.refused:
            ok = 500 <= code < 600 and re.search(probe.says, text, re.I) is not None
        else:
            ok = code == 250
        if probe.pregreet and stack == "edgeward":
            # Edgeward scores pregreet (PROTOCOL_PREGREET) rather than refusing on it alone.
            seen = agent_log is not None and _logged_finding(agent_log, "PROTOCOL_PREGREET", probe.source)
            ok = ok and seen
            text += "" if seen else " (no PROTOCOL_PREGREET in the agent log)"
            text += " [PROTOCOL_PREGREET logged]" if seen else ""
        lines.append(f"{probe.name}: {code} {text[:110]}")
        if not ok:
            expected = {True: "a refusal", False: "250", None: "the finding"}[probe.refused]
            wrong.append(f"{probe.name}: expected {expected}, got {text!r}")
    # The broken-signature probe is the only delivered one without pregreet on Edgeward's side.
    expect_failed_dkim = [p for p, _, _ in outcomes if p.name == "broken DKIM signature"]
    if expect_failed_dkim:
        check = problems_edgeward if stack == "edgeward" else problems_postfix
        if not any(not check(f, dkim="fail") for f in delivered):
            wrong.append("no delivered message carries dkim=fail for the broken signature")
    if wrong:
        raise BenchError(f"{stack} did not check as configured: " + "; ".join(wrong))
    return lines
