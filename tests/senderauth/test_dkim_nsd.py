"""DKIM and DMARC end to end: keys and policy in a zone served by a real nsd, asked by DnsResolver."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from edgeward.net.dns import DnsResolver
from edgeward.senderauth.dkim import DkimStatus, verify_dkim
from edgeward.senderauth.dmarc import DmarcChecker, DmarcStatus, Policy
from tests.dnsserver import NSD, Nsd, start_nsd
from tests.ports import free_port

from .dkimkeys import SigningKey, ed25519_key, rsa_key

MESSAGE = b"From: news@mail.dkim.test\r\nTo: reader@example.net\r\nSubject: issue 12\r\n\r\nNews.\r\n"


def txt(record: str) -> str:
    # A TXT record holds strings of up to 255 octets (RFC 1035 §3.3); a 2048-bit key needs two.
    return " ".join(f'"{record[i : i + 255]}"' for i in range(0, len(record), 255))


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {"rsa": rsa_key(2048), "ed": ed25519_key()}


@pytest.fixture(scope="module")
def nameserver(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, SigningKey]) -> Iterator[Nsd]:
    if NSD is None:
        pytest.skip("nsd is not installed (apt-get install -y nsd)")
    zone = f"""$ORIGIN dkim.test.
$TTL 60
@ IN SOA ns.dkim.test. admin.dkim.test. 1 3600 600 86400 60
@ IN NS ns.dkim.test.
ns IN A 127.0.0.1
rsa._domainkey IN TXT {txt(keys["rsa"].record)}
ed._domainkey IN TXT {txt(keys["ed"].record)}
_dmarc IN TXT "v=DMARC1; p=reject; sp=quarantine; adkim=r"
"""
    server = start_nsd(Path(tmp_path_factory.mktemp("nsd")), {"dkim.test": zone})
    try:
        yield server
    finally:
        server.stop()


def resolver(server: Nsd) -> DnsResolver:
    return DnsResolver(["127.0.0.1"], port=server.port, timeout=2.0, rng=random.Random(0))


async def test_keys_from_a_real_server(nameserver: Nsd, keys: dict[str, SigningKey]) -> None:
    signatures = b"".join(
        dkim.sign(MESSAGE, sel.encode(), b"dkim.test", key.private, signature_algorithm=key.algorithm)
        for sel, key in keys.items()
    )
    result = await verify_dkim(signatures + MESSAGE, resolver(nameserver))
    assert [(s.selector, s.status, s.key_bits) for s in result.signatures] == [
        ("rsa", DkimStatus.PASS, 2048),
        ("ed", DkimStatus.PASS, 256),
    ]
    # The relaxed-aligned signature of dkim.test passes DMARC for mail.dkim.test, whose own
    # _dmarc name does not exist: the record comes from the organisational domain.
    dmarc = await DmarcChecker(resolver(nameserver)).check(
        ["news@mail.dkim.test"], result, "fail", "bounces.example.net"
    )
    assert dmarc.status is DmarcStatus.PASS and dmarc.policy_domain == "dkim.test"


async def test_missing_selector_is_permerror_and_unreachable_server_temperror(
    nameserver: Nsd, keys: dict[str, SigningKey]
) -> None:
    signed = bytes(dkim.sign(MESSAGE, b"gone", b"dkim.test", keys["rsa"].private)) + MESSAGE
    [sig] = (await verify_dkim(signed, resolver(nameserver))).signatures
    assert sig.status is DkimStatus.PERMERROR and "NXDOMAIN" in sig.reason
    dead = DnsResolver(["127.0.0.1"], port=free_port(), timeout=0.5)
    [sig] = (await verify_dkim(signed, dead)).signatures
    assert sig.status is DkimStatus.TEMPERROR


async def test_dmarc_subdomain_policy_from_a_real_server(nameserver: Nsd) -> None:
    dmarc = await DmarcChecker(resolver(nameserver)).check(["news@mail.dkim.test"], None, "none", "")
    assert dmarc.status is DmarcStatus.FAIL
    assert (dmarc.policy, dmarc.applied) == (Policy.QUARANTINE, Policy.QUARANTINE)
