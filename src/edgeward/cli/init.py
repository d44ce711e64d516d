"""``edgeward init``: a new configuration, certificate and data folders in one step.

The configuration it writes is commented and secure as written: only the accepted domains are
open to everyone, relay is granted only to the ranges named with ``--relay-from``, TLS is on
with a self-signed certificate made here. Without ``--smart-host`` mail for accepted domains
lands in a drop folder, so a first message can be sent with no other server.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from edgeward.config.check import internet_wide
from edgeward.config.load import parse_config
from edgeward.config.schema import Config, split_hostport

TEMPLATE = """\
# Edgeward configuration, written by `edgeward init`.
# Every setting and its default: `edgeward config show --defaults`. Check a change: `edgeward config check`.

# Domains this gateway takes mail for from anyone on the internet.
accepted_domains = {domains}

[server]
hostname = {hostname}        # FQDN in the banner, EHLO and Received headers
data_dir = "."               # queue/, log/, tls/, state/ and drop/ live here (relative to this file)
user = "edgeward"            # when started as root, run as this user once ports are bound

# The internet-facing connector: mail to accepted domains only, STARTTLS offered.
[[receive_connectors]]
name = "internet"
bindings = {bindings}
remote_ranges = ["0.0.0.0/0", "::/0"]
permissions = ["submit"]
max_message_size = "10MB"    # announced in SIZE
max_recipients = 200
max_connections = 5000
max_connections_per_source = 100
message_rate_limit = 600     # messages per minute from one address
{relay}
# Mail submission for your users, if you want it (add accounts with 'edgeward user add NAME'):
# port 587 with STARTTLS before AUTH, and port 465 with TLS from the first byte (RFC 8314).
# [[receive_connectors]]
# name = "submission"
# bindings = ["0.0.0.0:587"]
# require_tls = true
# require_auth = true
# auth_mechanisms = ["PLAIN", "LOGIN"]
# permission_groups = ["anonymous", "users"]
#
# [[receive_connectors]]
# name = "submissions"
# bindings = ["0.0.0.0:465"]
# implicit_tls = true
# require_auth = true
# auth_mechanisms = ["PLAIN", "LOGIN"]
# permission_groups = ["anonymous", "users"]

# Where mail goes. The most specific address space wins, then the lowest cost.
[[send_connectors]]
name = "inbound"
address_spaces = {domains}
{route}
tls = "opportunistic"
{outbound}
[queue]
fsync = true                 # a message is on disk before we answer 250
min_free_disk = "500MB"      # below this, new mail gets 452 4.3.1

[logging]
dir = "log"
"""

RELAY = """
# Your own servers, allowed to send mail out to any domain through this gateway.
[[receive_connectors]]
name = "relay"
bindings = {bindings}
remote_ranges = {ranges}
permissions = ["submit", "relay"]
"""

OUTBOUND = """
# Mail from the relay ranges to the rest of the internet, by DNS MX records.
[[send_connectors]]
name = "internet"
address_spaces = ["*"]
dns_routing = true
tls = "opportunistic"
mta_sts = true               # honour recipient domains' MTA-STS policies (RFC 8461)
# DANE (RFC 7672): set dane to true here once a validating resolver runs on this host,
# and list it in a [dns] section as servers, e.g. ["127.0.0.1"].
"""


def _toml(value: object) -> str:
    # JSON strings and lists of strings are valid TOML.
    return json.dumps(value)


def render(
    *,
    hostname: str,
    listen: list[str],
    accept_domains: list[str],
    relay_from: list[str],
    smart_host: str | None,
) -> str:
    # The same rule config check applies, so init never writes what serve would refuse.
    if wide := internet_wide(relay_from):
        raise ValueError(
            f"--relay-from {', '.join(wide)} would make an open relay; name your own servers' ranges"
        )
    bindings = _toml(listen)
    relay = RELAY.format(bindings=bindings, ranges=_toml(relay_from)) if relay_from else ""
    if smart_host:
        host, port = split_hostport(smart_host, 25)
        route = f"smart_hosts = {_toml([f'{host}:{port}' if ':' not in host else f'[{host}]:{port}'])}"
    else:
        route = (
            'drop_dir = "drop"           # one .eml per message; set smart_hosts to reach your mail server'
        )
    return TEMPLATE.format(
        hostname=_toml(hostname),
        domains=_toml(accept_domains),
        bindings=bindings,
        relay=relay,
        route=route,
        outbound=OUTBOUND if relay_from else "",
    )


def default_hostname() -> str:
    name = socket.getfqdn()
    return name if "." in name else f"{name}.localdomain"


def write_config(target: Path, text: str, *, force: bool) -> Config:
    """Validate ``text`` as a configuration, then write it to ``target`` (mode 0640)."""
    config = parse_config(_loads(text), source=str(target), base=target.parent.resolve())
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; use --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, target)
    return config


def _loads(text: str) -> dict[str, object]:
    import tomllib

    return tomllib.loads(text)
