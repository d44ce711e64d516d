"""``[dkim_sign]``: DKIM signatures (RFC 6376) on the mail Edgeward sends out for its domains.

Signing is a transform after every other change (stamps, attachment stripping, the transport
rules' subject tags, headers and disclaimers), so the signature covers the message as it
leaves; only the ARC seal comes after it, and seals it.

What is signed: mail from a session that may relay or has authenticated (the rules'
``outbound`` direction) whose ``From`` domain is one of ``domains`` or below one; ``d=`` is
the longest such domain, so ``news.example.com`` signs as itself when listed and as
``example.com`` otherwise (DMARC's relaxed alignment).

Decisions:

- A signature already on the message for the domain we sign as (an internal server signed it
  before the disclaimer broke it) is removed and replaced by ours: it no longer verifies, and
  a receiver should see one valid signature of the domain, not a broken one next to it.
  Signatures of other domains are left as they are (not ours to remove; a changed message
  breaks them, which RFC 6376 §6.1 makes the same as unsigned).
- Inbound mail is never signed: a disclaimer on it breaks the sender's signature, and what
  we verified on receipt is carried by our Authentication-Results and the ``[arc]`` seal.
- ``relaxed/relaxed`` canonicalisation and RSA-SHA256, the combination every verifier takes.

The key (PEM, RSA) is made by ``edgeward dkim keygen``, which also prints the TXT record.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_HEADERS = (
    "from", "to", "cc", "subject", "date", "message-id", "reply-to", "in-reply-to", "references",
    "mime-version", "content-type", "content-transfer-encoding",
)  # fmt: skip
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_FIELD = re.compile(r"^[\x21-\x39\x3b-\x7e]{1,76}$")


class DkimSignConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(False, description="DKIM-sign outbound mail of the domains below")
    selector: str = Field("", description="Selector of the key, published at <selector>._domainkey.<domain>")
    key_file: Path = Field(
        Path("dkim/signing.key"), description="PEM RSA private key ('edgeward dkim keygen' writes it)"
    )
    domains: tuple[str, ...] = Field(
        (),
        max_length=200,
        description="Domains to sign for (d=): mail whose From domain is one of them or below",
    )
    headers: tuple[str, ...] = Field(
        DEFAULT_HEADERS, min_length=1, max_length=40, description="Header fields the signature covers (h=)"
    )
    bits: int = Field(2048, ge=1024, le=4096, description="Size of the RSA key 'dkim keygen' makes")

    @field_validator("selector")
    @classmethod
    def _selector(cls, v: str) -> str:
        v = v.strip().lower()
        if v and not all(_LABEL.match(label) for label in v.split(".")):
            raise ValueError(f"a selector is DNS labels, found {v!r}")
        return v

    @field_validator("domains")
    @classmethod
    def _domains(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(d.strip().lower().rstrip(".") for d in v)
        for d in out:
            if not all(_LABEL.match(label) for label in d.split(".")) or "." not in d:
                raise ValueError(f"expected a domain name, found {d!r}")
        return out

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(h.strip().lower() for h in v)
        for h in out:
            if not _FIELD.match(h):
                raise ValueError(f"expected a header field name, found {h!r}")
        if "from" not in out:
            raise ValueError("the signature must cover From (RFC 6376 5.4)")
        return out

    @model_validator(mode="after")
    def _complete(self) -> DkimSignConfig:
        if self.enabled and (not self.selector or not self.domains):
            raise ValueError("[dkim_sign] enabled needs a selector and at least one domain")
        return self

    def signing_domain(self, from_domain: str) -> str | None:
        """The ``d=`` for a From domain: the longest configured domain at or above it."""
        domain = from_domain.strip().lower().rstrip(".")
        found = [d for d in self.domains if domain == d or domain.endswith("." + d)]
        return max(found, key=len) if found else None
