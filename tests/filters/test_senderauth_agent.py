"""The sender-auth agent at EOD with the DNS fake, on its own and through the policy layer:
DMARC reads the SPF result found at MAIL, its actions, the ARC override, Authentication-Results."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dkim
import pytest
from pydantic import ValidationError

from edgeward.config.schema import ArcConfig, ReceiveConnectorConfig
from edgeward.content.analyze import analyze
from edgeward.filters.agents.senderauth import SenderAuth, auth_results
from edgeward.filters.agents.spf import SpfAgent
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.message import MessageView
from edgeward.filters.pipeline import Pipeline
from edgeward.filters.policy import Policy
from edgeward.filters.scoring import Thresholds
from edgeward.filters.transforms import Accepted, Transforms
from edgeward.filters.transforms.arcseal import ArcSeal
from edgeward.filters.transforms.stamps import Stamps
from edgeward.filters.verdict import Ledger, Verdict
from edgeward.headers import parse_headers
from edgeward.senderauth import authresults
from edgeward.senderauth.arc import ArcStatus, verify_arc
from edgeward.senderauth.arcseal import seal
from edgeward.testing.dns import FakeResolver
from edgeward.types import Action, Address, Finding, Outcome, Peer, Reply
from tests.senderauth.dkimkeys import SigningKey, ed25519_key, rsa_key

US = "gw.example.net"
BODY = b"To: reader@example.net\r\nSubject: news\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\nNews.\r\n"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return ed25519_key()


@pytest.fixture(scope="module")
def arc_key() -> SigningKey:
    return rsa_key(2048)


def message(domain: str) -> bytes:
    return f"From: News <news@{domain}>\r\n".encode() + BODY


def signed(data: bytes, key: SigningKey, domain: str) -> bytes:
    return dkim.sign(data, b"s1", domain.encode(), key.private, signature_algorithm=key.algorithm) + data


def resolver(key: SigningKey, arc_key: SigningKey) -> FakeResolver:
    dns = FakeResolver(
        {
            ("s1._domainkey.signed.example", "TXT"): [key.record],
            ("_dmarc.signed.example", "TXT"): ["v=DMARC1; p=reject"],
            ("_dmarc.strict.example", "TXT"): ["v=DMARC1; p=reject"],
            ("_dmarc.quiet.example", "TXT"): ["v=DMARC1; p=quarantine"],
            ("_dmarc.lax.example", "TXT"): ["v=DMARC1; p=none"],
            ("strict.example", "TXT"): ["v=spf1 ip4:192.0.2.0/24 -all"],
            ("arc._domainkey.lists.example.org", "TXT"): [arc_key.record],
        }
    )
    dns.time_out("_dmarc.slow.example")
    return dns


def eod(data: bytes, earlier: tuple[Finding, ...] = (), sender: Address | None = None) -> StageContext:
    info = SessionInfo("s1", Peer("192.0.2.1", 1234), ReceiveConnectorConfig(name="internet"), helo="mx.x")
    headers = parse_headers(data)
    return StageContext(
        Stage.EOD, info, mail_from=sender, recipients=(Address("reader", "example.net"),), data=data,
        headers=headers, message=MessageView(data, headers), earlier=earlier,
    )  # fmt: skip


def names(findings: tuple[Finding, ...]) -> set[str]:
    return {f.name for f in findings}


async def test_aligned_dkim_passes_and_writes_authentication_results(
    key: SigningKey, arc_key: SigningKey
) -> None:
    agent = SenderAuth(resolver(key, arc_key), US)
    outcome = await agent.check(Stage.EOD, eod(signed(message("signed.example"), key, "signed.example")))
    assert outcome.action is Action.CONTINUE
    assert {"DKIM_PASS", "DMARC_PASS", "ARC_NONE"} <= names(outcome.findings)
    [(field, value)] = outcome.headers
    assert field == "Authentication-Results" and authresults.authserv_id(value) == US
    assert "dkim=pass" in value and "header.d=signed.example" in value and "dmarc=pass" in value


async def test_p_reject_failure_is_refused_550_5_7_1_by_default(key: SigningKey, arc_key: SigningKey) -> None:
    outcome = await SenderAuth(resolver(key, arc_key), US).check(Stage.EOD, eod(message("strict.example")))
    assert outcome.action is Action.REJECT
    assert outcome.reply == Reply(550, "5.7.1", "Message rejected by the DMARC policy of strict.example")
    assert "DMARC_FAIL_REJECT" in names(outcome.findings)


@pytest.mark.parametrize(
    ("domain", "setting", "action", "name"),
    [
        ("strict.example", {"reject_action": "quarantine"}, Action.QUARANTINE, "DMARC_FAIL_REJECT"),
        ("strict.example", {"reject_action": "score"}, Action.CONTINUE, "DMARC_FAIL_REJECT"),
        ("quiet.example", {}, Action.QUARANTINE, "DMARC_FAIL_QUARANTINE"),
        ("quiet.example", {"quarantine_action": "score"}, Action.CONTINUE, "DMARC_FAIL_QUARANTINE"),
        ("lax.example", {}, Action.CONTINUE, "DMARC_FAIL"),
        ("slow.example", {}, Action.CONTINUE, "DMARC_TEMPERROR"),
        ("slow.example", {"temperror_action": "tempfail"}, Action.TEMPFAIL, "DMARC_TEMPERROR"),
        ("nothing.example", {}, Action.CONTINUE, "DMARC_NONE"),
    ],
)
async def test_dmarc_actions_are_settable(
    key: SigningKey, arc_key: SigningKey, domain: str, setting: dict[str, str], action: Action, name: str
) -> None:
    agent = SenderAuth(resolver(key, arc_key), US, **setting)  # type: ignore[arg-type]
    outcome = await agent.check(Stage.EOD, eod(message(domain)))
    assert outcome.action is action and name in names(outcome.findings)
    if action is Action.TEMPFAIL:
        assert outcome.reply is not None and (outcome.reply.code, outcome.reply.enhanced) == (451, "4.4.3")


async def test_spf_result_found_at_mail_aligns_through_the_policy_layer(
    key: SigningKey, arc_key: SigningKey
) -> None:
    dns = resolver(key, arc_key)
    policy = Policy(
        Pipeline([SpfAgent(dns, US), SenderAuth(dns, US)]), Thresholds({}, Reply(550, "5.7.1", "no"))
    )
    ledger = Ledger()
    sender = Address("news", "strict.example")
    mail = eod(b"", sender=sender)
    decision = await policy.stage(replace(mail, stage=Stage.MAIL), ledger)
    assert decision.reply is None and "SPF_PASS" in names(decision.findings)
    verdict = await policy.end_of_data(eod(message("strict.example"), sender=sender), ledger)
    assert verdict.action is Action.CONTINUE, verdict.decided_by
    assert {"SPF_PASS", "DMARC_PASS"} <= names(verdict.findings)
    ar = dict(verdict.headers)["Authentication-Results"]
    assert "spf=pass" in ar and "smtp.mailfrom=strict.example" in ar and "dmarc=pass" in ar
    assert "Received-SPF" in dict(verdict.headers)


def forwarded(arc_key: SigningKey) -> bytes:
    """p=reject mail that a list re-sent: its SPF and DKIM no longer align, its ARC seal holds."""
    original = message("strict.example")
    header = authresults.build("lists.example.org", spf=authresults.SpfReport("pass", "news@strict.example"))
    stamped = header.encode() + original
    fields = seal(
        stamped, selector="arc", domain="lists.example.org", private_key=arc_key.private,
        authserv_id="lists.example.org", include_headers=["from", "to", "subject", "date"],
    )  # fmt: skip
    return b"".join(fields) + stamped


async def test_trusted_arc_sealer_overrides_a_dmarc_failure(key: SigningKey, arc_key: SigningKey) -> None:
    data = forwarded(arc_key)
    untrusted = await SenderAuth(resolver(key, arc_key), US).check(Stage.EOD, eod(data))
    assert untrusted.action is Action.REJECT and "ARC_PASS" in names(untrusted.findings)
    agent = SenderAuth(resolver(key, arc_key), US, trusted_sealers=["lists.example.org"])
    trusted = await agent.check(Stage.EOD, eod(data))
    assert trusted.action is Action.CONTINUE
    assert {"ARC_PASS", "ARC_OVERRIDE", "DMARC_FAIL"} <= names(trusted.findings)
    assert "DMARC_FAIL_REJECT" not in names(trusted.findings)


FORGED = (
    b"Authentication-Results: GW.example.net; spf=pass smtp.mailfrom=bank.example;\r\n dmarc=pass\r\n"
    b"Authentication-Results: other.example; dkim=pass\r\n"
)


def session(*rights: str) -> SessionInfo:
    return SessionInfo("s1", Peer("192.0.2.1", 1), ReceiveConnectorConfig(name="x"), rights=frozenset(rights))


def test_forged_results_under_our_name_are_removed_on_arrival() -> None:
    transforms = Transforms(authserv_id=US)
    cleaned = transforms.inbound(FORGED + message("bank.example"), session())
    assert b"GW.example.net" not in cleaned and b"smtp.mailfrom=bank.example" not in cleaned
    assert cleaned.startswith(b"Authentication-Results: other.example; dkim=pass\r\n")
    kept = transforms.inbound(FORGED + message("bank.example"), session("keep_internal_headers"))
    assert kept.startswith(FORGED)


def test_our_folded_results_are_stamped_on_acceptance() -> None:
    value = "gw.example.net;\r\n\tspf=pass smtp.mailfrom=x.example;\r\n\tdmarc=pass\r\n header.from=evil"
    verdict = Verdict(Action.CONTINUE, None, (), (("Authentication-Results", value),), 0.0, "no threshold")
    accepted = Accepted("id1", session(), "gw.example.net", (Address("a", "b.example"),), verdict)
    out = Transforms().accepted(b"Subject: x\r\n\r\nbody\r\n", accepted)
    head = out.split(b"\r\n\r\n", 1)[0]
    assert (
        b"Authentication-Results: gw.example.net;\r\n\tspf=pass smtp.mailfrom=x.example;\r\n\tdmarc=pass"
        in head
    )
    # A bare CRLF inside a value can never start a field of its own.
    assert b"\r\n header.from" not in head and b"?? header.from=evil" in head


CLAIMS = b"Authentication-Results: mx.google.com; spf=fail; dkim=fail; dmarc=fail\r\n" + message(
    "bank.example"
)


def test_the_classifier_reads_our_results_never_the_clients() -> None:
    # A client (or a corpus' earlier hops) can write any verdict into the field: it is never read ...
    assert analyze(CLAIMS).facts.auth == {}
    assert analyze(CLAIMS, auth={}).facts.auth == {}
    # ... only what our agents found counts.
    assert analyze(CLAIMS, auth={"spf": "pass"}).facts.auth == {"spf": "pass"}
    assert analyze(CLAIMS, auth={"spf": "pass"}).facts.auth == {"spf": "pass"}


async def test_later_agents_of_a_stage_see_earlier_findings(key: SigningKey, arc_key: SigningKey) -> None:
    seen: list[dict[str, str]] = []

    class Reader:
        name = "reader"
        stages = frozenset({Stage.EOD})
        antispam = True
        fail_open = False

        async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
            seen.append(auth_results(ctx.earlier))
            return Outcome.proceed()

    spf = Finding("SPF_FAIL", "spf", "mailfrom=strict.example fail not permitted")
    pipeline = Pipeline([SenderAuth(resolver(key, arc_key), US, reject_action="score"), Reader()])
    await pipeline.run(Stage.EOD, eod(CLAIMS.replace(b"bank.example", b"strict.example"), (spf,)))
    assert seen == [{"spf": "fail", "dkim": "none", "dmarc": "fail"}]


async def test_relaying_and_authenticated_clients_are_not_judged(
    key: SigningKey, arc_key: SigningKey
) -> None:
    dns = resolver(key, arc_key)
    agent = SenderAuth(dns, US)
    for info in (
        replace(eod(b"").session, rights=frozenset({"submit", "relay"})),
        replace(eod(b"").session, authenticated="alice"),
    ):
        ctx = replace(eod(message("strict.example")), session=info)
        outcome = await agent.check(Stage.EOD, ctx)
        assert outcome.action is Action.CONTINUE and outcome.findings == () and outcome.headers == ()
        spf = await SpfAgent(dns, US).check(
            Stage.MAIL, replace(ctx, stage=Stage.MAIL, mail_from=Address("a", "strict.example"))
        )
        assert spf.findings == ()
    assert dns.queries == []


async def test_accepted_mail_is_arc_sealed_over_our_results(key: SigningKey, arc_key: SigningKey) -> None:
    dns = resolver(key, arc_key)
    dns.add("edge._domainkey.example.net", "TXT", arc_key.record)
    data = signed(message("signed.example"), key, "signed.example")
    outcome = await SenderAuth(dns, US).check(Stage.EOD, eod(data))
    verdict = Verdict(Action.CONTINUE, None, outcome.findings, outcome.headers, 0.0, "no threshold")
    accepted = Accepted("id1", session(), US, (Address("reader", "example.net"),), verdict)
    chain = Transforms([Stamps(), ArcSeal("example.net", "edge", arc_key.private, US)])
    out = chain.accepted(data, accepted)
    assert out.startswith(b"ARC-Seal: ") and b" i=1;" in out.split(b"\r\nARC-Message-Signature", 1)[0]
    result = await verify_arc(out, dns)
    assert result.status is ArcStatus.PASS and result.sets[0].sealer == "example.net"
    assert "dkim=pass" in result.sets[0].results and result.sets[0].results.startswith(f"i=1; {US}")
    # Without our Authentication-Results (an exempt message) nothing is sealed.
    bare = Verdict(Action.CONTINUE, None, (), (), 0.0, "exempt: ip allow list", exempt="ip allow list")
    assert not chain.accepted(data, replace(accepted, verdict=bare)).startswith(b"ARC-Seal")


def test_the_seal_settings_come_together() -> None:
    with pytest.raises(ValidationError, match="set together"):
        ArcConfig(seal_domain="example.net")
    assert ArcConfig(seal_domain="example.net", seal_selector="edge", seal_key=Path("arc.pem")).seal_key
