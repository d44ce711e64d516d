"""``edgeward antispam ip`` and ``antispam test-ip``: the connection filter's lists, from a shell.

* ``ip allow|block add NETWORK [--expires 24h] [--comment TEXT]``, ``ip allow|block remove
  NETWORK``, ``ip allow|block list``: change or show the IP lists in the policy store
  (``DATA_DIR/state/policy.db``). The running gateway reads them there, so a change applies to
  the next connection without a restart (allow list removals within ``list_refresh``).
  Run as root, a policy store this creates is handed to the gateway's user
  (``state.sqlite`` does it, as for every database below the data folder).
* ``test-ip IP``: what each list and every configured DNS list provider says about an address,
  asked with the configuration's ``[dns]`` resolvers, and what the gateway would do at RCPT.

All take ``-c CONFIG`` and ``--json``. Exit codes: 0 done, 1 the policy store failed or the
entry to remove was not there, 2 bad input.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from edgeward.cli.queue import clean, fail, load
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.config.schema import Config, parse_duration
from edgeward.errors import ConfigError
from edgeward.filters.agents.connection import LISTS, IpLists, parse_network
from edgeward.filters.agents.dnsbl import ask_all
from edgeward.net.dns import DnsResolver
from edgeward.ports import ListEntry, PolicyStore, PolicyStoreError
from edgeward.state.stores import policy_store_for

T = TypeVar("T")

ip_app = typer.Typer(
    name="ip",
    help="The IP allow and block lists of the connection filter.",
    no_args_is_help=True,
    add_completion=False,
)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Configuration file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
NetworkArg = Annotated[str, typer.Argument(help="Address or CIDR network, IPv4 or IPv6.")]


def _network(value: str) -> str:
    try:
        return str(parse_network(value))
    except ValueError:
        fail(f"{clean(value)!r} is not an IPv4 or IPv6 address or network")


def _with_store(config: Config, fn: Callable[[PolicyStore], Awaitable[T]]) -> T:
    async def run() -> T:
        async with policy_store_for(config) as store:
            return await fn(store)

    try:
        return asyncio.run(run())
    except (PolicyStoreError, ConfigError) as exc:
        fail(str(exc), code=1)


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _entry(entry: ListEntry) -> dict[str, object]:
    return {
        "network": entry.member,
        "comment": entry.comment,
        "added": _when(entry.added_at),
        "expires": None if entry.expires_at is None else _when(entry.expires_at),
    }


def _list_commands(which: str) -> typer.Typer:
    name = LISTS[which]
    app = typer.Typer(name=which, help=f"The IP {which} list.", no_args_is_help=True, add_completion=False)

    @app.command("add")
    def add(
        network: NetworkArg,
        expires: Annotated[
            str | None, typer.Option("--expires", help="Remove the entry after this long: 90m, 24h, 7d.")
        ] = None,
        comment: Annotated[str, typer.Option("--comment", help="Why the entry is there.")] = "",
        config: ConfigOpt = DEFAULT_CONFIG_PATH,
        as_json: JsonOpt = False,
    ) -> None:
        """Add a network (or replace its comment and expiry)."""
        net = _network(network)
        ttl: float | None = None
        if expires is not None:
            try:
                ttl = parse_duration(expires)
            except ValueError as exc:
                fail(f"--expires: {exc}")
            if ttl <= 0:
                fail("--expires: must be longer than 0")
        if len(comment) > 240 or any(ord(c) < 32 for c in comment):
            fail("--comment: at most 240 printable characters")
        cfg = load(config)

        async def run(store: PolicyStore) -> ListEntry | None:
            await store.list_add(name, net, comment=comment, ttl=ttl)
            return await store.list_get(name, net)

        entry = _with_store(cfg, run)
        if as_json:
            typer.echo(
                json.dumps({"list": which, **(_entry(entry) if entry else {"network": net})}, indent=2)
            )
        else:
            typer.echo(
                f"{which}: added {net}"
                + (f" until {_when(entry.expires_at)}" if entry and entry.expires_at else "")
            )

    @app.command("remove")
    def remove(
        network: NetworkArg, config: ConfigOpt = DEFAULT_CONFIG_PATH, as_json: JsonOpt = False
    ) -> None:
        """Remove a network (as it was added: the same CIDR)."""
        net = _network(network)
        cfg = load(config)

        async def run(store: PolicyStore) -> bool:
            return await store.list_remove(name, net)

        removed = _with_store(cfg, run)
        if as_json:
            typer.echo(json.dumps({"list": which, "network": net, "removed": removed}, indent=2))
        else:
            typer.echo(f"{which}: removed {net}" if removed else f"{which}: {net} is not on the list")
        if not removed:
            raise typer.Exit(1)

    @app.command("list")
    def show(config: ConfigOpt = DEFAULT_CONFIG_PATH, as_json: JsonOpt = False) -> None:
        """The live entries, expired ones left out."""
        cfg = load(config)

        async def run(store: PolicyStore) -> list[ListEntry]:
            return await store.list_members(name)

        entries = _with_store(cfg, run)
        if as_json:
            typer.echo(json.dumps([_entry(e) for e in entries], indent=2))
            return
        if not entries:
            typer.echo(f"the IP {which} list is empty")
        for e in entries:
            expiry = f" expires {_when(e.expires_at)}" if e.expires_at is not None else ""
            note = f"  # {clean(e.comment)}" if e.comment else ""
            typer.echo(f"{e.member:<43} added {_when(e.added_at)}{expiry}{note}")

    return app


ip_app.add_typer(_list_commands("allow"), name="allow")
ip_app.add_typer(_list_commands("block"), name="block")


def test_ip(
    ip: Annotated[str, typer.Argument(help="The client address to test.")],
    config: ConfigOpt = DEFAULT_CONFIG_PATH,
    as_json: JsonOpt = False,
) -> None:
    """What the IP lists and every DNS list provider say about an address."""
    try:
        address = ipaddress.ip_address(ip.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        fail(f"{clean(ip)!r} is not an IPv4 or IPv6 address")
    text = str(address)
    cfg = load(config)
    cf = cfg.connection_filter

    async def run(store: PolicyStore) -> dict[str, object]:
        lists = IpLists(store)
        allow, block = await lists.lookup("allow", text), await lists.lookup("block", text)
        d = cfg.dns
        resolver = DnsResolver(d.servers or None, port=d.port, timeout=min(d.timeout, cf.lookup_timeout))
        providers = (*cf.allow_providers, *cf.block_providers)
        results = await ask_all(resolver, providers, text, cf.lookup_timeout)
        kinds = {p.name: "allow" for p in cf.allow_providers}
        static_allow = any(address in ipaddress.ip_network(n, strict=False) for n in cfg.policy.ip_allow)
        verdict = "not listed: mail goes on to the other agents"
        if allow is not None or static_allow:
            verdict = "allow-listed: the other anti-spam agents are skipped"
        elif block is not None:
            verdict = "blocked: 550 5.7.1 at RCPT (IP block list)"
        elif any(r.listed and kinds.get(r.provider.name) == "allow" for r in results):
            verdict = "DNSWL-listed: not refused, scores DNSWL_LISTED"
        elif listed := [r for r in results if r.listed]:
            verdict = f"blocked: 550 5.7.1 at RCPT ({listed[0].provider.name})"
        return {
            "ip": text,
            "allow_list": _entry(allow) if allow else ("[policy] ip_allow" if static_allow else None),
            "block_list": _entry(block) if block else None,
            "providers": [{"kind": kinds.get(r.provider.name, "block"), **r.as_dict()} for r in results],
            "verdict": verdict,
        }

    report = _with_store(cfg, run)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"{text}: {report['verdict']}")
    for which in ("allow_list", "block_list"):
        entry = report[which]
        label = which.replace("_", " ")
        if entry is None:
            typer.echo(f"  IP {label}: not listed")
        elif isinstance(entry, dict):
            note = f" ({clean(str(entry['comment']))})" if entry["comment"] else ""
            typer.echo(f"  IP {label}: {entry['network']}{note}, expires {entry['expires'] or 'never'}")
        else:
            typer.echo(f"  IP {label}: {entry}")
    providers = report["providers"]
    assert isinstance(providers, list)
    if not providers:
        typer.echo("  no DNS list providers configured")
    for p in providers:
        detail = f": {clean(str(p['detail']))}" if p["detail"] else ""
        typer.echo(f"  {p['kind']} provider {p['provider']} ({p['zone']}): {p['status']}{detail}")
