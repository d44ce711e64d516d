"""The sender-login agent: an authenticated client sends only as its own addresses."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.filters.agents.sender_login import SenderLogin
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.pipeline import Pipeline
from edgeward.types import Action, Address, Peer

OWNED = {"alice": frozenset({"a.smith@ours.test", "@sales.ours.test"})}


async def owned(login: str) -> frozenset[str]:
    return OWNED.get(login, frozenset())


def mail(sender: Address, login: str = "alice", **connector: object) -> StageContext:
    config = ReceiveConnectorConfig(name="submission", **connector)  # type: ignore[arg-type]
    session = SessionInfo("s1", Peer("192.0.2.1", 1234), config, authenticated=login,
                          rights=frozenset({"send_as_accepted", "relay"}))  # fmt: skip
    return StageContext(Stage.MAIL, session, mail_from=sender)


@pytest.mark.parametrize(
    "sender",
    [Address("a.smith", "ours.test"), Address("A.Smith", "OURS.TEST"), Address("x", "sales.ours.test")],
)
async def test_own_addresses_pass(sender: Address) -> None:
    assert (await SenderLogin(owned).check(Stage.MAIL, mail(sender))).action is Action.CONTINUE


async def test_someone_elses_address_is_553_5_7_1() -> None:
    out = await SenderLogin(owned).check(Stage.MAIL, mail(Address("ceo", "ours.test")))
    assert out.action is Action.REJECT and out.reply is not None
    assert (out.reply.code, out.reply.enhanced) == (553, "5.7.1")
    assert "not owned by user alice" in out.reply.text
    assert [f.name for f in out.findings] == ["SENDER_LOGIN_MISMATCH"]


async def test_a_login_that_is_an_address_may_use_it_without_configuration() -> None:
    ctx = mail(Address("bob", "ours.test"), login="bob@ours.test")
    assert (await SenderLogin(owned).check(Stage.MAIL, ctx)).action is Action.CONTINUE


async def test_null_sender_is_refused_unless_the_connector_allows_it() -> None:
    out = await SenderLogin(owned).check(Stage.MAIL, mail(Address.null()))
    assert out.reply is not None and (out.reply.code, out.reply.enhanced) == (553, "5.7.1")
    assert [f.name for f in out.findings] == ["SENDER_LOGIN_NULL"]
    allowed = mail(Address.null(), auth_null_sender=True)
    assert (await SenderLogin(owned).check(Stage.MAIL, allowed)).action is Action.CONTINUE


async def test_the_connector_can_relax_it_and_anonymous_sessions_are_not_checked() -> None:
    relaxed = mail(Address("ceo", "ours.test"), sender_login_match=False)
    assert (await SenderLogin(owned).check(Stage.MAIL, relaxed)).action is Action.CONTINUE
    anonymous = mail(Address("ceo", "ours.test"))
    anonymous = replace(anonymous, session=replace(anonymous.session, authenticated=""))
    assert (await SenderLogin(owned).check(Stage.MAIL, anonymous)).action is Action.CONTINUE


async def test_a_store_failure_is_a_temporary_failure_not_a_pass() -> None:
    async def broken(_login: str) -> frozenset[str]:
        raise OSError("database is locked")

    verdict = await Pipeline([SenderLogin(broken)]).run(Stage.MAIL, mail(Address("ceo", "ours.test")))
    assert verdict.action is Action.TEMPFAIL
    assert verdict.outcome.reply is not None and verdict.outcome.reply.code == 451
