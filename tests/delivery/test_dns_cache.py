"""DnsResolver keeps answers for their TTL: asked again, it answers without the server.

Against a real nsd that is stopped after the first round of questions: what was answered
(records, NXDOMAIN, no records of a type) is answered again from the cache, while a name never
asked now fails as a server failure, which proves the server really is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeward.net.dns import DnsResolver
from edgeward.ports import DnsError, DnsFailure
from tests.dnsserver import NSD, Nsd, start_nsd

ZONE = """$ORIGIN cache.test.
$TTL 300
@ IN SOA ns.cache.test. admin.cache.test. 1 3600 600 86400 300
@ IN NS ns.cache.test.
ns IN A 127.0.0.1
@ IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
host IN A 192.0.2.7
"""


@pytest.fixture
def nameserver(tmp_path: Path) -> Iterator[Nsd]:
    if NSD is None:
        pytest.skip("nsd is not installed (scripts/install-test-deps.sh installs it)")
    server = start_nsd(tmp_path / "nsd", {"cache.test": ZONE})
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.stop()


async def test_answers_are_kept_after_the_server_is_gone(nameserver: Nsd) -> None:
    resolver = DnsResolver(["127.0.0.1"], port=nameserver.port, timeout=0.5)
    assert (await resolver.query("host.cache.test", "A")).records == ("192.0.2.7",)
    assert (await resolver.query("cache.test", "TXT")).records == ("v=spf1 ip4:192.0.2.0/24 -all",)
    assert (await resolver.query("host.cache.test", "TXT")).records == ()
    with pytest.raises(DnsError) as first:
        await resolver.query("2.0.0.127.cache.test", "A")
    assert first.value.failure is DnsFailure.NXDOMAIN

    nameserver.stop()

    assert (await resolver.query("host.cache.test", "A")).records == ("192.0.2.7",)
    assert (await resolver.query("cache.test", "TXT")).records == ("v=spf1 ip4:192.0.2.0/24 -all",)
    assert (await resolver.query("host.cache.test", "TXT")).records == ()
    with pytest.raises(DnsError) as again:
        await resolver.query("2.0.0.127.cache.test", "A")
    assert again.value.failure is DnsFailure.NXDOMAIN
    with pytest.raises(DnsError) as unasked:
        await resolver.query("other.cache.test", "A")
    assert unasked.value.failure in (DnsFailure.TIMEOUT, DnsFailure.SERVFAIL)



SHORT_ZONE = """$ORIGIN brief.test.
$TTL 1
@ IN SOA ns.brief.test. admin.brief.test. 1 3600 600 86400 1
@ IN NS ns.brief.test.
ns IN A 127.0.0.1
host IN A 192.0.2.8
"""


async def test_answers_and_denials_are_not_kept_past_their_ttl(tmp_path: Path) -> None:
    if NSD is None:
        pytest.skip("nsd is not installed (scripts/install-test-deps.sh installs it)")
    server = start_nsd(tmp_path / "nsd", {"brief.test": SHORT_ZONE})
    try:
        resolver = DnsResolver(["127.0.0.1"], port=server.port, timeout=0.5)
        assert (await resolver.query("host.brief.test", "A")).records == ("192.0.2.8",)
        with pytest.raises(DnsError):
            await resolver.query("absent.brief.test", "A")
        # Asked again at once: kept (the server is stopped below, so this is the cache).
        server.stop()
        assert (await resolver.query("host.brief.test", "A")).records == ("192.0.2.8",)
        with pytest.raises(DnsError) as kept:
            await resolver.query("absent.brief.test", "A")
        assert kept.value.failure is DnsFailure.NXDOMAIN
        await asyncio.sleep(1.5)  # past the TTL of 1 s: both must be asked again, and fail now
        for name in ("host.brief.test", "absent.brief.test"):
            with pytest.raises(DnsError) as gone:
                await resolver.query(name, "A")
            assert gone.value.failure in (DnsFailure.TIMEOUT, DnsFailure.SERVFAIL)
    finally:
        if server.proc.poll() is None:
            server.stop()
