"""Adding our ARC set (RFC 8617 §5.1) when the gateway changes a message it received.

The set is three fields, prepended to the message: ``ARC-Authentication-Results`` (our
Authentication-Results, RFC 8617 §4.1.1), ``ARC-Message-Signature`` (a DKIM-style signature of
the message as we pass it on) and ``ARC-Seal`` (a signature over every ARC set, carrying ``cv=``,
the result of our own chain validation). The ``cv`` is read from the ``arc=`` result in our
Authentication-Results field, so sealing states exactly what we verified.

This follows dkimpy's ``arc_sign`` step for step, with one difference: dkimpy rebuilds the AAR from
the results the ``authres`` parser kept, which drops comments such as ``(2048-bit key)``; here the
results are copied as written (§4.1.1: the AAR is a copy of the Authentication-Results), so a
verifier sees what our Authentication-Results said, and seals match the ARC signing suite.

A chain that an earlier hop marked ``cv=fail`` is not sealed again (§5.1.2), nor a message
without our Authentication-Results, nor one whose own ARC check was not conclusive.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Sequence

import dkim as dkimpy
from dkim.canonicalization import CanonicalizationPolicy

from edgeward.senderauth.authresults import FIELD, own_results
from edgeward.senderauth.keys import QuietLogger

__all__ = ["ArcSealError", "seal"]

MAX_INSTANCE = 50
_ARC_RESULT = re.compile(r"(?:^|;)\s*arc\s*=\s*([A-Za-z]+)", re.IGNORECASE)
_COMMENT = re.compile(r"\([^()]*\)")
_log = QuietLogger(logging.getLogger("edgeward.senderauth.arcseal"))


class ArcSealError(Exception):
    """The message cannot be sealed: a bad key or header list, or an instance over the limit."""


def _chain_status(results: Sequence[str]) -> bytes | None:
    found = [m.group(1).lower() for r in results for m in _ARC_RESULT.finditer(_COMMENT.sub("", r))]
    if not found:
        return dkimpy.CV_None  # type: ignore[no-any-return]
    if len(found) > 1:
        return dkimpy.CV_Fail  # type: ignore[no-any-return]
    status = found[0].encode("ascii")
    return status if status in (dkimpy.CV_None, dkimpy.CV_Pass, dkimpy.CV_Fail) else None


def _fold(value: bytes, linesep: bytes) -> bytes:
    """Fold a signature field between its tags.

    dkimpy's standardised form (tags sorted, lower case, no spaces: what the ARC signing suite
    signs) comes back on one line. A fold between tags canonicalises (relaxed) to the same
    ``"; "`` that was signed, so it changes no hash; a fold inside ``b=`` would change the hash of
    a later ARC-Seal over this field, so ``b=`` stays on one line (under 998 octets, RFC 5322
    §2.1.1, for keys up to 4096 bits).
    """
    return b" " + (b";" + linesep + b" ").join(value.strip().split(b"; ")) + linesep


class _Sealer(dkimpy.ARC):  # type: ignore[misc]
    headers: list[tuple[bytes, bytes]]  # dkimpy's parsed header fields, rewritten as the set is built
    body: bytes
    linesep: bytes

    def seal(
        self,
        selector: bytes,
        domain: bytes,
        key: bytes,
        srv_id: bytes,
        include: tuple[bytes, ...],
        stamp: bytes,
    ) -> list[bytes]:
        try:
            pk = dkimpy.parse_pem_private_key(key)
        except dkimpy.UnparsableKeyError as exc:
            raise ArcSealError(f"unusable sealing key: {exc}") from exc
        values = [
            v.decode("utf-8", "surrogateescape")
            for n, v in self.headers
            if n.lower() == FIELD.lower().encode()
        ]
        results = own_results(values, srv_id.decode("utf-8"))
        if not results:
            return []
        cv = _chain_status(results)
        if cv is None:
            return []  # our own check was not conclusive (temperror): say nothing rather than fail
        if b"from" not in include:
            raise ArcSealError("the From field must be signed")
        if set(include) & set(self.should_not_sign):
            raise ArcSealError("the header list names fields that must not be signed")
        max_instance, existing = self.sorted_arc_headers()
        instance = max_instance + 1 if existing else 1
        if instance > MAX_INSTANCE:
            raise ArcSealError(f"instance {instance} over {MAX_INSTANCE}")
        if (instance == 1) != (cv == dkimpy.CV_None):
            return []  # cv=none with an existing chain, or a chain result without one
        previous = [] if cv == dkimpy.CV_Fail else [y for _x, y in existing]
        linesep = self.linesep
        body = ";" + linesep.decode() + " "
        aar = (f"i={instance}; " + srv_id.decode() + body + body.join(results)).encode(
            "utf-8", "surrogateescape"
        )
        aar += linesep
        policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
        previous.insert(0, (b"ARC-Authentication-Results", aar))
        self.headers = policy.canonicalize_headers(previous[:1]) + self.headers

        self.hasher = dkimpy.HASH_ALGORITHMS[b"rsa-sha256"]  # gen_header hashes with it
        hasher = self.hasher()
        hasher.update(policy.canonicalize_body(self.body))
        ams_fields = [
            (b"i", str(instance).encode()),
            (b"a", b"rsa-sha256"),
            (b"c", b"relaxed/relaxed"),
            (b"d", domain),
            (b"s", selector),
            (b"t", stamp),
            (b"h", b" : ".join(include)),
            (b"bh", base64.b64encode(hasher.digest())),
            (b"b", b"0" * 60),
        ]
        ams = _fold(self.gen_header(ams_fields, include, policy, b"ARC-Message-Signature", pk, True), linesep)
        previous.insert(0, (b"ARC-Message-Signature", ams))
        self.headers = policy.canonicalize_headers(previous[:1]) + self.headers

        seal_fields = [
            (b"i", str(instance).encode()),
            (b"cv", cv),
            (b"a", b"rsa-sha256"),
            (b"d", domain),
            (b"s", selector),
            (b"t", stamp),
            (b"b", b"0" * 60),
        ]
        covered = [name.lower() for name, _ in previous]
        covered.reverse()
        if cv == dkimpy.CV_Fail:
            # §5.1.2: over a failed chain the seal covers only the set being added.
            self.headers.reverse()
        arc_seal = _fold(self.gen_header(seal_fields, covered, policy, b"ARC-Seal", pk, True), linesep)
        return [
            b"ARC-Seal: " + arc_seal,
            b"ARC-Message-Signature: " + ams,
            b"ARC-Authentication-Results: " + aar,
        ]


def seal(
    message: bytes,
    *,
    selector: str,
    domain: str,
    private_key: bytes,
    authserv_id: str,
    include_headers: Sequence[str] | None = None,
    timestamp: int | None = None,
) -> list[bytes]:
    """The ARC set to prepend to ``message`` (ARC-Seal first, each field ending in the message's
    line separator), or an empty list when there is nothing to seal.

    ``private_key`` is a PEM RSA key (ARC seals with rsa-sha256, RFC 8617 §4.1.3);
    ``include_headers`` the fields the ARC-Message-Signature covers (dkimpy's default list if
    omitted).
    """
    try:
        sealer = _Sealer(message, logger=_log)
        include = tuple(h.lower().encode("ascii") for h in include_headers) if include_headers else None
        if include is None:
            include = tuple(h.lower() for h in sealer.default_sign_headers())
        stamp = str(int(timestamp if timestamp is not None else time.time())).encode("ascii")
        return sealer.seal(
            selector.encode("ascii"),
            domain.encode("ascii"),
            private_key,
            authserv_id.encode(),
            include,
            stamp,
        )
    except (dkimpy.DKIMException, UnicodeError) as exc:
        raise ArcSealError(str(exc)) from exc
