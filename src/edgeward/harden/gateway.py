"""The gateway checks of ``harden analyse``: ``config check`` folded in, and what it cannot see.

``config.check.audit`` judges the TOML alone. Here its problems get stable ids (the ones with
a specific rule get that rule's id, the rest EW-CFG-001 for errors and EW-CFG-002 for
warnings), and the checks that need the role or the files are added: submission without AUTH,
protocol logs of AUTH sessions, the certificates actually bound (self-signed on the internet
connector, near expiry), the content filter and virus scanner the role requires, the age
of the signatures on disk, and the age of the directory replica where one is in use.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edgeward.config.check import audit, serves_public
from edgeward.config.schema import Config, split_hostport
from edgeward.harden.findings import Finding
from edgeward.harden.host import Notes
from edgeward.harden.template import RoleTemplate
from edgeward.tls.info import CertInfo

__all__ = ["check_gateway"]

# config check warnings that have a rule of their own, by a fragment of their text.
_SPECIFIC = (
    ("TLS is disabled on a connector that serves the internet", "EW-TLS-001"),
    ("auth_without_tls", "EW-AUTH-001"),
    ("dane trusts", "EW-TLS-005"),
    ("relay permission for public", "EW-CFG-003"),
    ("tls = 'none' still sends in clear", "EW-TLS-004"),
    ("TLS is disabled for mail to the whole internet", "EW-TLS-004"),
)
_SUBMISSION_PORTS = {465, 587}
EXPIRY_WARNING = timedelta(days=21)


def _folded(config: Config) -> Iterator[Finding]:
    for problem in audit(config):
        text = str(problem)
        ident = next((i for frag, i in _SPECIFIC if frag in problem.text), None)
        if ident is None:
            ident = "EW-CFG-001" if problem.severity == "error" else "EW-CFG-002"
        yield Finding(ident, text)


def _connectors(config: Config, template: RoleTemplate) -> Iterator[Finding]:
    offers_submission = False
    for rc in config.receive_connectors:
        ports = {split_hostport(b, 25)[1] for b in rc.bindings}
        if ports & _SUBMISSION_PORTS and not rc.require_auth:
            yield Finding("EW-AUTH-002", f"connector {rc.name} on {sorted(ports)} has require_auth = false")
        if rc.auth_mechanisms and rc.protocol_log:
            yield Finding("EW-AUTH-003", f"connector {rc.name}")
        if rc.auth_mechanisms and rc.require_auth and (rc.tls or rc.implicit_tls):
            offers_submission = True
    if template.gateway.submission and not offers_submission:
        yield Finding("EW-AUTH-004", "no receive connector with require_auth and TLS")
    for sc in config.send_connectors:
        internet = any(a.domain == "*" for a in sc.address_spaces)
        if internet and sc.dns_routing and sc.tls != "none" and not (sc.mta_sts or sc.dane):
            yield Finding("EW-TLS-004", f"send connector {sc.name}: neither mta_sts nor dane")


def _certificates(config: Config, notes: Notes) -> Iterator[Finding]:
    from edgeward.tls.store import CertificateStore

    store_path = config.resolve(config.tls.store)
    if not store_path.is_dir():
        notes.not_checked.append(f"certificates: {store_path} does not exist yet (made at first start)")
        return
    try:
        store = CertificateStore(store_path)
        certs = store.list()
    except (OSError, ValueError) as exc:
        notes.not_checked.append(f"certificates: {store_path}: {exc}")
        return
    now = datetime.now(UTC)
    for rc in config.receive_connectors:
        if not (rc.tls or rc.implicit_tls):
            continue
        bound = _bound(certs, rc.name)
        if bound is None:
            continue
        if bound.self_signed and serves_public(rc):
            yield Finding("EW-TLS-002", f"connector {rc.name}: {bound.subject} ({bound.thumbprint[:12]})")
        if bound.not_after - now < EXPIRY_WARNING:
            days = (bound.not_after - now).days
            state = "expired" if days < 0 else f"expires in {days} day(s)"
            yield Finding("EW-TLS-003", f"connector {rc.name}: {bound.subject} {state}")
    notes.checked.append(f"{len(certs)} certificate(s) in {store_path}")


def _bound(certs: list[CertInfo], connector: str) -> CertInfo | None:
    # The connector's own binding wins over the smtp default, as tls_contexts chooses.
    for wanted in (connector, None):
        for cert in certs:
            if any(b.service == "smtp" and b.connector == wanted for b in cert.bindings):
                return cert
    return None


def _filters(config: Config, template: RoleTemplate, notes: Notes) -> Iterator[Finding]:
    if config.agents.observe_only:
        yield Finding("EW-FLT-002", "agents.observe_only = true")
    cf = config.agents.content_filter
    if template.gateway.content_filter and (not cf.enabled or "content-filter" in config.agents.disabled):
        yield Finding("EW-FLT-001", "agents.content_filter.enabled = false or the agent is disabled")
    av = config.antivirus
    if template.gateway.antivirus and not av.enabled:
        yield Finding("EW-FLT-003", "antivirus.enabled = false")
    if not av.enabled:
        return
    if av.on_unavailable == "accept":
        yield Finding("EW-FLT-005", "antivirus.on_unavailable = 'accept'")
    if av.clamd.enabled:
        yield from _signatures(config, notes)


def _signatures(config: Config, notes: Notes) -> Iterator[Finding]:
    from edgeward.scanning.updates import database_directory, newest_signatures, snapshot

    updates = config.antivirus.updates
    try:
        db = database_directory(updates.clamd_conf)
        newest = newest_signatures(snapshot(db))
    except OSError as exc:
        notes.not_checked.append(f"signature age: {exc}")
        return
    if newest is None:
        yield Finding("EW-FLT-004", f"no signature database in {db}")
        return
    age = time.time() - newest
    if age > updates.max_signature_age:
        yield Finding("EW-FLT-004", f"newest signatures in {db} are {age / 3600:.0f}h old")
    notes.checked.append(f"signature age in {db}")


def _directory(config: Config, notes: Notes) -> Iterator[Finding]:
    from edgeward.directory.replica import age, read_replica
    from edgeward.paths import directory_replica_path

    local, cfg = config.agents.local_recipients, config.directory
    if not (cfg.urls or cfg.push_listen or (local.enabled and local.source == "directory")):
        return
    path = directory_replica_path(config)
    try:
        meta = read_replica(path).meta
    except FileNotFoundError:
        yield Finding("EW-DIR-001", f"no directory replica at {path}: no sync or push has written one")
        return
    except (OSError, sqlite3.Error) as exc:
        notes.not_checked.append(f"directory replica {path}: {exc}")
        return
    notes.checked.append(f"directory replica age in {path}")
    seconds = age(meta)
    if seconds is None:
        yield Finding("EW-DIR-001", f"the directory replica at {path} records no successful sync")
    elif cfg.max_age and seconds > cfg.max_age:
        yield Finding("EW-DIR-001", f"the directory replica was last synced {seconds / 3600:.1f}h ago "
                      f"(directory.max_age {cfg.max_age / 3600:.1f}h)")  # fmt: skip


def check_gateway(config: Config, template: RoleTemplate, config_path: Path, notes: Notes) -> list[Finding]:
    out = list(_folded(config))
    out += _connectors(config, template)
    out += _certificates(config, notes)
    out += _filters(config, template, notes)
    out += _directory(config, notes)
    notes.checked.append(f"the gateway configuration {config_path}")
    # A rule reached both from config check and from a check here is reported once.
    unique: dict[tuple[str, str], Finding] = {(f.id, f.found): f for f in out}
    return list(unique.values())
