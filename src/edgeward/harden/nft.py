"""The firewall part of ``harden apply``: one nftables table of our own, ``table inet edgeward``.

The table has a single input base chain with policy drop; loopback, established and related
traffic and ICMP (IPv6 neighbour discovery and path MTU discovery break without it) are
accepted, then the template's inbound ports from their sources. Outbound traffic is not
filtered: the template's outbound list documents what the role needs, but a drop-by-default
output chain breaks updates and monitoring in ways a site should choose for itself.

Nothing else of the host's ruleset is touched. A packet must be accepted by every base chain
on the hook, so this table narrows what other tables allow and never widens it. The table is
replaced in one ``nft -f`` transaction (add, delete, define), so there is no moment without it,
and restored the same way from the ``nft list table`` text a rollback point holds.
"""

from __future__ import annotations

import ipaddress
import subprocess

from edgeward.harden.template import RoleTemplate

__all__ = ["current_table", "delete_table", "load_table", "render_table", "ruleset"]

TABLE = "inet edgeward"
_ANY = {"0.0.0.0/0", "::/0"}


def render_table(template: RoleTemplate) -> str:
    """The table for ``template``, in the form ``nft list table`` prints it."""
    rules = [
        'iif "lo" accept',
        "ct state established,related accept",
        "ct state invalid drop",
        "meta l4proto { icmp, ipv6-icmp } accept",
    ]
    by_sources: dict[tuple[str, ...], list[int]] = {}
    for port in template.inbound:
        key = ("any",) if set(port.sources) >= _ANY else tuple(sorted(port.sources))
        by_sources.setdefault(key, []).append(port.port)
    for sources, ports in by_sources.items():
        dport = _set(sorted(set(ports)))
        if sources == ("any",):
            rules.append(f"tcp dport {dport} accept")
            continue
        v4 = [s for s in sources if ipaddress.ip_network(s, strict=False).version == 4]
        v6 = [s for s in sources if ipaddress.ip_network(s, strict=False).version == 6]
        if v4:
            rules.append(f"ip saddr {_set(v4)} tcp dport {dport} accept")
        if v6:
            rules.append(f"ip6 saddr {_set(v6)} tcp dport {dport} accept")
    body = "".join(f"\t\t{rule}\n" for rule in rules)
    return (
        f"table {TABLE} {{\n\tchain input {{\n\t\ttype filter hook input priority filter; policy drop;\n"
        f"{body}\t}}\n}}\n"
    )


def _set(items: list[int] | list[str]) -> str:
    return str(items[0]) if len(items) == 1 else "{ " + ", ".join(map(str, items)) + " }"


def _nft(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nft", *args], input=stdin, capture_output=True, text=True, check=False)


def current_table() -> str | None:
    """``nft list table inet edgeward`` as text, or None when there is no such table."""
    done = _nft("list", "table", *TABLE.split())
    if done.returncode != 0:
        if "No such file or directory" in done.stderr:
            return None
        raise OSError(f"nft list table {TABLE}: {done.stderr.strip()}")
    return done.stdout


def load_table(text: str) -> None:
    """Replace (or create) the table with ``text`` in one transaction."""
    script = f"add table {TABLE}\ndelete table {TABLE}\n{text}"
    done = _nft("-f", "-", stdin=script)
    if done.returncode != 0:
        raise OSError(f"nft -f: {done.stderr.strip()}")


def delete_table() -> None:
    if current_table() is not None:
        done = _nft("delete", "table", *TABLE.split())
        if done.returncode != 0:
            raise OSError(f"nft delete table {TABLE}: {done.stderr.strip()}")


def ruleset() -> str:
    done = _nft("list", "ruleset")
    if done.returncode != 0:
        raise OSError(f"nft list ruleset: {done.stderr.strip()}")
    return done.stdout
