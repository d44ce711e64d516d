"""``edgeward rules``: the transport rules from a shell.

* ``list [-c CONFIG] [--json]``: the rules in evaluation order, with their conditions,
  exceptions, actions and whether they stop the evaluation.
* ``test MESSAGE [-c CONFIG] [--json] [--sender ADDR] [--recipient ADDR ...] [--direction
  inbound|outbound] [--scl N] [--show]``: which rules match the message and what they would do,
  with the same evaluator and transform the gateway runs (``transport-rules``,
  ``filters.transforms.rules``), the texts the matched rules log (LogEventText) and the copies
  they record (CopyTo); ``--show`` prints the message as it would leave.

Exit codes: 0 the message would be accepted, 1 a rule refuses, holds or disconnects it, 2 bad
input.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from edgeward.cli.queue import ConfigOption, console, fail, load
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.config.rules import GROUPS_FILE, RuleConditions, TransportRule, ordered
from edgeward.filters.agents.transport_rules import decide
from edgeward.filters.base import SessionInfo
from edgeward.filters.message import MessageView
from edgeward.filters.rules.conditions import MessageFacts, RuleSet
from edgeward.filters.rules.groups import FileGroups
from edgeward.filters.transforms.base import Accepted
from edgeward.filters.transforms.rules import RuleChanges, parse_address
from edgeward.filters.verdict import Verdict
from edgeward.headers import parse_headers
from edgeward.types import Action, Peer

rules_app = typer.Typer(help="Transport rules: list, test.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
MAX_INPUT = 256 * 1024 * 1024


def _conditions(c: RuleConditions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in c.given():
        value = getattr(c, name)
        if name == "headers":
            value = [h.model_dump(exclude_defaults=True) for h in value]
        out[name.rstrip("_")] = list(value) if isinstance(value, tuple) else value
    return out


def describe(rule: TransportRule, order: int) -> dict[str, Any]:
    return {
        "order": order, "name": rule.name, "priority": rule.priority, "enabled": rule.enabled,
        "conditions": _conditions(rule.conditions), "exceptions": _conditions(rule.exceptions),
        "actions": rule.actions.model_dump(exclude_defaults=True), "stop": rule.stop,
    }  # fmt: skip


def _short(d: dict[str, Any]) -> str:
    return "; ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in d.items()) or "-"


@rules_app.command("list")
def list_rules(config: ConfigOption = DEFAULT_CONFIG_PATH, as_json: JsonOption = False) -> None:
    """The rules in the order they are evaluated (priority, then file order)."""
    cfg = load(config)
    rows = [describe(r, i) for i, r in enumerate(ordered(cfg.rules), 1)]
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        console().print("no transport rules ([[rules]] in the configuration)")
        return
    table = Table("#", "name", "prio", "on", "conditions", "exceptions", "actions", "stop")
    for r in rows:
        on = "yes" if r["enabled"] else "no"
        table.add_row(str(r["order"]), Text(r["name"]), str(r["priority"]), on, Text(_short(r["conditions"])),
                      Text(_short(r["exceptions"])), Text(_short(r["actions"])), "yes" if r["stop"] else "")
    console().print(table)


@rules_app.command("test")
def test_rules(
    message: Annotated[Path, typer.Argument(help="A message file (.eml).")],
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    as_json: JsonOption = False,
    sender: Annotated[str, typer.Option("--sender", help="Envelope sender.")] = "",
    recipient: Annotated[list[str] | None, typer.Option("--recipient", help="Envelope recipient.")] = None,
    direction: Annotated[str, typer.Option("--direction", help="inbound or outbound.")] = "inbound",
    scl: Annotated[int | None, typer.Option("--scl", help="The SCL the content filter gave.")] = None,
    show: Annotated[bool, typer.Option("--show", help="Print the message as it would leave.")] = False,
) -> None:
    """Which rules match MESSAGE and what they would do."""
    cfg = load(config)
    if direction not in ("inbound", "outbound"):
        fail("--direction is inbound or outbound")
    try:
        with message.open("rb") as f:
            raw = f.read(MAX_INPUT + 1)
    except OSError as exc:
        fail(f"{message}: cannot read ({exc.strerror})")
    if len(raw) > MAX_INPUT:
        fail(f"{message}: larger than {MAX_INPUT} bytes")
    data = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    headers = parse_headers(data)
    rcpts = tuple(parse_address(r) for r in (recipient or [])) or (parse_address("postmaster@localhost"),)
    mail_from = parse_address(sender) if sender else None
    facts = MessageFacts.of(MessageView(data, headers), sender=mail_from, recipients=rcpts,
                            direction=direction, scl=scl)  # fmt: skip
    ruleset = RuleSet(cfg.rules, FileGroups.read(cfg.resolve(GROUPS_FILE)))
    matches = asyncio.run(ruleset.evaluate(facts))
    outcome = decide(matches)
    verdict = Verdict(outcome.action, outcome.reply, outcome.findings, (), 0.0, "rules test")
    info = SessionInfo("test", Peer("127.0.0.1", 0), cfg.receive_connectors[0])
    accepted = Accepted("TEST", info, cfg.server.hostname, rcpts, verdict, mail_from=mail_from)
    changes = RuleChanges(cfg.rules)
    refused = outcome.action in (Action.REJECT, Action.TEMPFAIL, Action.DISCONNECT)
    out_rcpts = accepted.recipients if refused else changes.recipients(accepted)
    result = data if refused else changes.apply(data, accepted)
    matched = [
        {"name": m.rule.name, "held": [h.rstrip("_") for h in m.held],
         "actions": _short(m.rule.actions.model_dump(exclude_defaults=True))}
        for m in matches
    ]  # fmt: skip
    report: dict[str, Any] = {
        "matched": matched,
        "action": outcome.action.value, "reply": str(outcome.reply) if outcome.reply else None,
        "recipients": [str(r) for r in out_rcpts], "changed": result != data,
        # What the gateway would log (LogEventText) and record as copies (CopyTo), by rule.
        "logged": [f.detail for f in outcome.findings if f.name == "RULE_LOG_EVENT"],
        "copied": [f.detail for f in outcome.findings if f.name == "RULE_COPY_TO"],
    }  # fmt: skip
    if as_json:
        if show:
            report["message"] = result.decode("utf-8", "replace")
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        if not matches:
            console().print("no rule matches")
        for m in matched:
            on = ", ".join(m["held"]) or "every message"
            console().print(Text(f"matched {m['name']} (on {on}): {m['actions']}"))
        reply = f" ({report['reply']})" if report["reply"] else ""
        console().print(Text(f"action: {report['action']}{reply}"))
        console().print(Text(f"recipients: {', '.join(report['recipients'])}"))
        for line in report["logged"]:
            console().print(Text(f"logged: {line}"))
        for line in report["copied"]:
            console().print(Text(f"copied (Cc): {line}"))
        if show:
            typer.echo(result.decode("utf-8", "replace"))
    raise typer.Exit(1 if outcome.action is not Action.CONTINUE else 0)
