"""The OpenSPF RFC 7208 conformance suite (release 2014.04, 203 tests) through the shipped DNS fake.

Each scenario's ``zonedata`` becomes a :class:`FakeResolver`; the suite's conventions are
those of its reference driver: a record of type SPF also stands for a TXT record unless the
name lists TXT records of its own, ``NONE`` is no record at all, and a ``TIMEOUT`` entry makes
every query for a type the name does not list time out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeward.ports import DnsAnswer, DnsError, DnsFailure
from edgeward.senderauth.spf import check_spf
from edgeward.testing.dns import FakeResolver

SUITE = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora" / "auth" / "openspf-rfc7208-tests.yml"
)


class SuiteResolver:
    """A FakeResolver whose ``TIMEOUT`` names time out only for the types they do not list."""

    def __init__(self, zonedata: dict[str, list[Any]]) -> None:
        self.fake = FakeResolver()
        self.listed: set[tuple[str, str]] = set()
        self.timeouts: set[str] = set()
        for name, entries in zonedata.items():
            self._load(name.lower().rstrip("."), entries)

    def _load(self, name: str, entries: list[Any]) -> None:
        has_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
        for entry in entries:
            if entry == "TIMEOUT":
                self.timeouts.add(name)
                continue
            for rdtype, value in entry.items():
                types = [rdtype] if rdtype != "SPF" or has_txt else ["SPF", "TXT"]
                for t in types:
                    if value == "NONE":
                        continue
                    self.listed.add((name, t))
                    if t in ("TXT", "SPF") and isinstance(value, list):
                        value = "".join(value)  # RFC 7208 §3.3: strings concatenated
                    elif t == "MX":
                        value = f"{value[0]} {value[1].rstrip('.').lower()}"
                    self.fake.add(name, t, str(value))

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        key = name.rstrip(".").lower()
        if key in self.timeouts and (key, rdtype.upper()) not in self.listed:
            raise DnsError(f"{key}/{rdtype}: DNS timeout", DnsFailure.TIMEOUT)
        return await self.fake.query(name, rdtype)


def _cases() -> list[Any]:
    cases = []
    with SUITE.open() as f:
        for scenario in yaml.safe_load_all(f):
            for name, test in scenario["tests"].items():
                cases.append(pytest.param(scenario["zonedata"], test, id=name))
    return cases


CASES = _cases()


def test_the_suite_has_all_its_tests() -> None:
    assert len(CASES) == 203


@pytest.mark.parametrize(("zonedata", "test"), CASES)
async def test_openspf_rfc7208(zonedata: dict[str, list[Any]], test: dict[str, Any]) -> None:
    result = await check_spf(
        SuiteResolver(zonedata), test["host"], test["mailfrom"], test["helo"], receiver="receiver.example"
    )
    expected = test["result"] if isinstance(test["result"], list) else [test["result"]]
    assert result.status.value in expected, result
    if "explanation" in test:
        # The suite's driver sets the default explanation to "DEFAULT": no exp= text applied.
        assert (result.explanation or "DEFAULT") == test["explanation"], result
