"""``edgeward antispam sender|recipient block`` and ``safelist|blocklist``: entries checked before
they are stored, stored in the policy store file the gateway reads, listed as text and JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.filters.agents.safe_senders import SAFE_LIST
from edgeward.filters.agents.sender_filter import SENDER_BLOCK_LIST
from edgeward.ports import ListEntry
from edgeward.state.policy import SqlitePolicyStore, default_policy_path

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text(f"accepted_domains = ['example.test']\n[server]\ndata_dir = '{tmp_path}'\n")
    return path


def _run(config: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["antispam", *args, "-c", str(config)])
    return result.exit_code, result.output


def _stored(config: Path, name: str) -> list[ListEntry]:
    async def read() -> list[ListEntry]:
        async with SqlitePolicyStore(default_policy_path(config.parent)) as store:
            return await store.list_members(name)

    return asyncio.run(read())


def test_sender_block_add_list_remove(config: Path) -> None:
    assert (
        _run(config, "sender", "block", "add", "*.Spam.TEST.", "--comment", "campaign", "--expires", "7d")[0]
        == 0
    )
    assert _run(config, "sender", "block", "add", "bad@remote.test")[0] == 0
    [one, two] = _stored(config, SENDER_BLOCK_LIST)
    assert (one.member, one.comment) == ("*.spam.test", "campaign")
    assert one.expires_at is not None and one.expires_at - one.added_at == 7 * 86400
    assert (two.member, two.expires_at) == ("bad@remote.test", None)
    code, text = _run(config, "sender", "block", "list")
    assert code == 0 and text.splitlines() == ["*.spam.test\t# campaign", "bad@remote.test"]
    code, text = _run(config, "sender", "block", "list", "--json")
    assert [e["member"] for e in json.loads(text)] == ["*.spam.test", "bad@remote.test"]
    assert _run(config, "sender", "block", "remove", "bad@remote.test")[0] == 0
    code, text = _run(config, "sender", "block", "remove", "bad@remote.test")
    assert code == 1 and "is not on sender-block" in text


@pytest.mark.parametrize(
    "args",
    [
        ("sender", "block", "add", "nodomain"),
        ("sender", "block", "add", "x@y.test", "--expires", "soon"),
        ("recipient", "block", "add", "@example.test"),
        ("safelist", "add", "user@example.test", "nodomain"),
        ("blocklist", "add", "nobody", "a@b.test"),
    ],
)
def test_bad_entries_are_refused_with_exit_2_and_nothing_stored(config: Path, args: tuple[str, ...]) -> None:
    code, text = _run(config, *args)
    assert code == 2 and text.strip()
    assert not default_policy_path(config.parent).exists()


def test_safelist_per_recipient(config: Path) -> None:
    assert _run(config, "safelist", "add", "User@example.test", "@Partner.test")[0] == 0
    assert _run(config, "safelist", "add", "ops@example.test", "friend@remote.test")[0] == 0
    assert [e.member for e in _stored(config, SAFE_LIST)] == [
        "ops@example.test friend@remote.test",
        "user@example.test @partner.test",
    ]
    code, text = _run(config, "safelist", "list", "user@example.test")
    assert code == 0 and text.splitlines() == ["user@example.test\t@partner.test"]
    assert len(_run(config, "safelist", "list")[1].splitlines()) == 2
    assert _run(config, "safelist", "remove", "user@example.test", "@partner.test")[0] == 0
    assert _run(config, "safelist", "list", "user@example.test")[1] == ""


def test_recipient_block_and_blocklist(config: Path) -> None:
    assert _run(config, "recipient", "block", "add", "Old@example.test")[0] == 0
    assert _run(config, "recipient", "block", "list")[1].splitlines() == ["old@example.test"]
    assert _run(config, "blocklist", "add", "user@example.test", "@pest.test")[0] == 0
    doc = json.loads(_run(config, "blocklist", "list", "--json")[1])
    assert [e["member"] for e in doc] == ["user@example.test @pest.test"]


def test_an_unreadable_store_is_exit_1(config: Path) -> None:
    state = config.parent / "state"
    state.mkdir()
    (state / "policy.db").write_bytes(b"this is not a database" * 100)
    code, text = _run(config, "sender", "block", "list")
    assert code == 1 and "policy store" in text
