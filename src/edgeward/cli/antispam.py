"""``edgeward antispam``: ask the anti-spam checks the questions the gateway asks, from a shell.

Owns the command-line face of the sender-authentication checks; decisions live in
:mod:`edgeward.senderauth`, this module parses options, builds the resolver the gateway would
use (``[dns]`` of the configuration) and prints.

* ``spf --ip IP --sender ADDR [--helo NAME] [-c CONFIG] [--json]``: the SPF result (RFC 7208)
  for a client at IP sending as ADDR (``""`` or ``<>`` for the null sender, which checks the
  HELO name), its explanation, the term that decided, the lookups it took, and the
  ``Received-SPF`` field the gateway would write. ``spf --ip IP --helo NAME`` without
  ``--sender`` checks the HELO identity alone, as the gateway does at HELO/EHLO (§2.3).

The connection filter's commands (``ip allow|block add|remove|list``, ``test-ip``) are in
:mod:`edgeward.cli.antispam_ip`.

Exit codes: 0 a result was printed (whatever it is: ``temperror`` is an answer too),
2 bad input (an address that is not an IP, a malformed sender, an unreadable configuration).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated

import typer

from edgeward.cli.antispam_ip import ip_app, test_ip
from edgeward.cli.antispam_lists import register as register_lists
from edgeward.cli.queue import clean, fail, load
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.filters.agents.spf import helo_finding_name, helo_is_checked
from edgeward.net.dns import DnsResolver
from edgeward.senderauth.received_spf import received_spf
from edgeward.senderauth.spf import SpfResult, check_helo, check_spf

antispam_app = typer.Typer(
    name="antispam",
    help="Query the anti-spam checks (spf, test-ip); change the IP, sender, recipient and safe-sender lists.",
    no_args_is_help=True,
    add_completion=False,
)
register_lists(antispam_app)  # sender|recipient block, safelist, blocklist

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Configuration file.")]
# What a MAIL FROM path may hold here: no spaces or controls, at most the RFC 5321 path length.
_SENDER = re.compile(r"[^\x00-\x20\x7f<>]{1,256}\Z")
_HELO = re.compile(r"[^\x00-\x20\x7f]{1,255}\Z")


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip().removeprefix("[").removesuffix("]")))
    except ValueError:
        fail(f"--ip: {clean(value)!r} is not an IPv4 or IPv6 address")


def _sender(value: str) -> str:
    sender = value.strip().removeprefix("<").removesuffix(">")
    if sender and not _SENDER.match(sender):
        fail(
            f"--sender: {clean(value)!r} is not an envelope address (user@domain, or '' for the null sender)"
        )
    return sender


@antispam_app.command("spf")
def spf(
    ip: Annotated[str, typer.Option("--ip", help="Address of the SMTP client.")],
    sender: Annotated[
        str | None,
        typer.Option("--sender", help="MAIL FROM address; '' or '<>' for the null sender; unset: HELO only."),
    ] = None,
    helo: Annotated[str | None, typer.Option("--helo", help="HELO/EHLO name the client gave.")] = None,
    config: ConfigOpt = DEFAULT_CONFIG_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Evaluate SPF for a client address and sender, with the gateway's DNS resolvers."""
    address = _ip(ip)
    mail_from = None if sender is None else _sender(sender)
    if helo is not None and not _HELO.match(helo):
        fail(f"--helo: {clean(helo)!r} is not a host name")
    if mail_from is None and not helo:
        fail("give --sender, --helo, or both")
    if mail_from == "" and not helo:
        fail("a null sender is checked by its HELO name: give --helo")
    if mail_from is None and helo is not None and not helo_is_checked(helo):
        fail(f"--helo: {clean(helo)!r} is not a domain name; an address literal has no SPF identity")
    cfg = load(config)
    dns = cfg.dns
    resolver = DnsResolver(dns.servers or None, port=dns.port, timeout=dns.timeout)
    receiver = cfg.server.hostname
    if mail_from is None:
        assert helo is not None
        question = check_helo(resolver, address, helo, receiver=receiver)
    else:
        question = check_spf(resolver, address, mail_from, helo or "unknown", receiver=receiver)
    result = asyncio.run(question)
    # The finding the gateway reports: the HELO check at HELO has names of its own.
    finding = helo_finding_name(result) if mail_from is None else result.finding_name()
    header = received_spf(result, receiver=receiver)
    if as_json:
        doc = {**result.as_dict(), "finding": finding, "received_spf": header.removesuffix("\r\n")}
        typer.echo(json.dumps(doc, indent=2))
        return
    for line in _text(result, finding):
        typer.echo(clean(line))
    for n, line in enumerate(header.removesuffix("\r\n").split("\r\n\t")):
        typer.echo(("\t" if n else "") + clean(line))


def _text(result: SpfResult, finding: str) -> list[str]:
    lines = [
        f"spf: {result.status.value} ({finding}; identity {result.identity.value},"
        f" domain {result.domain or '-'})",
        f"  {result.description()}",
    ]
    if result.explanation:
        lines.append(f"  explanation: {result.explanation}")
    if result.mechanism:
        lines.append(f"  mechanism: {result.mechanism}")
    lines.append(
        f"  DNS terms {result.dns_lookups} of 10, void lookups {result.void_lookups} of 2,"
        f" queries sent {result.dns_queries}"
    )
    return lines


# Connection filtering: the IP lists and the test of an address (edgeward.cli.antispam_ip).
antispam_app.add_typer(ip_app, name="ip")
antispam_app.command("test-ip")(test_ip)
from edgeward.cli.antispam_reputation import greylist_app, reputation_app  # noqa: E402

antispam_app.add_typer(reputation_app)
antispam_app.add_typer(greylist_app)
