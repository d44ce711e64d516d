"""The certificate store: certificates, keys, pending requests and service bindings in one folder.

Owns the lifecycle of the gateway's own certificates, after Exchange's
``New/Import/Enable/Remove-ExchangeCertificate``: a self-signed certificate at first start
(``ensure_default``), requests for a CA and the import of its answer, PEM and PKCS#12 import,
binding to a service (``smtp``, ``https``) or to one connector, renewal and removal.

Files, index, lock and crash safety are ``storage``'s; this module decides what each
operation means (which warnings, which refusals, where bindings go).

Security: keys are created 0600 and folders 0700 from the first byte (see ``fsutil``); key
material is never returned except through the key file paths of ``binding_for``, never
logged, and never part of an error message. Expired certificates are not bound without force.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from edgeward.ports import Clock
from edgeward.tls import certs as x
from edgeward.tls.errors import (
    CertificateInUse,
    ExpiredCertificate,
    InvalidInput,
    NoBinding,
    NotSelfSigned,
)
from edgeward.tls.fsutil import PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, atomic_write
from edgeward.tls.importing import ParsedImport, parse_pem, parse_pkcs12
from edgeward.tls.index import SERVICES, PendingRecord, StoreIndex
from edgeward.tls.info import Binding, CertInfo
from edgeward.tls.storage import StoreFiles, Txn, read_store_file

AUTO_RENEW_MIN_DAYS = 365
MAX_INPUT_BYTES = 1 << 20  # a certificate chain or PKCS#12 file is a few KiB; refuse anything huge


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A certificate signing request waiting for a CA; its key stays in the store."""

    id: str
    csr_pem: bytes
    csr_path: Path
    names: tuple[str, ...]
    renews: str | None = None


@dataclass(frozen=True, slots=True)
class ImportResult:
    info: CertInfo
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RenewalReport:
    renewed: tuple[tuple[str, str], ...] = ()  # (old thumbprint, new thumbprint)
    warnings: tuple[str, ...] = ()


class CertificateStore(StoreFiles):
    """Certificates and their bindings under ``root`` (usually ``DATA_DIR/tls``)."""

    # --- creating and importing ----------------------------------------------------------------

    def create_self_signed(
        self,
        hostname: str,
        *,
        extra_sans: Iterable[str] = (),
        key_type: str = "rsa",
        key_size: int = 2048,
        days: int = 365,
    ) -> CertInfo:
        """Create a self-signed certificate (unbound) and return its description."""
        cert_pem, key_pem = x.make_self_signed(
            hostname, extra_sans=extra_sans, key_type=key_type, key_size=key_size, days=days, now=self.now()
        )
        cert = x509.load_pem_x509_certificate(cert_pem)
        with self._transaction() as txn:
            thumb = self._add(txn, [cert], key_pem)
            return CertInfo.from_certificate(cert, txn.index.bindings_of(thumb))

    def request(
        self,
        hostname: str,
        *,
        extra_sans: Iterable[str] = (),
        key_type: str = "rsa",
        key_size: int = 2048,
        include_short_name: bool = False,
        renews: str | None = None,
    ) -> PendingRequest:
        """Make a key and a CSR for a CA; the key waits in the store for the CA's answer.

        The short host name is left out unless asked for: public CAs refuse internal names.
        """
        fqdn, short = x.host_names(hostname)
        names = x.san_list(fqdn, extra_sans, short=short if include_short_name else None)
        key = x.generate_key(key_type, key_size)
        csr_pem = x.request_to_pem(x.build_request(key, fqdn, names))
        pk_id = x.public_key_id(key.public_key())
        req_id = pk_id[:16]
        with self._transaction() as txn:
            csr_rel, key_rel = f"requests/{req_id}.csr", f"keys/request-{req_id}.key"
            atomic_write(self._path(key_rel), x.key_to_pem(key), mode=PRIVATE_FILE_MODE)
            atomic_write(self._path(csr_rel), csr_pem, mode=PUBLIC_FILE_MODE)
            txn.index.pending[req_id] = PendingRecord(
                csr=csr_rel, key=key_rel, public_key=pk_id, created=self.now().isoformat(), renews=renews
            )
            return PendingRequest(req_id, csr_pem, self._path(csr_rel), names, renews)

    def request_renewal(self, thumbprint: str) -> PendingRequest:
        """A new request with the names and key type of an existing (CA-issued) certificate.

        When the CA's answer is imported, the old certificate's bindings move to the new one.
        """
        thumb, cert = self._find(thumbprint)
        key_type, key_size = x.key_description(cert.public_key())
        names = x.san_names(cert)
        fqdn = x.common_name(cert) or names[0]
        return self.request(
            fqdn,
            extra_sans=[n for n in names if n != fqdn],
            key_type=key_type,
            key_size=key_size if key_type == "rsa" else 2048,
            renews=thumb,
        )

    def import_pem(
        self,
        chain_path: Path,
        key_path: Path | None = None,
        *,
        password: str | bytes | None = None,
        allow_expired: bool = False,
    ) -> ImportResult:
        """Import a PEM chain (leaf and intermediates, any order) with its key.

        Without ``key_path`` the key is taken from the chain file if it holds one, else from the
        pending request whose public key the certificate carries.
        """
        chain_data = _read_input(chain_path)
        key_data = _read_input(key_path) if key_path is not None else None
        with self._transaction() as txn:
            parsed = parse_pem(
                chain_data,
                key_data,
                password=password,
                pending_keys=_pending_keys(txn.index),
                now=self.now(),
                allow_expired=allow_expired,
            )
            return self._store_import(txn, parsed)

    def import_pkcs12(
        self, path: Path, password: str | bytes | None = None, *, allow_expired: bool = False
    ) -> ImportResult:
        """Import a PKCS#12 (PFX) file; a file without a key may answer a pending request."""
        data = _read_input(path)
        with self._transaction() as txn:
            parsed = parse_pkcs12(
                data,
                password=password,
                pending_keys=_pending_keys(txn.index),
                now=self.now(),
                allow_expired=allow_expired,
            )
            return self._store_import(txn, parsed)

    # --- bindings ------------------------------------------------------------------------------

    def enable(
        self, thumbprint: str, service: str = "smtp", connector: str | None = None, *, force: bool = False
    ) -> str | None:
        """Bind a certificate to a service (or one connector of it); return the one it replaces.

        An expired certificate is refused unless ``force``: verifying peers would fail, and an
        opportunistic peer gains nothing from it either.
        """
        binding = _binding(service, connector)
        with self._transaction() as txn:
            thumb, cert = self._find(thumbprint, txn.index)
            if cert.not_valid_after_utc <= self.now() and not force:
                raise ExpiredCertificate(
                    f"certificate {thumb} expired on {cert.not_valid_after_utc:%Y-%m-%d}"
                )
            previous = txn.index.bind(binding, thumb)
            return None if previous == thumb else previous

    def disable(self, service: str = "smtp", connector: str | None = None) -> str | None:
        """Remove one binding; return the thumbprint it named, or None if there was none."""
        binding = _binding(service, connector)
        with self._transaction() as txn:
            return txn.index.bindings.pop(binding, None)

    def binding_for(self, service: str = "smtp", connector: str | None = None) -> tuple[Path, Path]:
        """``(cert_path, key_path)`` for a connector, falling back to the service's default."""
        index = self._snapshot()
        thumb = index.bindings.get(_binding(service, connector))
        if thumb is None and connector is not None:
            thumb = index.bindings.get(_binding(service, None))
        if thumb is None:
            where = service if connector is None else f"{service} connector {connector!r}"
            raise NoBinding(f"no certificate is bound for {where}")
        return self._files(index, thumb)

    # --- listing, removal, renewal -------------------------------------------------------------

    def get(self, thumbprint: str) -> CertInfo:
        index = self._snapshot()
        thumb, cert = self._find(thumbprint, index)
        return CertInfo.from_certificate(cert, index.bindings_of(thumb))

    def remove(self, thumbprint: str, *, force: bool = False) -> None:
        """Delete a certificate and its key; a bound one only with ``force`` (bindings go too)."""
        with self._transaction() as txn:
            thumb, _ = self._find(thumbprint, txn.index)
            bound = txn.index.bindings_of(thumb)
            if bound and not force:
                names = ", ".join(map(str, bound))
                raise CertificateInUse(
                    f"certificate {thumb} is bound to {names}; bind another first or force"
                )
            self._drop(txn, thumb)

    def renew(self, thumbprint: str, *, keep_old: bool = False, days: int | None = None) -> str:
        """Replace a self-signed certificate with a new key and certificate for the same names.

        The new certificate lives ``days`` (default: as long as the old one did). Bindings move
        to it, and its thumbprint is returned. The old one is
        deleted unless ``keep_old`` (then it is marked as superseded and never renewed again).
        """
        with self._transaction() as txn:
            return self._renew(txn, thumbprint, keep_old=keep_old, days=days)

    def renew_due(self, within_days: int = 30) -> RenewalReport:
        """Renew self-signed certificates expiring within ``within_days``; warn about CA-issued ones."""
        now = self.now()
        renewed: builtins.list[tuple[str, str]] = []
        warnings: builtins.list[str] = []
        with self._transaction() as txn:
            for thumb, record in sorted(txn.index.certificates.items()):
                if record.superseded_by is not None:
                    continue
                info = CertInfo.from_certificate(self._load_cert(record), txn.index.bindings_of(thumb))
                if info.days_left(now) >= within_days:
                    continue
                if info.self_signed:
                    # At least a year: renewing for the same short life would make the new
                    # certificate due again at once, and renewal would repeat on every run.
                    days = max(info.lifetime_days, AUTO_RENEW_MIN_DAYS, within_days + 1)
                    renewed.append((thumb, self._renew(txn, thumb, keep_old=False, days=days)))
                    continue
                state = "expired on" if info.expired(now) else "expires on"
                uses = ", ".join(map(str, info.bindings)) or "not bound"
                names = ", ".join(info.sans) or info.subject
                warnings.append(
                    f"certificate for {names} ({thumb[:16]}, {uses}) issued by {info.issuer} {state} "
                    f"{info.not_after:%Y-%m-%d}: ask the CA for a new one ('cert renew' writes a request)"
                )
        return RenewalReport(tuple(renewed), tuple(warnings))

    def list(self) -> builtins.list[CertInfo]:
        """Every certificate in the store, soonest expiry first."""
        index = self._snapshot()
        infos = [
            CertInfo.from_certificate(self._load_cert(rec), index.bindings_of(thumb))
            for thumb, rec in index.certificates.items()
        ]
        return sorted(infos, key=lambda i: (i.not_after, i.thumbprint))

    def pending(self) -> builtins.list[PendingRequest]:
        """Requests still waiting for a CA."""
        index = self._snapshot()
        result = []
        for req_id, rec in sorted(index.pending.items()):
            csr_pem = read_store_file(self._path(rec.csr))
            names = x.san_names(x509.load_pem_x509_csr(csr_pem))
            result.append(PendingRequest(req_id, csr_pem, self._path(rec.csr), names, rec.renews))
        return result

    def ensure_default(
        self, hostname: str, *, key_type: str = "rsa", key_size: int = 2048, days: int = 365
    ) -> tuple[Path, Path]:
        """Bind a new self-signed certificate for ``smtp`` unless one is bound; return its paths.

        Check and creation happen under one lock, so two processes starting at once make one
        certificate. An existing binding is kept as it is, even if expired: ``renew_due`` is the
        one place that replaces certificates.
        """
        default = Binding("smtp")
        with self._transaction() as txn:
            if default not in txn.index.bindings:
                cert_pem, key_pem = x.make_self_signed(
                    hostname, key_type=key_type, key_size=key_size, days=days, now=self.now()
                )
                thumb = self._add(txn, [x509.load_pem_x509_certificate(cert_pem)], key_pem)
                txn.index.bind(default, thumb)
            return self._files(txn.index, txn.index.bindings[default])

    def _store_import(self, txn: Txn, parsed: ParsedImport) -> ImportResult:
        warnings = list(parsed.warnings)
        leaf_pk = x.public_key_id(parsed.leaf.public_key())
        req_id = next((i for i, rec in txn.index.pending.items() if rec.public_key == leaf_pk), None)
        if parsed.key is not None:
            key_pem = x.key_to_pem(parsed.key)
        elif req_id is not None:
            key_pem = x.key_to_pem(
                x.load_private_key(read_store_file(self._path(txn.index.pending[req_id].key)))
            )
        else:  # parse_* only return without a key when a request matched
            raise InvalidInput("no private key for the certificate")
        thumb = self._add(txn, builtins.list(parsed.chain), key_pem)
        if req_id is not None:
            request = txn.index.pending.pop(req_id)
            txn.doomed += [self._path(request.csr), self._path(request.key)]
            old = request.renews
            if old is not None and old in txn.index.certificates and old != thumb:
                moved = txn.index.bindings_of(old)
                txn.index.move_bindings(old, thumb)
                txn.index.certificates[old].superseded_by = thumb
                if moved:
                    warnings.append(f"bindings {', '.join(map(str, moved))} moved from {old} to {thumb}")
        return ImportResult(
            CertInfo.from_certificate(parsed.leaf, txn.index.bindings_of(thumb)), tuple(warnings)
        )

    def _renew(self, txn: Txn, thumbprint: str, *, keep_old: bool, days: int | None) -> str:
        old, cert = self._find(thumbprint, txn.index)
        if not x.is_self_signed(cert):
            raise NotSelfSigned(
                f"certificate {old} is issued by {cert.issuer.rfc4514_string()}: make a request for the CA "
                "instead (request_renewal / 'cert renew' writes one)"
            )
        key_type, key_size = x.key_description(cert.public_key())
        names = x.san_names(cert)
        common_name = x.common_name(cert) or (names[0] if names else "localhost")
        if days is None:
            days = min(max(CertInfo.from_certificate(cert).lifetime_days, 1), x.MAX_DAYS)
        key = x.generate_key(key_type, key_size if key_type == "rsa" else 2048)
        new_cert = x.build_self_signed(key, common_name, names, days=days, now=self.now())
        new = self._add(txn, [new_cert], x.key_to_pem(key))
        txn.index.move_bindings(old, new)
        if keep_old:
            txn.index.certificates[old].superseded_by = new
        else:
            self._drop(txn, old)
        return new


def ensure_default(
    root: Path,
    hostname: str,
    *,
    clock: Clock | None = None,
    key_type: str = "rsa",
    key_size: int = 2048,
    days: int = 365,
) -> tuple[Path, Path]:
    """At first start, create and bind a self-signed certificate for ``smtp``; return its paths.

    This is what ``edgeward init`` and ``edgeward serve`` call; see ``CertificateStore.ensure_default``.
    """
    store = CertificateStore(root, clock=clock)
    return store.ensure_default(hostname, key_type=key_type, key_size=key_size, days=days)


def _binding(service: str, connector: str | None) -> Binding:
    if service not in SERVICES:
        raise InvalidInput(f"service must be one of {', '.join(SERVICES)}, not {service!r}")
    if connector is not None and not (0 < len(connector) <= 64 and connector.isprintable()):
        raise InvalidInput(f"not a connector name: {connector!r}")
    return Binding(service, connector)


def _pending_keys(index: StoreIndex) -> set[str]:
    return {rec.public_key for rec in index.pending.values()}


def _read_input(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    if len(data) > MAX_INPUT_BYTES:
        raise InvalidInput(f"{path} is larger than {MAX_INPUT_BYTES} bytes: not a certificate or key file")
    return data
