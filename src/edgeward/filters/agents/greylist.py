"""Greylisting (issue 8 §2.8): defer the first message of an unknown triplet, pass its retry.

The triplet is the client's network (IPv4 /24, IPv6 /64: a sending farm retries from a
neighbouring address), the envelope sender and the recipient, kept in the policy store under
``grey:t:``. At RCPT:

- first sight: the triplet is stored for ``max_delay`` and the recipient gets ``451 4.7.1``;
- a retry sooner than ``min_delay``: ``451 4.7.1`` again (the first-seen time stands);
- a retry between ``min_delay`` and ``max_delay``: it passes, the triplet is remembered as
  passed for ``pass_lifetime``, and the network's pass counter grows; past ``max_delay`` the
  entry has expired and the triplet starts over;
- after ``auto_allow_after`` passes from a network it is auto-allowed (``grey:auto:``) for
  ``auto_allow_lifetime``: a server that retries properly is not delayed again.

Skipped, each with its reason as a ``GREYLIST_SKIPPED`` finding (weight 0, so it is in the agent
and tracking logs): authenticated sessions; clients a DNS allow list vouches for
(``DNSWL_LISTED`` at CONNECT); senders with an SPF pass at MAIL (``SPF_PASS``) from an address
of good reputation (``SRL_<n>``, n <= ``good_srl``), so one-time codes and password resets are
not delayed; auto-allowed networks. Allow-listed clients and ``bypass_antispam`` sessions never
reach the agent (``filters.exemptions``); the verdict records that exemption. DKIM is known only
at end of data, after the recipient was answered, so it cannot take part here.

A store failure lets the recipient through with a ``GREYLIST_TEMPERROR`` finding: greylisting
only delays, so an outage must not turn into refused mail.
"""

from __future__ import annotations

import ipaddress
import json
import logging

from edgeward.config.schema import GreylistConfig
from edgeward.filters.base import Stage, StageContext
from edgeward.ports import Clock, PolicyStore, PolicyStoreError
from edgeward.types import Finding, Outcome, Reply

log = logging.getLogger("edgeward.greylist")

GREYLISTED = Reply(451, "4.7.1", "Greylisted, please try again later")


def network(ip: str) -> str:
    """The client's network for the triplet: /24 for IPv4, /64 for IPv6."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class Greylisting:
    """Defer the first message of each (network, sender, recipient) triplet with 451 4.7.1."""

    name = "greylisting"
    stages = frozenset({Stage.RCPT})
    antispam = True
    fail_open = True

    def __init__(self, store: PolicyStore, clock: Clock, config: GreylistConfig) -> None:
        self.store = store
        self.clock = clock
        self.config = config

    def skip_reason(self, ctx: StageContext) -> str:
        if ctx.session.authenticated:
            return "authenticated session"
        names = {f.name for f in ctx.earlier}
        if "DNSWL_LISTED" in names:
            return "client on a DNS allow list"
        srl = [int(n[4:]) for n in names if n.startswith("SRL_") and n[4:].isdigit()]
        if "SPF_PASS" in names and srl and max(srl) <= self.config.good_srl:
            return f"SPF pass and good reputation (SRL {max(srl)})"
        return ""

    async def check(self, stage: Stage, ctx: StageContext) -> Outcome:
        if ctx.recipient is None:
            return Outcome.proceed()
        if reason := self.skip_reason(ctx):
            return self._skip(ctx, reason)
        try:
            net = network(ctx.session.peer.ip)
        except ValueError:
            return self._skip(ctx, "client has no IP address")
        sender = str(ctx.mail_from).lower() if ctx.mail_from is not None else ""
        triplet = f"{net}|{sender}|{str(ctx.recipient).lower()}"
        try:
            if await self.store.get(f"grey:auto:{net}") is not None:
                return self._skip(ctx, f"network {net} auto-allowed")
            return await self._judge(net, triplet)
        except PolicyStoreError as exc:
            log.error("greylisting: policy store unavailable, not greylisting: %s", exc)
            return Outcome.proceed(Finding("GREYLIST_TEMPERROR", self.name, str(exc)))

    async def _judge(self, net: str, triplet: str) -> Outcome:
        key, now, cfg = f"grey:t:{triplet}", self.clock.now(), self.config
        first = json.dumps({"first": now, "passed": False})
        if await self.store.add(key, first, ttl=cfg.max_delay):
            return Outcome.tempfail(GREYLISTED, Finding("GREYLIST_DEFERRED", self.name, f"new {triplet}"))
        raw = await self.store.get(key)
        entry = json.loads(raw) if raw else {"first": now, "passed": False}
        if not entry.get("passed"):
            waited = now - float(entry["first"])
            if waited < cfg.min_delay:
                detail = f"retry after {waited:.0f}s < {cfg.min_delay:g}s: {triplet}"
                return Outcome.tempfail(GREYLISTED, Finding("GREYLIST_DEFERRED", self.name, detail))
        await self.store.set(
            key, json.dumps({"first": entry["first"], "passed": True}), ttl=cfg.pass_lifetime
        )
        passes = await self.store.incr(f"grey:passes:{net}", window=cfg.auto_allow_lifetime)
        if cfg.auto_allow_after and passes >= cfg.auto_allow_after:
            await self.store.set(f"grey:auto:{net}", str(passes), ttl=cfg.auto_allow_lifetime)
            log.info("greylisting: network %s auto-allowed after %d passes", net, passes)
        return Outcome.proceed(Finding("GREYLIST_PASSED", self.name, triplet))

    def _skip(self, ctx: StageContext, reason: str) -> Outcome:
        log.info("greylisting skipped for %s (%s): %s", ctx.session.peer.ip, ctx.session.session_id, reason)
        return Outcome.proceed(Finding("GREYLIST_SKIPPED", self.name, reason))
