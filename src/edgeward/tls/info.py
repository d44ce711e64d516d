"""What a certificate in the store is and where it is used: ``CertInfo`` and ``Binding``.

Owns the description ``cert list`` shows (and ``--json`` prints), read from the certificate
itself plus the bindings recorded in the store's index.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from edgeward.tls.certs import is_self_signed, key_description, san_names, thumbprint


@dataclass(frozen=True, slots=True)
class Binding:
    """A use of a certificate: a service, optionally narrowed to one connector."""

    service: str
    connector: str | None = None

    def __str__(self) -> str:
        return self.service if self.connector is None else f"{self.service}:{self.connector}"


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What ``cert list`` shows about one certificate in the store."""

    thumbprint: str
    subject: str
    sans: tuple[str, ...]
    issuer: str
    not_before: datetime
    not_after: datetime
    self_signed: bool
    key_type: str
    key_size: int
    bindings: tuple[Binding, ...] = ()

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, bindings: Iterable[Binding] = ()) -> CertInfo:
        key_type, key_size = key_description(cert.public_key())
        return cls(
            thumbprint=thumbprint(cert),
            subject=cert.subject.rfc4514_string(),
            sans=san_names(cert),
            issuer=cert.issuer.rfc4514_string(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            self_signed=is_self_signed(cert),
            key_type=key_type,
            key_size=key_size,
            bindings=tuple(bindings),
        )

    def expired(self, now: datetime) -> bool:
        return now >= self.not_after

    @property
    def lifetime_days(self) -> int:
        """Validity in whole days, not counting the backdating for clock skew."""
        return (self.not_after - self.not_before + timedelta(minutes=30)).days

    def days_left(self, now: datetime) -> int:
        return (self.not_after - now).days

    def days_until_expiry(self, now: float) -> float:
        """Days, with their fraction, from the epoch time ``now`` to expiry (negative: expired)."""
        return (self.not_after.timestamp() - now) / 86400

    def to_json(self) -> dict[str, object]:
        return {
            "thumbprint": self.thumbprint,
            "subject": self.subject,
            "sans": list(self.sans),
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "self_signed": self.self_signed,
            "key_type": self.key_type,
            "key_size": self.key_size,
            "bindings": [{"service": b.service, "connector": b.connector} for b in self.bindings],
        }
