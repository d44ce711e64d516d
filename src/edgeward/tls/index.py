"""The certificate store's index: which files belong to which certificate, pending requests, bindings.

Owns the JSON document ``index.json`` at the root of the store and its in-memory form. The
certificates themselves are the source of truth for names and dates; the index only records
what cannot be read from them (file names, bindings, requests waiting for a CA, lineage).

Format (version 1)::

    {"format": 1,
     "certificates": {"<THUMBPRINT>": {"cert": "certs/<T>.pem", "key": "keys/<T>.key",
                                       "added": "<iso time>", "superseded_by": null}},
     "pending": {"<id>": {"csr": "requests/<id>.csr", "key": "keys/request-<id>.key",
                          "public_key": "<sha256 of SPKI>", "created": "<iso time>",
                          "renews": "<THUMBPRINT>" | null}},
     "bindings": [{"service": "smtp", "connector": null, "thumbprint": "<T>"}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from edgeward.tls.errors import StoreCorrupt
from edgeward.tls.info import Binding

FORMAT = 1
SERVICES = ("smtp", "https")


@dataclass(slots=True)
class CertRecord:
    cert: str
    key: str
    added: str
    superseded_by: str | None = None


@dataclass(slots=True)
class PendingRecord:
    csr: str
    key: str
    public_key: str
    created: str
    renews: str | None = None


@dataclass(slots=True)
class StoreIndex:
    """Mutable while a store operation holds the lock; saved as a whole."""

    certificates: dict[str, CertRecord] = field(default_factory=dict)
    pending: dict[str, PendingRecord] = field(default_factory=dict)
    bindings: dict[Binding, str] = field(default_factory=dict)

    def bindings_of(self, thumb: str) -> tuple[Binding, ...]:
        found = (b for b, t in self.bindings.items() if t == thumb)
        return tuple(sorted(found, key=lambda b: (b.service, b.connector or "")))

    def bind(self, binding: Binding, thumb: str) -> str | None:
        """Point ``binding`` at ``thumb``; return the thumbprint it pointed at before."""
        previous = self.bindings.get(binding)
        self.bindings[binding] = thumb
        return previous

    def unbind_all(self, thumb: str) -> None:
        for binding in self.bindings_of(thumb):
            del self.bindings[binding]

    def move_bindings(self, old: str, new: str) -> None:
        for binding in self.bindings_of(old):
            self.bindings[binding] = new

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT,
            "certificates": {
                t: {"cert": r.cert, "key": r.key, "added": r.added, "superseded_by": r.superseded_by}
                for t, r in sorted(self.certificates.items())
            },
            "pending": {
                i: {
                    "csr": r.csr,
                    "key": r.key,
                    "public_key": r.public_key,
                    "created": r.created,
                    "renews": r.renews,
                }
                for i, r in sorted(self.pending.items())
            },
            "bindings": [
                {"service": b.service, "connector": b.connector, "thumbprint": t}
                for b, t in sorted(self.bindings.items(), key=lambda i: (i[0].service, i[0].connector or ""))
            ],
        }
        return (json.dumps(doc, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> StoreIndex:
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise StoreCorrupt(f"index.json: unknown format (expected {FORMAT})")
            index = cls()
            for thumb, rec in _mapping(doc, "certificates").items():
                index.certificates[thumb] = CertRecord(
                    cert=_str(rec, "cert"),
                    key=_str(rec, "key"),
                    added=_str(rec, "added"),
                    superseded_by=_opt_str(rec, "superseded_by"),
                )
            for req_id, rec in _mapping(doc, "pending").items():
                index.pending[req_id] = PendingRecord(
                    csr=_str(rec, "csr"),
                    key=_str(rec, "key"),
                    public_key=_str(rec, "public_key"),
                    created=_str(rec, "created"),
                    renews=_opt_str(rec, "renews"),
                )
            for item in doc.get("bindings", []):
                binding = Binding(_str(item, "service"), _opt_str(item, "connector"))
                thumb = _str(item, "thumbprint")
                if thumb not in index.certificates:
                    raise StoreCorrupt(f"index.json: binding {binding} names unknown certificate {thumb}")
                index.bindings[binding] = thumb
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise StoreCorrupt(f"index.json is not valid: {exc}") from exc
        return index


def _mapping(doc: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise TypeError(f"{key} must be an object")
    return value


def _str(rec: dict[str, Any], key: str) -> str:
    value = rec[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def _opt_str(rec: dict[str, Any], key: str) -> str | None:
    value = rec.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be a string or null")
    return value
