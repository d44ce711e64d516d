"""``edgeward antispam reputation`` and ``edgeward antispam greylist``: what the gateway learned.

Both read and change the policy store the running gateway shares (``DATA_DIR/state/policy.db``),
so a change takes effect at the next connection, without a restart:

* ``reputation show IP``: the address's counters, its SRL (or why it has none yet) and any block;
* ``reputation list``: every rated address and every block;
* ``reputation unblock IP``: lift a block before it expires;
* ``greylist list``: triplets (deferred or passed) and auto-allowed networks;
* ``greylist clear [--network NET]``: forget triplets and passes, all or one network's.

Exit codes: 0 done, 1 the store cannot be read, 2 bad input.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from edgeward.cli.queue import clean, console, duration, fail, load
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.errors import ConfigError
from edgeward.filters.agents.greylist import network
from edgeward.filters.agents.reputation import rating
from edgeward.ports import PolicyStore, PolicyStoreError, StoredValue, SystemClock
from edgeward.state.policy import default_policy_path
from edgeward.state.stores import policy_store_for

reputation_app = typer.Typer(
    name="reputation", help="Sender reputation: show, list, unblock.", no_args_is_help=True
)
greylist_app = typer.Typer(name="greylist", help="Greylisting: list, clear.", no_args_is_help=True)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Configuration file.")]
T = TypeVar("T")


def _with_store(config_path: Path, action: Callable[[PolicyStore], Awaitable[T]]) -> T:
    config = load(config_path)
    path = default_policy_path(config.server.data_dir)
    if config.policy_store.backend == "sqlite" and not path.exists():
        fail(f"no policy store at {path}: the gateway has not kept any state yet", code=1)

    async def run() -> T:
        async with policy_store_for(config) as store:
            return await action(store)

    try:
        return asyncio.run(run())
    except (PolicyStoreError, ConfigError) as exc:
        fail(str(exc), code=1)


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip().removeprefix("[").removesuffix("]")))
    except ValueError:
        fail(f"{clean(value)!r} is not an IPv4 or IPv6 address")


def _left(item: StoredValue) -> str:
    return "never" if item.expires_at is None else duration(item.expires_at - SystemClock().now())


@reputation_app.command("show")
def show(
    ip: Annotated[str, typer.Argument(help="Client address.")], config: ConfigOpt = DEFAULT_CONFIG_PATH
) -> None:
    """The counters, SRL and block of one client address."""
    address = _address(ip)
    min_messages = load(config).agents.reputation.min_messages

    async def read(store: PolicyStore) -> tuple[dict[str, int], StoredValue | None]:
        counts = {i.key.rsplit(":", 1)[1]: int(i.value) for i in await store.scan(f"rep:{address}:")}
        block = next(iter(await store.scan(f"rep:block:{address}")), None)
        return counts, block

    counts, block = _with_store(config, read)
    out = console()
    n = counts.get("n", 0)
    out.print(f"address   {address}")
    out.print(f"messages  {n}")
    for key, label in (("scl", "SCL sum"), ("helo", "HELO findings"), ("rdns", "rDNS findings"),
                       ("proto", "protocol findings"), ("proxy", "open proxy")):  # fmt: skip
        out.print(f"{label:<9} {counts.get(key, 0)}")
    if n >= min_messages:
        srl = rating(
            n, counts.get("scl", 0), counts.get("helo", 0), counts.get("rdns", 0), counts.get("proto", 0)
        )
        out.print(f"SRL       {srl}")
    else:
        out.print(f"SRL       none (rated from {min_messages} messages)")
    out.print(f"blocked   {clean(block.value)}, {_left(block)} left" if block else "blocked   no")


@reputation_app.command("list")
def list_(config: ConfigOpt = DEFAULT_CONFIG_PATH) -> None:
    """Every rated address with its SRL, and every block."""

    async def read(store: PolicyStore) -> tuple[list[StoredValue], list[StoredValue]]:
        return await store.scan("rep:srl:"), await store.scan("rep:block:")

    rated, blocks = _with_store(config, read)
    blocked = {b.key.removeprefix("rep:block:"): b for b in blocks}
    out = console()
    if not rated and not blocks:
        out.print("no rated addresses")
    for item in rated:
        ip = item.key.removeprefix("rep:srl:")
        block = blocked.get(ip)
        out.print(f"{ip:<40} SRL {item.value}" + (f"  blocked, {_left(block)} left" if block else ""))
    for ip, block in blocked.items():
        if not any(r.key == f"rep:srl:{ip}" for r in rated):
            out.print(f"{ip:<40} blocked, {_left(block)} left")


@reputation_app.command("unblock")
def unblock(
    ip: Annotated[str, typer.Argument(help="Client address.")], config: ConfigOpt = DEFAULT_CONFIG_PATH
) -> None:
    """Lift a reputation block now; the history stays, so a bad sender is blocked again."""
    address = _address(ip)
    removed = _with_store(config, lambda store: store.delete(f"rep:block:{address}"))
    console().print(f"{address}: unblocked" if removed else f"{address}: was not blocked")


@greylist_app.command("list")
def greylist_list(config: ConfigOpt = DEFAULT_CONFIG_PATH) -> None:
    """Triplets (deferred or passed) and auto-allowed networks."""

    async def read(store: PolicyStore) -> tuple[list[StoredValue], list[StoredValue]]:
        return await store.scan("grey:t:"), await store.scan("grey:auto:")

    triplets, auto = _with_store(config, read)
    out = console()
    if not triplets and not auto:
        out.print("no greylisting entries")
    for item in triplets:
        state = "passed" if json.loads(item.value).get("passed") else "deferred"
        out.print(f"{state:<8} {clean(item.key.removeprefix('grey:t:'))}  ({_left(item)} left)")
    for item in auto:
        out.print(
            f"allowed  {item.key.removeprefix('grey:auto:')} after {item.value} passes  ({_left(item)} left)"
        )


@greylist_app.command("clear")
def greylist_clear(
    net: Annotated[str | None, typer.Option("--network", help="Only this client address or network.")] = None,
    config: ConfigOpt = DEFAULT_CONFIG_PATH,
) -> None:
    """Forget triplets, passes and auto-allows: all, or those of one network."""
    if net is not None:
        try:
            net = network(str(ipaddress.ip_network(net.strip(), strict=False).network_address))
        except ValueError:
            fail(f"--network: {clean(net)!r} is not an address or network")

    async def clear(store: PolicyStore) -> int:
        count = 0
        for prefix in ("grey:t:", "grey:passes:", "grey:auto:"):
            for item in await store.scan(prefix + (net if net and prefix != "grey:t:" else "")):
                if prefix == "grey:t:" and net and not item.key.startswith(f"grey:t:{net}|"):
                    continue
                count += await store.delete(item.key)
        return count

    console().print(f"{_with_store(config, clear)} greylisting entries removed")
