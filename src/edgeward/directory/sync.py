"""Pull sync: the directory read through ``directory.ldap``, written as a new replica.

A *full* sync reads every mail object and every accepted domain. An *incremental* sync reads
the objects whose change marker (``modifyTimestamp`` on OpenLDAP, ``uSNChanged`` on AD) is at
past the highest one seen, then one cheap id-only search of all objects: ids that are gone
were deleted, a DN that changed was renamed. A timestamp marker is compared with ``>=``, so an
entry changed within the same second as the last sync is read again rather than missed.
Accepted domains are read with the first sync and again every ``config_interval``.

Nothing is written until the new state is complete; then :func:`check_deletions` refuses a
state that drops more than ``max_delete_share`` of the recipients, and more than
``DELETE_FLOOR`` of them (without ``force``), and
``replica.write_replica`` swaps the file. A directory that fails anywhere raises
``DirectoryError`` and the previous replica stays.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ldap3.utils.conv import escape_filter_chars

from edgeward.config.directory import DirectoryConfig
from edgeward.directory.ldap import LdapDirectory, RawEntry
from edgeward.directory.lists import from_directory
from edgeward.directory.replica import Entry, Meta, ReplicaState, read_replica, write_replica

log = logging.getLogger("edgeward.directory.sync")

_PREFIXED = re.compile(r"^([A-Za-z0-9]+):(.*)$")
_ADDRESS = re.compile(r"^[^\s@<>]{1,64}@[^\s@<>]{1,253}$")


# Removing this many recipients is never held, whatever the share: in a directory of a dozen
# users one departure is already more than 10%.
DELETE_FLOOR = 10


class SyncRefused(Exception):
    """A sync that would remove too much of the replica (see ``max_delete_share``)."""


@dataclass(frozen=True, slots=True)
class SyncReport:
    full: bool
    entries: int
    added: int
    removed: int
    changed: int
    domains: int
    seconds: float


def smtp_address(value: str) -> str | None:
    """The SMTP address in a directory value, lowercased; None for other address types.

    ``proxyAddresses`` carries a type prefix: ``SMTP:`` (primary) and ``smtp:`` (secondary) are
    mail addresses, ``X500:``, ``SIP:``, ``X400:`` ... are not.
    """
    value = value.strip()
    match = _PREFIXED.match(value)
    if match is not None and "@" not in match.group(1):
        if match.group(1).lower() != "smtp":
            return None
        value = match.group(2).strip()
    value = value.lower()
    return value if _ADDRESS.match(value) else None


def object_id(raw: RawEntry, attribute: str) -> str:
    values = raw.values(attribute)
    if not values:
        return "dn:" + raw.dn.lower()
    value = values[0]
    if len(value) == 16 and attribute.lower() == "objectguid":
        return str(uuid.UUID(bytes_le=value))  # AD's binary GUID, shown as AD shows it
    return value.decode("utf-8", "replace").lower()


class Mapper:
    """Directory entries to replica entries, by the attribute names of the configuration."""

    def __init__(self, cfg: DirectoryConfig) -> None:
        self.cfg = cfg
        self.address_attrs = cfg.addresses()
        self.id_attr = cfg.attr("id_attribute")
        self.change_attr = cfg.attr("change_attribute")
        self.lists = (
            cfg.attr("safe_senders_attribute"),
            cfg.attr("blocked_senders_attribute"),
            cfg.attr("safe_recipients_attribute"),
        )

    def attributes(self) -> list[str]:
        names = [
            *self.address_attrs,
            self.id_attr,
            self.change_attr,
            "objectClass",
            self.cfg.attr("member_attribute"),
            *self.lists,
        ]
        return [n for n in dict.fromkeys(names) if n]

    def kind(self, raw: RawEntry) -> str:
        classes = {c.lower() for c in raw.text("objectClass")}
        if self.cfg.attr("group_class").lower() in classes:
            return "group"
        return "user" if self.cfg.attr("user_class").lower() in classes else "contact"

    def entry(self, raw: RawEntry) -> Entry:
        addresses = [
            a for v in (x for n in self.address_attrs for x in raw.text(n)) if (a := smtp_address(v))
        ]
        kind = self.kind(raw)
        members = tuple(raw.text(self.cfg.attr("member_attribute"))) if kind == "group" else ()
        marker = (raw.text(self.change_attr) or [""])[0]
        return Entry(
            object_id(raw, self.id_attr),
            raw.dn,
            kind,
            tuple(dict.fromkeys(addresses)),
            marker,
            members,
            *(self._list(raw, a) for a in self.lists),
        )

    def _list(self, raw: RawEntry, attribute: str) -> tuple[str, ...]:
        if not attribute:
            return ()
        return from_directory(raw.text(attribute), self.cfg.list_encoding, f"{raw.dn} {attribute}")


def _later(a: str, b: str) -> bool:
    """Whether marker ``a`` is past ``b``: USNs compare as numbers, timestamps as text."""
    if a.isdigit() and b.isdigit():
        return int(a) > int(b)
    return a > b


def change_filter(cfg: DirectoryConfig, marker: str) -> str:
    attr = cfg.attr("change_attribute")
    # A USN grows with every write: the next one is where changes start. A timestamp has a
    # one-second grain, so the last second is read again.
    start = str(int(marker) + 1) if marker.isdigit() else marker
    return f"(&{cfg.attr('object_filter')}({attr}>={escape_filter_chars(start)}))"


def check_deletions(previous: ReplicaState, new: dict[str, Entry], cfg: DirectoryConfig, force: bool) -> None:
    before = sum(1 for e in previous.entries.values() if e.addresses)
    if before == 0:
        return
    gone = sum(1 for oid, e in previous.entries.items() if e.addresses and oid not in new)
    if gone > DELETE_FLOOR and gone / before > cfg.max_delete_share and not force:
        raise SyncRefused(
            f"this sync would remove {gone} of {before} recipients ({gone / before:.0%}, more than"
            f" max_delete_share {cfg.max_delete_share:.0%}): a wrong base DN or an emptied directory?"
            " The replica is unchanged; run with --force if the removal is intended"
        )


def _domains(directory: LdapDirectory, cfg: DirectoryConfig) -> frozenset[str]:
    flt, attr = cfg.attr("domain_filter"), cfg.attr("domain_attribute")
    if not flt or not attr:
        return frozenset()
    found: set[str] = set()
    for raw in directory.search(cfg.domains_base, flt, [attr]):
        found.update(v.strip().lower().rstrip(".") for v in raw.text(attr) if v.strip())
    return frozenset(found)


def sync(
    cfg: DirectoryConfig,
    password: str,
    path: Path,
    *,
    full: bool = False,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    owner: tuple[int, int] | None = None,
    now: Callable[[], float] = time.time,
) -> SyncReport:
    """One sync into the replica at ``path``: full if asked or if there is no usable replica."""
    started = now()
    try:
        previous = read_replica(path)
    except FileNotFoundError:
        previous = ReplicaState()
    full = full or not previous.meta.marker or previous.meta.last_full <= 0
    mapper = Mapper(cfg)
    with LdapDirectory(cfg, password) as directory:
        if full:
            entries = {
                e.id: e
                for e in map(
                    mapper.entry,
                    directory.search(
                        cfg.base_dn, cfg.attr("object_filter"), mapper.attributes(), progress=progress
                    ),
                )
            }
            changed = len(entries)
        else:
            fresh = [
                mapper.entry(r)
                for r in directory.search(
                    cfg.base_dn,
                    change_filter(cfg, previous.meta.marker),
                    mapper.attributes(),
                    progress=progress,
                )
            ]
            present = {
                object_id(r, mapper.id_attr): r.dn
                for r in directory.search(cfg.base_dn, cfg.attr("object_filter"), [mapper.id_attr])
            }
            entries = _merge(previous.entries, fresh, present)
            changed = len(fresh)
        config_due = full or started - previous.meta.last_config >= cfg.config_interval
        domains = _domains(directory, cfg) if config_due else previous.domains
    check_deletions(previous, entries, cfg, force)
    marker = previous.meta.marker
    for e in entries.values():
        if e.marker and (not marker or _later(e.marker, marker)):
            marker = e.marker
    m = previous.meta
    meta = Meta(
        last_full=started if full else m.last_full,
        last_incremental=m.last_incremental if full else started,
        last_config=started if config_due else m.last_config,
        marker=marker,
        source=directory.url,
    )
    write_replica(path, ReplicaState(entries, domains, meta), owner=owner)
    added = sum(1 for oid in entries if oid not in previous.entries)
    removed = sum(1 for oid in previous.entries if oid not in entries)
    return SyncReport(full, len(entries), added, removed, changed, len(domains), now() - started)


def _merge(previous: dict[str, Entry], fresh: list[Entry], present: dict[str, str]) -> dict[str, Entry]:
    by_id = {e.id: e for e in fresh}
    out: dict[str, Entry] = {}
    for oid, dn in present.items():
        entry = by_id.get(oid) or previous.get(oid)
        if entry is None:
            # Present but neither known nor reported changed: a marker that went backwards (a
            # directory restore). Nothing to map it from; the next full sync reads it.
            log.warning("directory: %s is new but carries no newer change marker; run a full sync", dn)
            continue
        out[oid] = entry if entry.dn == dn else replace(entry, dn=dn)
    return out
