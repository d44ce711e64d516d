"""ARC (RFC 8617): verifying the chain of custody a forwarded message carries, and adding our
own ARC set when the gateway changes a message.

Verification reads every ``ARC-Seal`` and ``ARC-Message-Signature`` field, fetches each key they
name through the DnsLookup port (:mod:`.keys`, as DKIM does) and then runs dkimpy's chain
validation with a ``dnsfunc`` that answers from those keys. The chain result is RFC 8617 §4.4's
``none`` (no ARC sets), ``pass`` or ``fail``; a key lookup that timed out or met a server failure
makes it ``temperror`` instead of a ``fail`` a retry might not repeat. The sets are kept
(:class:`ArcSet`) so the policy layer can trust a chain whose newest sealer it knows
(:meth:`ArcResult.trusted_sealer`) to override a DMARC failure of forwarded mail (RFC 8617 §7.2).

A message kept in a file (:func:`verify_arc_file`) is verified the same way with dkimpy reading
its header block only: the body hash of every ARC-Message-Signature comes from one streaming pass
over the file (:mod:`.bodyhash`), so the body is never held whole.

Sealing, when the gateway changes a message, is :mod:`.arcseal`.

Security: ARC fields are attacker-controlled until verified. The number of fields (RFC 8617
§4.2.1 caps instances at 50) and of distinct keys are bounded before any DNS query is made.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import dkim as dkimpy

from edgeward.headers import header_end
from edgeward.message_file import CHUNK, MessageFile
from edgeward.ports import DnsLookup
from edgeward.senderauth import dkimcrypto
from edgeward.senderauth.bodyhash import BodyDigests, FileARC, Triple, header_part, triple_of
from edgeward.senderauth.keys import KeyLookup, KeyStatus, QuietLogger, dnsfunc, fetch_keys, key_name, offload

dkimcrypto.install()  # dkimpy's RSA check with its conversions in C (dkimcrypto says why)

__all__ = ["ArcResult", "ArcSet", "ArcStatus", "verify_arc", "verify_arc_file"]

MAX_INSTANCES = 50
MAX_ARC_FIELDS = 3 * MAX_INSTANCES
MAX_KEYS = 16

_ARC_FIELDS = (b"arc-seal", b"arc-message-signature")
_TAG = re.compile(rb"(?:^|;)\s*([dsi])\s*=\s*([^;]*)")
_log = logging.getLogger("edgeward.senderauth.arc")
_dkimpy_log = QuietLogger(_log)


class ArcStatus(enum.Enum):
    PASS = "pass"  # noqa: S105 (a result word, not a secret)
    FAIL = "fail"
    NONE = "none"
    TEMPERROR = "temperror"


@dataclass(frozen=True, slots=True)
class ArcSet:
    """One instance of the chain as dkimpy judged it."""

    instance: int
    sealer: str  # d= of the ARC-Seal
    signer: str  # d= of the ARC-Message-Signature
    cv: str
    seal_valid: bool
    signature_valid: bool
    results: str  # the ARC-Authentication-Results value


@dataclass(frozen=True, slots=True)
class ArcResult:
    status: ArcStatus
    reason: str = ""
    sets: tuple[ArcSet, ...] = ()  # newest first

    def findings(self) -> tuple[str, ...]:
        return (f"ARC_{self.status.name}",)

    def trusted_sealer(self, trusted: Collection[str]) -> ArcSet | None:
        """The newest set when the chain passed and its sealer is one of ``trusted`` domains."""
        if self.status is not ArcStatus.PASS or not self.sets:
            return None
        newest = self.sets[0]
        return newest if newest.sealer in {t.lower().rstrip(".") for t in trusted} else None


def _key_names(headers: Sequence[tuple[bytes, bytes]]) -> tuple[list[str], str | None]:
    names: list[str] = []
    fields = [value for name, value in headers if name.lower() in _ARC_FIELDS]
    if len(fields) > MAX_ARC_FIELDS:
        return [], f"{len(fields)} ARC fields, more than {MAX_ARC_FIELDS}"
    for value in fields:
        tags = {m.group(1).lower(): re.sub(rb"\s+", b"", m.group(2)) for m in _TAG.finditer(value)}
        name = key_name(
            tags.get(b"s", b"").decode("ascii", "replace"), tags.get(b"d", b"").decode("ascii", "replace")
        )
        if name is not None:
            names.append(name)
    names = list(dict.fromkeys(names))
    if len(names) > MAX_KEYS:
        return [], f"{len(names)} distinct ARC keys, more than {MAX_KEYS}"
    return names, None


def _text(value: object) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value or "")


def _sets(data: Sequence[dict[str, object]]) -> tuple[ArcSet, ...]:
    return tuple(
        ArcSet(
            instance=int(str(d.get("instance", 0))),
            sealer=_text(d.get("as-domain")).lower(),
            signer=_text(d.get("ams-domain")).lower(),
            cv=_text(d.get("cv")).lower(),
            seal_valid=bool(d.get("as-valid")),
            signature_valid=bool(d.get("ams-valid")),
            results=_text(d.get("aar-value")).strip(),
        )
        for d in data
    )


def _reader(message: bytes, min_rsa_bits: int) -> dkimpy.ARC | Exception:
    try:
        return dkimpy.ARC(message, logger=_dkimpy_log, minkey=min_rsa_bits)
    except Exception as exc:  # dkimpy's header parser raises IndexError on a leading continuation
        return exc


def _validate(arc: dkimpy.ARC, keys: dict[str, KeyLookup]) -> ArcResult:
    try:
        cv, data, reason = arc.verify(dnsfunc=dnsfunc(keys))
    except dkimpy.DKIMException as exc:
        return ArcResult(ArcStatus.FAIL, str(exc))
    except Exception as exc:  # dkimpy parses attacker input; no surprise may stop the check
        _log.info("arc verification raised %r", exc)
        return ArcResult(ArcStatus.FAIL, "ARC chain could not be evaluated")
    # dkimpy answers None for a chain a sealer already marked failed: RFC 8617 §5.2 says fail.
    status = {dkimpy.CV_Pass: ArcStatus.PASS, dkimpy.CV_None: ArcStatus.NONE}.get(cv, ArcStatus.FAIL)
    return ArcResult(status, _text(reason), _sets(data))


async def verify_arc(message: bytes, dns: DnsLookup, *, min_rsa_bits: int = 1024) -> ArcResult:
    """Validate the ARC chain of ``message`` (RFC 8617 §5.2), keys through ``dns``."""
    if b"arc-" not in message[: header_end(message)].lower():
        # Every ARC field name holds "arc-": without it there is no set, and most mail has none,
        # so dkimpy need not parse the whole message a second time (after DKIM) to say so.
        return ArcResult(ArcStatus.NONE, "no ARC sets")
    arc = await offload(len(message), _reader, message, min_rsa_bits)
    if isinstance(arc, Exception):
        if b"arc-" not in message[: header_end(message)].lower():
            return ArcResult(ArcStatus.NONE, "no ARC sets")
        return ArcResult(ArcStatus.FAIL, f"message not readable: {arc!r}")
    return await _settle(arc, dns, len(message), _validate)


async def _settle(
    arc: dkimpy.ARC, dns: DnsLookup, size: int, validate: Callable[[Any, dict[str, KeyLookup]], ArcResult]
) -> ArcResult:
    """From the reader on, the same for a message in memory and one in a file."""
    if not any(name.lower() in (*_ARC_FIELDS, b"arc-authentication-results") for name, _ in arc.headers):
        return ArcResult(ArcStatus.NONE, "no ARC sets")
    names, error = _key_names(arc.headers)
    if error is not None:
        return ArcResult(ArcStatus.FAIL, error)
    keys = await fetch_keys(dns, names)
    transient = [k.reason for k in keys.values() if k.status is KeyStatus.TEMPERROR]
    if transient:
        return ArcResult(ArcStatus.TEMPERROR, transient[0])
    return await offload(size, validate, arc, keys)


def _file_reader(message: MessageFile, min_rsa_bits: int, digests: BodyDigests) -> FileARC | Exception:
    try:
        return FileARC(header_part(message.header), digests, logger=_dkimpy_log, minkey=min_rsa_bits)
    except Exception as exc:  # as in _reader: the header block is attacker input
        return exc


def _body_triples(headers: Sequence[tuple[bytes, bytes]]) -> list[Triple]:
    """The body hashes dkimpy will ask for: every ARC field with a ``bh=`` (an AMS, or a seal
    that carries one, which dkimpy checks too), under ARC's default ``c=relaxed/relaxed``."""
    triples: list[Triple] = []
    for name, value in headers:
        if name.lower() not in _ARC_FIELDS:
            continue
        try:
            tags = dkimpy.util.parse_tag_value(value)
        except dkimpy.util.InvalidTagValueList:
            continue  # dkimpy stops at this field before any body hash
        triple = triple_of(tags, b"relaxed/relaxed") if b"bh" in tags else None
        if triple is not None:
            triples.append(triple)
    return triples


def _validate_file(arc: FileARC, keys: dict[str, KeyLookup]) -> ArcResult:
    arc.digests.compute(_body_triples(arc.headers))
    return _validate(arc, keys)


async def verify_arc_file(
    message: MessageFile,
    dns: DnsLookup,
    *,
    min_rsa_bits: int = 1024,
    chunk: int = CHUNK,
    digests: BodyDigests | None = None,
) -> ArcResult:
    """:func:`verify_arc` of a message kept in a file, holding its header block and a few
    ``chunk``-sized pieces of its body at a time, never the whole body. ``digests`` as for
    :func:`~.dkim.verify_dkim_file`."""
    if b"arc-" not in message.header.lower():
        return ArcResult(ArcStatus.NONE, "no ARC sets")  # as in verify_arc, without reading the body
    # On the loop: dkimpy parses only the header block here; the body pass runs in a thread.
    arc = _file_reader(message, min_rsa_bits, digests or BodyDigests.of_message(message, chunk))
    if isinstance(arc, Exception):
        return ArcResult(ArcStatus.FAIL, f"message not readable: {arc!r}")
    return await _settle(arc, dns, message.size, _validate_file)
