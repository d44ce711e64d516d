"""DKIM verification (RFC 6376, RFC 8301, RFC 8463): every signature of a message, one result each.

The work is split in two so DNS never happens inside dkimpy. First the signature fields are
read (a bounded number of ``DKIM-Signature`` fields, :data:`MAX_SIGNATURES`) and every key they
name is fetched through the :class:`~edgeward.ports.DnsLookup` port (:mod:`.keys`). Then each
signature whose key is usable is handed to dkimpy, whose ``dnsfunc`` answers from what was
fetched. The result of each signature is one of RFC 8601 §2.7.1's words:

- ``pass``: the signature verified with a key we accept;
- ``fail``: it did not verify (body hash, bad signature), or the RSA key is under
  :data:`MIN_RSA_BITS` (RFC 8301 §3.2: such signatures MUST NOT be treated as valid);
- ``temperror``: the key lookup timed out or the server failed, so a retry may pass;
- ``permerror``: the signature or key record is malformed, the key is missing or revoked, the
  algorithm is not acceptable (``rsa-sha1``, RFC 8301 §3.1), the key type does not match it,
  or the key's own restrictions (``h=`` hashes, ``t=s`` identity, RFC 6376 §3.6.1) rule it out.

``l=`` (a signature over only the first bytes of the body) verifies as usual but is reported as
``DKIM_LENGTH_LIMITED``: anything after those bytes was added by someone else (RFC 6376 §8.2).

dkimpy is synchronous: messages over :data:`~.keys.INLINE_LIMIT` are verified in a worker thread
so a large body does not stall the other sessions of the process.

A message kept in a file (:func:`verify_dkim_file`) is never read whole: dkimpy reads its header
block only, and the body hashes of all its signatures come from one streaming pass over the
file (:mod:`.bodyhash`, which also says why that cannot pass a body that does not match). The
results are those :func:`verify_dkim` gives for the same message in memory.

Security: the message is attacker-controlled. Signatures beyond the bound are not evaluated (and
say so), keys are bounded as :mod:`.keys` describes, and no exception from dkimpy escapes: each
becomes a permerror or a fail of that one signature.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dkim as dkimpy
from dkim.canonicalization import CanonicalizationPolicy, InvalidCanonicalizationPolicyError

from edgeward.headers import header_end
from edgeward.message_file import CHUNK, MessageFile
from edgeward.ports import DnsLookup
from edgeward.senderauth import dkimcrypto
from edgeward.senderauth.bodyhash import BodyDigests, FileDKIM, header_part, triple_of
from edgeward.senderauth.keys import (
    KeyLookup,
    KeyStatus,
    PublicKey,
    QuietLogger,
    dnsfunc,
    evaluate_key,
    fetch_keys,
    key_name,
    offload,
)

dkimcrypto.install()  # dkimpy's RSA check with its conversions in C (dkimcrypto says why)

__all__ = [
    "MAX_SIGNATURES",
    "MIN_RSA_BITS",
    "DkimResult",
    "DkimStatus",
    "SignatureResult",
    "verify_dkim",
    "verify_dkim_file",
]

MAX_SIGNATURES = 8
MIN_RSA_BITS = 1024

_ACCEPTED_ALGORITHMS = {"rsa-sha256": "rsa", "ed25519-sha256": "ed25519"}
_log = logging.getLogger("edgeward.senderauth.dkim")
_dkimpy_log = QuietLogger(_log)


class DkimStatus(enum.Enum):
    PASS = "pass"  # noqa: S105 (a result word, not a secret)
    FAIL = "fail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True, slots=True)
class SignatureResult:
    """The verdict on one ``DKIM-Signature`` field.

    ``body_length`` is the ``l=`` value, ``unsigned_bytes`` how much canonicalised body lies
    beyond it; ``key_bits`` is known once the key record was read. ``signature`` is the start of
    ``b=``, which RFC 6008 lets Authentication-Results use to tell two signatures of one domain
    apart.
    """

    domain: str
    selector: str
    algorithm: str
    status: DkimStatus
    reason: str = ""
    identity: str = ""
    body_length: int | None = None
    unsigned_bytes: int = 0
    key_bits: int | None = None
    signature: str = ""


@dataclass(frozen=True, slots=True)
class DkimResult:
    """Every evaluated signature, in header order, and how many were left unevaluated."""

    signatures: tuple[SignatureResult, ...]
    skipped: int = 0

    def passing_domains(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.domain for s in self.signatures if s.status is DkimStatus.PASS))

    def findings(self) -> tuple[str, ...]:
        """``DKIM_NONE`` for an unsigned message, else one name per distinct status, plus
        ``DKIM_LENGTH_LIMITED`` and ``DKIM_TOO_MANY_SIGNATURES`` where they apply."""
        if not self.signatures:
            return ("DKIM_NONE",)
        names = [f"DKIM_{s.status.name}" for s in self.signatures]
        if any(s.body_length is not None and s.status is DkimStatus.PASS for s in self.signatures):
            names.append("DKIM_LENGTH_LIMITED")
        if self.skipped:
            names.append("DKIM_TOO_MANY_SIGNATURES")
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class _Parsed:
    index: int  # position among the DKIM-Signature fields, dkimpy's ``idx``
    tags: dict[bytes, bytes]
    result: SignatureResult  # the provisional result, final when status is set from parsing
    key: str | None


def _text(value: bytes) -> str:
    return re.sub(r"\s+", "", value.decode("ascii", "replace"))


def _parse(index: int, value: bytes) -> tuple[_Parsed, str | None]:
    """The tags of one signature and, if it cannot be evaluated, the permerror reason."""
    blank = SignatureResult("", "", "", DkimStatus.PERMERROR)
    try:
        tags = dkimpy.util.parse_tag_value(value)
    except dkimpy.util.InvalidTagValueList as exc:
        return _Parsed(index, {}, blank, None), f"malformed signature: {exc}"
    result = SignatureResult(
        domain=_text(tags.get(b"d", b"")).lower(),
        selector=_text(tags.get(b"s", b"")).lower(),
        algorithm=_text(tags.get(b"a", b"")).lower(),
        status=DkimStatus.PERMERROR,
        identity=_text(tags.get(b"i", b"")),
        signature=_text(tags.get(b"b", b""))[:8],
    )
    try:
        dkimpy.validate_signature_fields(dict(tags))
    except dkimpy.DKIMException as exc:
        return _Parsed(index, tags, result, None), f"invalid signature: {exc}"
    if result.algorithm not in _ACCEPTED_ALGORITHMS:
        return _Parsed(index, tags, result, None), f"algorithm {result.algorithm} not accepted (RFC 8301)"
    name = key_name(result.selector, result.domain)
    if name is None:
        return _Parsed(index, tags, result, None), "selector or domain is not a host name"
    return _Parsed(index, tags, result, name), None


def _set(result: SignatureResult, status: DkimStatus, reason: str, **changes: Any) -> SignatureResult:
    return dataclasses.replace(result, status=status, reason=reason, **changes)


def _canonical_length(verifier: dkimpy.DKIM, policy: CanonicalizationPolicy) -> int:
    if isinstance(verifier, FileDKIM):
        return verifier.digests.canonical_length(policy.body_algorithm.name)
    return len(policy.canonicalize_body(verifier.body))


def _unsigned(verifier: dkimpy.DKIM, tags: dict[bytes, bytes]) -> tuple[int | None, int]:
    if b"l" not in tags:
        return None, 0
    try:
        length = int(_text(tags[b"l"]))
        policy = CanonicalizationPolicy.from_c_value(tags.get(b"c", b"simple/simple"))
    except (ValueError, InvalidCanonicalizationPolicyError):
        return None, 0
    return length, max(0, _canonical_length(verifier, policy) - length)


def _verify_one(
    verifier: dkimpy.DKIM, parsed: _Parsed, key: PublicKey, keys: dict[str, KeyLookup], min_rsa_bits: int
) -> SignatureResult:
    result = _set(parsed.result, DkimStatus.PERMERROR, "", key_bits=key.bits)
    if key.kind != _ACCEPTED_ALGORITHMS[result.algorithm]:
        return dataclasses.replace(
            result, status=DkimStatus.PERMERROR, reason=f"{key.kind} key for an {result.algorithm} signature"
        )
    if key.hashes and result.algorithm.rsplit("-", 1)[-1] not in key.hashes:
        # RFC 6376 §3.6.1: h= lists the hash algorithms the key may be used with.
        return _set(result, DkimStatus.PERMERROR, f"key allows only {':'.join(key.hashes)}")
    identity = result.identity.rpartition("@")[2].lower()
    if key.strict_identity and identity and identity != result.domain:
        # t=s: the i= domain must be d= itself, not a subdomain (RFC 6376 §3.6.1).
        return _set(result, DkimStatus.PERMERROR, "key forbids a subdomain identity (t=s)")
    if key.kind == "rsa" and key.bits < min_rsa_bits:
        return dataclasses.replace(
            result,
            status=DkimStatus.FAIL,
            reason=f"RSA key of {key.bits} bits is under {min_rsa_bits} (RFC 8301 §3.2)",
        )
    length, unsigned = _unsigned(verifier, parsed.tags)
    result = dataclasses.replace(
        result, status=DkimStatus.PERMERROR, reason="", body_length=length, unsigned_bytes=unsigned
    )
    try:
        valid = verifier.verify(idx=parsed.index, dnsfunc=dnsfunc(keys))
    except dkimpy.ValidationError as exc:
        # dkimpy reports a body hash mismatch this way: the message changed, a plain fail.
        if "body hash mismatch" in str(exc):
            return _set(result, DkimStatus.FAIL, "body hash did not verify")
        return _set(result, DkimStatus.PERMERROR, f"invalid signature: {exc}")
    except dkimpy.DKIMException as exc:
        return _set(result, DkimStatus.PERMERROR, str(exc))
    except Exception as exc:  # dkimpy parses attacker input; no surprise may stop the check
        _log.info("dkim verification of d=%s s=%s raised %r", result.domain, result.selector, exc)
        return dataclasses.replace(
            result, status=DkimStatus.PERMERROR, reason="signature could not be evaluated"
        )
    if not valid:
        return _set(result, DkimStatus.FAIL, "signature did not verify")
    return _set(result, DkimStatus.PASS, "")


def _judge(
    verifier: dkimpy.DKIM,
    parsed: list[tuple[_Parsed, str | None]],
    keys: dict[str, KeyLookup],
    min_rsa_bits: int,
) -> list[SignatureResult]:
    results: list[SignatureResult] = []
    for sig, error in parsed:
        if error is not None or sig.key is None:
            results.append(_set(sig.result, DkimStatus.PERMERROR, error or "no key name"))
            continue
        lookup = keys[sig.key]
        if lookup.status is not KeyStatus.FOUND:
            status = DkimStatus.TEMPERROR if lookup.status is KeyStatus.TEMPERROR else DkimStatus.PERMERROR
            results.append(_set(sig.result, status, lookup.reason))
            continue
        key = evaluate_key(lookup)
        if isinstance(key, str):
            results.append(_set(sig.result, DkimStatus.PERMERROR, key))
            continue
        results.append(_verify_one(verifier, sig, key, keys, min_rsa_bits))
    return results


def _reader(message: bytes, min_rsa_bits: int) -> dkimpy.DKIM | Exception:
    try:
        return dkimpy.DKIM(message, logger=_dkimpy_log, minkey=min_rsa_bits)
    except Exception as exc:  # dkimpy's header parser raises IndexError on a leading continuation
        return exc


async def verify_dkim(
    message: bytes,
    dns: DnsLookup,
    *,
    max_signatures: int = MAX_SIGNATURES,
    min_rsa_bits: int = MIN_RSA_BITS,
) -> DkimResult:
    """Verify every DKIM signature of ``message`` (CRLF or LF line endings), keys via ``dns``."""
    verifier = await offload(len(message), _reader, message, min_rsa_bits)
    header = message[: header_end(message)]
    return await _settle(verifier, header, dns, len(message), _judge, max_signatures, min_rsa_bits)


async def _settle(
    verifier: dkimpy.DKIM | Exception,
    header: bytes,
    dns: DnsLookup,
    size: int,
    judge: Callable[..., list[SignatureResult]],
    max_signatures: int,
    min_rsa_bits: int,
) -> DkimResult:
    """From the reader on, the same for a message in memory and one in a file."""
    if isinstance(verifier, Exception):
        if b"dkim-signature" not in header.lower():
            return DkimResult(())
        unreadable = SignatureResult("", "", "", DkimStatus.PERMERROR, f"message not readable: {verifier!r}")
        return DkimResult((unreadable,))
    fields = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    skipped = max(0, len(fields) - max_signatures)
    parsed = [_parse(index, value) for index, value in enumerate(fields[:max_signatures])]
    keys = await fetch_keys(dns, (p.key for p, error in parsed if error is None and p.key))
    results = await offload(size, judge, verifier, parsed, keys, min_rsa_bits)
    return DkimResult(tuple(results), skipped)


def _file_reader(message: MessageFile, min_rsa_bits: int, digests: BodyDigests) -> FileDKIM | Exception:
    try:
        return FileDKIM(header_part(message.header), digests, logger=_dkimpy_log, minkey=min_rsa_bits)
    except Exception as exc:  # as in _reader: the header block is attacker input
        return exc


def _judge_file(
    verifier: FileDKIM,
    parsed: list[tuple[_Parsed, str | None]],
    keys: dict[str, KeyLookup],
    min_rsa_bits: int,
) -> list[SignatureResult]:
    # One pass over the body for every signature that can get as far as its body hash; any
    # other triple dkimpy asks for is computed on demand (BodyDigests.digest).
    found = (p for p, error in parsed if error is None and p.key and keys[p.key].status is KeyStatus.FOUND)
    triples = [triple_of(p.tags, b"simple/simple") for p in found]
    verifier.digests.compute(t for t in triples if t is not None)
    return _judge(verifier, parsed, keys, min_rsa_bits)


async def verify_dkim_file(
    message: MessageFile,
    dns: DnsLookup,
    *,
    max_signatures: int = MAX_SIGNATURES,
    min_rsa_bits: int = MIN_RSA_BITS,
    chunk: int = CHUNK,
    digests: BodyDigests | None = None,
) -> DkimResult:
    """:func:`verify_dkim` of a message kept in a file, holding its header block and a few
    ``chunk``-sized pieces of its body at a time, never the whole body. ``digests`` (made by
    :meth:`BodyDigests.of_message` and planned for DKIM and ARC) lets one pass serve both."""
    # On the loop: dkimpy parses only the header block here; the body pass runs in a thread.
    verifier = _file_reader(message, min_rsa_bits, digests or BodyDigests.of_message(message, chunk))
    size = message.size
    return await _settle(verifier, message.header, dns, size, _judge_file, max_signatures, min_rsa_bits)
