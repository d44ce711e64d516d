"""SPF over the real DNS path: DnsResolver (dnspython) asking nsd on loopback, and the CLI on top.

The zone exercises the parts the fake cannot vouch for: TXT records split into several
character-strings (joined by the resolver, RFC 7208 §3.3), MX and A answers as dnspython
renders them, NXDOMAIN and NODATA from a real server, and a name the server refuses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.net.dns import DnsResolver
from edgeward.senderauth.spf import SpfStatus, check_spf
from tests.dnsserver import NSD, Nsd, start_nsd
from tests.ports import free_port

ZONE = """$ORIGIN spf.test.
$TTL 60
@ IN SOA ns.spf.test. admin.spf.test. 1 3600 600 86400 60
@ IN NS ns.spf.test.
ns IN A 127.0.0.1
@ IN TXT "v=spf1 include:_spf.spf.test" " mx a:relay.spf.test -all"
@ IN TXT "google-site-verification=unrelated"
@ IN MX 10 mx1.spf.test.
@ IN MX 20 mx2.spf.test.
mx1 IN A 192.0.2.1
mx2 IN AAAA 2001:db8::2
relay IN A 192.0.2.3
_spf IN TXT "v=spf1 ip4:198.51.100.0/24 ?all"
strict IN TXT "v=spf1 a:gone.spf.test a:empty.spf.test -all exp=why.spf.test"
empty IN MX 10 mx1.spf.test.
why IN TXT "%{i} is not a mail server of %{d}"
voids IN TXT "v=spf1 a:n1.spf.test a:n2.spf.test a:n3.spf.test +all"
mail IN TXT "v=spf1 a -all"
mail IN A 192.0.2.25
elsewhere IN TXT "v=spf1 include:refused.example -all"
"""


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nsd]:
    if NSD is None:
        pytest.skip("nsd is not installed (apt-get install -y nsd)")
    server = start_nsd(tmp_path_factory.mktemp("nsd-spf"), {"spf.test": ZONE})
    try:
        yield server
    finally:
        server.stop()


def resolver(server: Nsd) -> DnsResolver:
    return DnsResolver(["127.0.0.1"], port=server.port, timeout=2.0)


@pytest.mark.parametrize(
    ("ip", "status", "mechanism"),
    [
        ("198.51.100.7", SpfStatus.PASS, "include:_spf.spf.test"),  # split TXT strings, include
        ("192.0.2.1", SpfStatus.PASS, "mx"),
        ("2001:db8::2", SpfStatus.PASS, "mx"),
        ("192.0.2.3", SpfStatus.PASS, "a:relay.spf.test"),
        ("192.0.2.99", SpfStatus.FAIL, "-all"),
    ],
)
async def test_include_mx_a_and_all_through_nsd(nsd: Nsd, ip: str, status: SpfStatus, mechanism: str) -> None:
    result = await check_spf(resolver(nsd), ip, "alice@spf.test", "mx.example.net", receiver="gw.test")
    assert (result.status, result.mechanism) == (status, mechanism)


async def test_fail_with_explanation_after_nxdomain_and_nodata(nsd: Nsd) -> None:
    result = await check_spf(resolver(nsd), "192.0.2.99", "bob@strict.spf.test", "h.example.net")
    assert result.status is SpfStatus.FAIL
    assert result.explanation == "192.0.2.99 is not a mail server of strict.spf.test"
    assert result.void_lookups == 2  # gone (NXDOMAIN) and empty (no A record)


async def test_void_limit_and_helo_identity_through_nsd(nsd: Nsd) -> None:
    voids = await check_spf(resolver(nsd), "192.0.2.1", "x@voids.spf.test", "h")
    assert voids.status is SpfStatus.PERMERROR
    helo = await check_spf(resolver(nsd), "192.0.2.25", "", "mail.spf.test")
    assert (helo.status, helo.identity.value, helo.mechanism) == (SpfStatus.PASS, "helo", "a")


async def test_a_name_the_server_refuses_is_a_temperror(nsd: Nsd) -> None:
    # nsd is not authoritative for example. and refuses the question, as a broken server would.
    result = await check_spf(resolver(nsd), "192.0.2.1", "x@elsewhere.spf.test", "h")
    assert result.status is SpfStatus.TEMPERROR
    assert result.problem is not None and "refused.example" in result.problem


def _config(tmp_path: Path, server: Nsd) -> Path:
    path = tmp_path / "edgeward.toml"
    path.write_text(
        'accepted_domains = ["example.org"]\n'
        '[server]\ndata_dir = "."\nhostname = "gw.example.org"\n'
        f'[dns]\nservers = ["127.0.0.1"]\nport = {server.port}\ntimeout = 2\n'
    )
    return path


def test_cli_prints_result_explanation_and_header(nsd: Nsd, tmp_path: Path) -> None:
    config = _config(tmp_path, nsd)
    runner = CliRunner()
    out = runner.invoke(app, ["antispam", "spf", "--ip", "192.0.2.99", "--sender", "bob@strict.spf.test",
                              "--helo", "h.example.net", "-c", str(config)])  # fmt: skip
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0] == "spf: fail (SPF_FAIL; identity mailfrom, domain strict.spf.test)"
    assert "  explanation: 192.0.2.99 is not a mail server of strict.spf.test" in lines
    assert any(line.startswith("Received-SPF: fail") for line in lines)
    doc = json.loads(
        runner.invoke(
            app,
            [
                "antispam",
                "spf",
                "--json",
                "--ip",
                "198.51.100.7",
                "--sender",
                "<a@spf.test>",
                "-c",
                str(config),
            ],
        ).stdout
    )
    assert (doc["result"], doc["finding"], doc["mechanism"]) == ("pass", "SPF_PASS", "include:_spf.spf.test")
    assert "receiver=gw.example.org" in doc["received_spf"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ip", "300.1.1.1", "--sender", "a@spf.test"], "not an IPv4 or IPv6 address"),
        (["--ip", "192.0.2.1", "--sender", "a b@spf.test"], "not an envelope address"),
        (["--ip", "192.0.2.1", "--sender", ""], "give --helo"),
        (["--ip", "192.0.2.1", "--sender", "<>", "--helo", "bad\x01name"], "not a host name"),
    ],
)
def test_cli_bad_input_is_a_clear_error(nsd: Nsd, tmp_path: Path, args: list[str], message: str) -> None:
    out = CliRunner().invoke(app, ["antispam", "spf", *args, "-c", str(_config(tmp_path, nsd))])
    assert out.exit_code == 2
    assert message in out.stderr and "Traceback" not in out.output


def test_cli_missing_configuration_is_a_clear_error(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        app,
        ["antispam", "spf", "--ip", "192.0.2.1", "--sender", "a@spf.test", "-c", str(tmp_path / "none.toml")],
    )
    assert out.exit_code == 2 and "none.toml" in out.stderr


def test_cli_with_an_unreachable_resolver_prints_temperror(tmp_path: Path) -> None:
    config = tmp_path / "edgeward.toml"
    config.write_text(
        'accepted_domains = ["example.org"]\n[server]\ndata_dir = "."\n'
        f'[dns]\nservers = ["127.0.0.1"]\nport = {free_port()}\ntimeout = 0.5\n'
    )
    out = CliRunner().invoke(
        app, ["antispam", "spf", "--json", "--ip", "192.0.2.1", "--sender", "a@spf.test", "-c", str(config)]
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert (doc["result"], doc["finding"]) == ("temperror", "SPF_TEMPERROR")
    assert "spf.test" in doc["problem"]
