"""The edgeward table as rendered for each role, and the ports analyse reads back from a ruleset."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from edgeward.harden.host import table_ports
from edgeward.harden.nft import render_table
from edgeward.harden.template import load_template, shipped_names


def test_smarthost_opens_its_ports_to_internal_ranges_only() -> None:
    text = render_table(load_template("smarthost"))
    assert "policy drop;" in text
    assert "ip saddr { 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 } tcp dport { 22, 25, 587 } accept" in text
    assert "ip6 saddr fc00::/7 tcp dport { 22, 25, 587 } accept" in text
    assert "\t\ttcp dport" not in text  # nothing open to every address


@pytest.mark.parametrize("name", shipped_names())
def test_ports_read_back_are_the_templates(name: str) -> None:
    template = load_template(name)
    ruleset = "table ip other {\n\tchain c {\n\t\ttcp dport 9999 accept\n\t}\n}\n" + render_table(template)
    assert table_ports(ruleset) == template.inbound_ports()
    assert table_ports("table ip other {\n}\n") is None


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed")
@pytest.mark.parametrize("name", shipped_names())
def test_nft_accepts_the_table(name: str) -> None:
    # --check parses and validates without touching any ruleset.
    done = subprocess.run(["nft", "--check", "-f", "-"], input=render_table(load_template(name)),
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
