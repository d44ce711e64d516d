"""TLS for the gateway: the certificate store and the SSLContext policy.

``store`` keeps certificates, keys and their bindings to services; ``context`` turns a bound
certificate into server and client ``SSLContext`` objects with the strict default policy. The
names below are the public interface; the other modules are building blocks.
"""

from edgeward.tls.certs import make_self_signed
from edgeward.tls.context import TLSInfo, client_context, describe, server_context
from edgeward.tls.errors import CertificateError
from edgeward.tls.info import Binding, CertInfo
from edgeward.tls.store import CertificateStore, ImportResult, PendingRequest, RenewalReport, ensure_default

__all__ = [
    "Binding",
    "CertInfo",
    "CertificateError",
    "CertificateStore",
    "ImportResult",
    "PendingRequest",
    "RenewalReport",
    "TLSInfo",
    "client_context",
    "describe",
    "ensure_default",
    "make_self_signed",
    "server_context",
]
