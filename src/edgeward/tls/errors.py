"""Errors of certificate handling.

Every error here describes a problem an operator can fix (a bad file, a wrong password, a
thumbprint that does not exist). Messages are safe to print and log: they never contain key
material or passwords. The ``cert`` commands turn any of them into exit code 2.

::

    EdgewardError
    └── CertificateError
        ├── InvalidInput            bad host name, SAN, key type or size, unreadable or malformed file
        │   ├── WrongPassword       a PKCS#12 file or encrypted key could not be decrypted
        │   ├── KeyMismatch         the private key does not belong to the certificate
        │   ├── ExpiredCertificate  import or binding of a certificate past its validity (without force)
        │   └── WeakKey             key type or size below policy (RSA < 2048, unsupported curve)
        ├── UnknownCertificate      no certificate (or several) matches a thumbprint
        ├── CertificateInUse        removal refused because the certificate is still bound
        ├── NotSelfSigned           automatic renewal asked for a CA-issued certificate
        ├── NoBinding               no certificate is bound for a service
        └── StoreCorrupt            the index is unreadable or refers to missing files
"""

from __future__ import annotations

from edgeward.errors import EdgewardError


class CertificateError(EdgewardError):
    """Base of all certificate and certificate-store errors."""


class InvalidInput(CertificateError):
    """A name, option or file given by the operator is not acceptable."""


class WrongPassword(InvalidInput):
    """A PKCS#12 file or an encrypted private key could not be decrypted."""


class KeyMismatch(InvalidInput):
    """The private key does not belong to the certificate."""


class ExpiredCertificate(InvalidInput):
    """The certificate is outside its validity period."""


class WeakKey(InvalidInput):
    """The key is of a type or size the policy does not accept."""


class UnknownCertificate(CertificateError):
    """No certificate in the store matches, or a thumbprint prefix is ambiguous."""


class CertificateInUse(CertificateError):
    """The certificate is bound to a service and cannot be removed without force."""


class NotSelfSigned(CertificateError):
    """Only self-signed certificates can be renewed without a CA."""


class NoBinding(CertificateError):
    """No certificate is bound for the asked service (and connector)."""


class StoreCorrupt(CertificateError):
    """The store index cannot be read or points at files that are gone."""
