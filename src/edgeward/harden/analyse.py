"""``harden analyse``: the host and gateway checks against one role template, as one report.

Read-only and safe as any user. The configuration is loaded once; if it cannot be, that is a
finding (EW-CFG-000) and the host checks still run against the built-in defaults, so a broken
file never hides the rest. Findings are sorted by severity, then id.

The checks run as steps (each host check, the gateway, one per accepted domain's DNS, the
reverse DNS of the banner name) so the command can show a progress bar: a domain whose
resolver does not answer takes ``dns.timeout`` per query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeward.config.load import load_config
from edgeward.config.schema import Config
from edgeward.errors import ConfigError
from edgeward.harden.findings import Finding
from edgeward.harden.gateway import check_gateway
from edgeward.harden.host import Notes, host_steps
from edgeward.harden.template import RoleTemplate

__all__ = ["Progress", "Report", "analyse"]

Progress = Callable[[str, int, int], None]

_ORDER = {"high": 0, "medium": 1, "low": 2}


@dataclass
class Report:
    template: str
    findings: list[Finding]
    notes: Notes

    def as_dict(self) -> dict[str, object]:
        return {
            "template": self.template,
            "findings": [f.as_dict() for f in self.findings],
            "checked": self.notes.checked,
            "not_checked": self.notes.not_checked,
        }


def analyse(
    template: RoleTemplate, config_path: Path, *, dns: bool = True, progress: Progress | None = None
) -> Report:
    """Run every check; ``progress(what, done, total)`` is told before each step and at the end."""
    notes = Notes()
    findings: list[Finding] = []
    try:
        config: Config | None = load_config(config_path)
    except ConfigError as exc:
        findings.append(Finding("EW-CFG-000", str(exc)))
        config = None
    steps = host_steps(template, config or Config(), config_path, notes)
    if config is not None:
        gateway = config
        steps.append(("the gateway", lambda: check_gateway(gateway, template, config_path, notes)))
        if dns:
            from edgeward.harden.dns import dns_steps

            steps += dns_steps(config, notes)
        else:
            notes.not_checked.append("DNS of the accepted domains (--no-dns)")
    for done, (what, run) in enumerate(steps):
        if progress is not None:
            progress(what, done, len(steps))
        findings += run()
    if progress is not None:
        progress("done", len(steps), len(steps))
    findings.sort(key=lambda f: (_ORDER[f.rule.severity], f.id, f.found))
    return Report(template.name, findings, notes)
