"""``edgeward antispam sender|recipient block`` and ``safelist|blocklist``: the live lists of the
sender and recipient filters and the per-recipient safe and blocked senders.

Each command opens the gateway's policy store (``DATA_DIR/state/policy.db``) itself, so a change
reaches the running gateway at its next lookup, without a restart. Entries are checked before
they are stored (a typo would never match); the decisions live in the agents
(``filters.agents.sender_filter``, ``recipient_filter``, ``safe_senders``).

* ``sender block add|remove|list [SENDER]``: ``user@domain``, ``@domain`` (that domain only)
  or ``*.domain`` (the domain and its subdomains); ``add`` takes ``--comment`` and
  ``--expires 7d``.
* ``recipient block add|remove|list [RECIPIENT]``.
* ``safelist add|remove|list RECIPIENT [SENDER|@domain]``: senders the recipient trusts
  (anti-spam skipped for that recipient); ``blocklist`` the same for senders it refuses.

Exit codes: 0 done, 1 nothing to remove or the store failed, 2 bad input.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from edgeward.cli.queue import clean, fail, load
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.config.schema import parse_duration
from edgeward.errors import ConfigError
from edgeward.filters.agents.recipient_filter import RECIPIENT_BLOCK_LIST
from edgeward.filters.agents.safe_senders import BLOCKED_LIST, SAFE_LIST, pair
from edgeward.filters.agents.sender_filter import SENDER_BLOCK_LIST, sender_entry
from edgeward.ports import ListEntry, PolicyStore, PolicyStoreError
from edgeward.state.stores import policy_store_for

T = TypeVar("T")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Configuration file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
CommentOpt = Annotated[str, typer.Option("--comment", help="Why the entry is there.")]
ExpiresOpt = Annotated[
    str | None, typer.Option("--expires", help="Remove the entry after this long (e.g. 90m, 7d).")
]
# Module level: with postponed annotations typer resolves these names in the module's globals.
Entry = Annotated[
    str, typer.Argument(help="A sender: user@domain, @domain or *.domain; a recipient: user@domain.")
]
Rcpt = Annotated[str, typer.Argument(help="The recipient, user@domain.")]
Sender = Annotated[str, typer.Argument(help="The sender, user@domain or @domain.")]
OneRcpt = Annotated[str | None, typer.Argument(help="Only this recipient's entries.")]


def _run(config: Path, work: Callable[[PolicyStore], Awaitable[T]]) -> T:
    cfg = load(config)

    async def main() -> T:
        async with policy_store_for(cfg) as store:
            return await work(store)

    try:
        return asyncio.run(main())
    except (PolicyStoreError, ConfigError) as exc:
        fail(str(exc), code=1)


def _ttl(expires: str | None) -> float | None:
    if expires is None:
        return None
    try:
        seconds = parse_duration(expires)
    except ValueError as exc:
        fail(f"--expires: {exc}")
    if seconds <= 0:
        fail("--expires: give a positive duration")
    return seconds


def _checked(fn: Callable[[], str]) -> str:
    try:
        return fn()
    except ValueError as exc:
        fail(clean(str(exc)))


def _entry_dict(entry: ListEntry) -> dict[str, object]:
    return {
        "member": entry.member,
        "comment": entry.comment,
        "added_at": entry.added_at,
        "expires_at": entry.expires_at,
    }


def _print(entries: list[ListEntry], as_json: bool, split: bool = False) -> None:
    if as_json:
        typer.echo(json.dumps([_entry_dict(e) for e in entries], indent=2))
        return
    for e in entries:
        member = "\t".join(e.member.split(" ", 1)) if split else e.member
        extra = f"\t# {e.comment}" if e.comment else ""
        typer.echo(clean(member + extra))


def _add(config: Path, name: str, member: str, comment: str, expires: str | None) -> None:
    ttl = _ttl(expires)
    _run(config, lambda s: s.list_add(name, member, comment=comment, ttl=ttl))
    typer.echo(clean(f"added {member} to {name}"))


def _remove(config: Path, name: str, member: str) -> None:
    if not _run(config, lambda s: s.list_remove(name, member)):
        fail(clean(f"{member} is not on {name}"), code=1)
    typer.echo(clean(f"removed {member} from {name}"))


def _block_group(name: str, noun: str, parse: Callable[[str], str]) -> typer.Typer:
    group = typer.Typer(help=f"The {noun} block list.", no_args_is_help=True, add_completion=False)

    @group.command("add")
    def add(
        entry: Entry,
        comment: CommentOpt = "",
        expires: ExpiresOpt = None,
        config: ConfigOpt = DEFAULT_CONFIG_PATH,
    ) -> None:
        """Block an entry (live: no restart)."""
        _add(config, name, _checked(lambda: parse(entry)), comment, expires)

    @group.command("remove")
    def remove(entry: Entry, config: ConfigOpt = DEFAULT_CONFIG_PATH) -> None:
        """Unblock an entry."""
        _remove(config, name, _checked(lambda: parse(entry)))

    @group.command("list")
    def list_(config: ConfigOpt = DEFAULT_CONFIG_PATH, as_json: JsonOpt = False) -> None:
        """Print the live entries."""
        _print(_run(config, lambda s: s.list_members(name)), as_json)

    return group


def _recipient(text: str) -> str:
    # A recipient is checked as a pair with a dummy domain sender, then the recipient kept.
    return pair(text, "@check.invalid").split(" ", 1)[0]


def _pair_group(name: str, help_text: str) -> typer.Typer:
    group = typer.Typer(help=help_text, no_args_is_help=True, add_completion=False)

    @group.command("add")
    def add(
        recipient: Rcpt,
        sender: Sender,
        comment: CommentOpt = "",
        expires: ExpiresOpt = None,
        config: ConfigOpt = DEFAULT_CONFIG_PATH,
    ) -> None:
        """Add a sender to a recipient's list (live: no restart)."""
        _add(config, name, _checked(lambda: pair(recipient, sender)), comment, expires)

    @group.command("remove")
    def remove(recipient: Rcpt, sender: Sender, config: ConfigOpt = DEFAULT_CONFIG_PATH) -> None:
        """Remove a sender from a recipient's list."""
        _remove(config, name, _checked(lambda: pair(recipient, sender)))

    @group.command("list")
    def list_(
        recipient: OneRcpt = None,
        config: ConfigOpt = DEFAULT_CONFIG_PATH,
        as_json: JsonOpt = False,
    ) -> None:
        """Print the live entries (recipient, sender), of one recipient or of all."""
        prefix = _checked(lambda: _recipient(recipient)) + " " if recipient is not None else ""
        entries = _run(config, lambda s: s.list_members(name))
        _print([e for e in entries if e.member.startswith(prefix)], as_json, split=True)

    return group


sender_app = typer.Typer(help="Sender filtering: block.", no_args_is_help=True, add_completion=False)
sender_app.add_typer(_block_group(SENDER_BLOCK_LIST, "sender", sender_entry), name="block")
recipient_app = typer.Typer(help="Recipient filtering: block.", no_args_is_help=True, add_completion=False)
recipient_app.add_typer(_block_group(RECIPIENT_BLOCK_LIST, "recipient", _recipient), name="block")


def register(app: typer.Typer) -> None:
    """Add the list commands to ``edgeward antispam``."""
    app.add_typer(sender_app, name="sender")
    app.add_typer(recipient_app, name="recipient")
    app.add_typer(_pair_group(SAFE_LIST, "Per-recipient safe senders."), name="safelist")
    app.add_typer(_pair_group(BLOCKED_LIST, "Per-recipient blocked senders (550 5.7.1)."), name="blocklist")
