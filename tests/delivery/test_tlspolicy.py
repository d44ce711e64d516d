from __future__ import annotations

import pytest

from edgeward.delivery.tlspolicy import combine, connector_level


@pytest.mark.parametrize(
    ("setting", "level"),
    [
        ("none", "none"),
        ("opportunistic", "opportunistic"),
        ("required", "encrypt"),
        ("verify", "verify"),
        ("verify_hostname", "verify_hostname"),
    ],
)
def test_the_connector_setting_alone(setting: str, level: str) -> None:
    policy = combine(setting)
    assert (policy.level, policy.source, policy.requiretls) == (level, "connector", False)
    assert connector_level(setting) == level
    assert policy.mandatory == (level not in ("none", "opportunistic"))


def test_mta_sts_enforce_raises_opportunistic_to_a_verified_name() -> None:
    policy = combine("opportunistic", sts_mode="enforce")
    assert (policy.level, policy.source, policy.mandatory) == ("verify_hostname", "mta-sts", True)


def test_mta_sts_testing_and_none_change_nothing() -> None:
    assert combine("opportunistic", sts_mode="testing").level == "opportunistic"
    assert combine("required", sts_mode="none").level == "encrypt"


def test_dane_takes_precedence_over_mta_sts_and_the_connector_ca() -> None:
    policy = combine("verify_hostname", sts_mode="enforce", dane_state="authenticate")
    assert (policy.level, policy.source) == ("dane", "dane")


def test_dane_without_usable_records_still_makes_tls_mandatory() -> None:
    policy = combine("opportunistic", dane_state="encrypt")
    assert (policy.level, policy.source, policy.mandatory) == ("encrypt", "dane", True)
    # ... and MTA-STS still asks for a verified name on top of it.
    assert combine("opportunistic", dane_state="encrypt", sts_mode="enforce").level == "verify_hostname"


def test_dane_none_leaves_the_other_policies() -> None:
    assert combine("opportunistic", dane_state="none").level == "opportunistic"
    assert combine("opportunistic", dane_state="none", sts_mode="enforce").level == "verify_hostname"


def test_requiretls_needs_an_authenticated_name_and_is_carried_on() -> None:
    for setting in ("none", "opportunistic", "required", "verify"):
        policy = combine(setting, requiretls=True)
        assert (policy.level, policy.source, policy.requiretls) == ("verify_hostname", "requiretls", True)
    assert combine("opportunistic", requiretls=True, dane_state="authenticate").level == "dane"


def test_tls_required_no_exempts_from_recipient_policies_only() -> None:
    relaxed = combine("opportunistic", tls_optional=True, sts_mode="enforce", dane_state="authenticate")
    assert relaxed.level == "opportunistic"
    # The administrator's own floor stays.
    assert combine("verify", tls_optional=True, sts_mode="enforce").level == "verify"
    # REQUIRETLS wins over the header (RFC 8689 §5).
    assert combine("opportunistic", requiretls=True, tls_optional=True).level == "verify_hostname"


def test_a_policy_is_never_weaker_than_the_connector() -> None:
    assert combine("verify_hostname", dane_state="encrypt").level == "verify_hostname"
    assert combine("verify_hostname", sts_mode="enforce").source == "connector"
