"""Role templates: the shipped ones validate, export and import round-trip, bad ones are refused."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.harden.template import TemplateError, load_template, parse_template, shipped_names


def test_shipped_roles() -> None:
    assert shipped_names() == ["edge", "edge-submission", "smarthost"]
    edge, sub, smart = (load_template(n) for n in shipped_names())
    assert edge.inbound_ports() == {22, 25}
    assert {25, 587, 465} <= sub.inbound_ports() and sub.gateway.submission
    assert all("0.0.0.0/0" not in p.sources for p in smart.inbound)
    assert not smart.gateway.internet_facing
    for t in (edge, sub, smart):
        assert t.sysctls["net.ipv4.tcp_syncookies"] == "1"
        assert {o.port for o in t.outbound} >= {25, 53, 443}


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "edgeward.toml"
    path.parent.mkdir()
    path.write_text('accepted_domains = ["example.test"]\n')
    return path


def test_export_then_import_under_a_new_name(tmp_path: Path) -> None:
    conf = _config(tmp_path)
    out = tmp_path / "site.toml"
    runner = CliRunner()
    done = runner.invoke(app, ["harden", "template", "export", "edge", "-c", str(conf), "--out", str(out)])
    assert done.exit_code == 0, done.output
    out.write_text(out.read_text().replace('name = "edge"', 'name = "site-edge"'))
    done = runner.invoke(app, ["harden", "template", "import", str(out), "-c", str(conf)])
    assert done.exit_code == 0, done.output
    stored = conf.parent / "templates" / "site-edge.toml"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o640
    if os.geteuid() == 0:
        assert (stored.stat().st_uid, stored.stat().st_gid) == (conf.stat().st_uid, conf.stat().st_gid)
    assert load_template("site-edge", conf).inbound_ports() == {22, 25}
    listed = runner.invoke(app, ["harden", "template", "list", "-c", str(conf)])
    as_json = runner.invoke(app, ["harden", "template", "list", "-c", str(conf), "--json"])
    assert {"name": "site-edge", "source": "imported"} in json.loads(as_json.output)
    assert "site-edge            imported" in listed.output
    again = runner.invoke(app, ["harden", "template", "import", str(out), "-c", str(conf)])
    assert again.exit_code == 2 and "exists" in again.output


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ('name = "x"\n[[inbound]]\nport = 70000\n', "inbound.0.port"),
        ('name = "x"\n[[inbound]]\nport = 25\nsources = ["10.0.0.0/33"]\n', "inbound.0.sources"),
        ('name = "x"\n[sysctls]\n"kernel.x" = "1; rm -rf /"\n', "sysctls"),
        ('name = "Bad Name"\n', "name"),
        ('name = "x"\nunknown = 1\n', "unknown"),
        ("name = \n", "not TOML"),
    ],
)
def test_bad_templates_are_refused_clearly(text: str, expect: str) -> None:
    with pytest.raises(TemplateError, match=expect):
        parse_template(text, "t.toml")


def test_import_of_a_bad_file_exits_2(tmp_path: Path) -> None:
    conf = _config(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[inbound]]\nport = 0\n')
    done = CliRunner().invoke(app, ["harden", "template", "import", str(bad), "-c", str(conf)])
    assert done.exit_code == 2 and "invalid template" in done.output
    assert not (conf.parent / "templates").exists()
