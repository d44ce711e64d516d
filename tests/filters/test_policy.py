"""The small rules the policy took over from the session: postmaster, tarpit, MAIL admission."""

from __future__ import annotations

from pathlib import Path

from edgeward.config.schema import Config, ReceiveConnectorConfig
from edgeward.filters.base import SessionInfo
from edgeward.filters.policy import AUTH_REQUIRED, NO_POSTMASTER, TLS_REQUIRED, mail_admission
from edgeward.runtime_policy import build_policy
from edgeward.types import Address, Peer, Reply

CONNECTOR = ReceiveConnectorConfig(name="internet", tarpit_interval=5)
ANONYMOUS = SessionInfo("s1", Peer("192.0.2.1", 1), CONNECTOR)


def test_rcpt_to_postmaster_goes_to_the_first_accepted_domain_or_is_refused() -> None:
    policy = build_policy(Config(accepted_domains=("example.test", "other.test")), [])
    assert policy.recipient(Address("Postmaster", "")) == Address("postmaster", "example.test")
    assert policy.recipient(Address("u", "other.test")) == Address("u", "other.test")
    assert build_policy(Config(), []).recipient(Address("Postmaster", "")) == NO_POSTMASTER


def test_permanent_refusals_to_anonymous_clients_are_tarpitted_and_nothing_else() -> None:
    policy = build_policy(Config(), [])
    refusal, deferral = Reply(550, "5.7.1", "no"), Reply(451, "4.7.1", "later")
    assert policy.tarpit(refusal, ANONYMOUS) == 5
    assert policy.tarpit(deferral, ANONYMOUS) == 0
    user = SessionInfo("s2", ANONYMOUS.peer, CONNECTOR, authenticated="alice")
    assert policy.tarpit(refusal, user) == 0


def test_mail_admission_checks_tls_auth_and_domain_security() -> None:
    strict = ReceiveConnectorConfig(
        name="s", require_tls=True, require_auth=True, auth_mechanisms=("PLAIN",),
        permission_groups=("users",),
    )  # fmt: skip
    info = SessionInfo("s3", ANONYMOUS.peer, strict)
    sender = Address("a", "remote.test")
    assert mail_admission(info, sender, tls_active=False) == TLS_REQUIRED
    assert mail_admission(info, sender, tls_active=True) == AUTH_REQUIRED
    partner = ReceiveConnectorConfig(
        name="p", domain_secure_partners=("partner.test",), client_ca=Path("ca.pem"),
        permission_groups=("anonymous", "partners"),
    )  # fmt: skip
    info = SessionInfo("s4", ANONYMOUS.peer, partner)
    shown = SessionInfo("s5", ANONYMOUS.peer, partner, peer_names=("partner.test",))
    from_partner = Address("a", "partner.test")
    assert mail_admission(info, from_partner, tls_active=False) == Reply(
        530, "5.7.0", "Domain security requires STARTTLS for partner.test"
    )
    assert mail_admission(info, from_partner, tls_active=True) == Reply(
        454, "4.7.0", "No valid TLS certificate for partner domain partner.test"
    )
    assert mail_admission(shown, from_partner, tls_active=True) is None
    assert mail_admission(info, sender, tls_active=False) is None
