"""The families and their label rules, counted in this process's memory (deltas, not totals)."""

from __future__ import annotations

from edgeward.metrics import (
    REGISTRY,
    BoundedLabel,
    agent_label,
    count_agent_outcome,
    count_message,
    finding_label,
    next_hop_label,
)
from edgeward.metrics.families import FAMILIES
from edgeward.ports import ScanItem
from edgeward.scanning.policy import Engine, MultiEnginePolicy
from edgeward.testing.scanner import FakeScanner


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_bounded_label_keeps_the_first_values_then_says_other() -> None:
    label = BoundedLabel(2)
    assert [label(v) for v in ("a.test", "b.test", "c.test", "a.test", "d.test")] == [
        "a.test", "b.test", "other", "a.test", "other",
    ]  # fmt: skip


def test_names_outside_the_fixed_sets_are_other() -> None:
    assert agent_label("relay-control") == "relay-control"
    assert agent_label("x" * 300) == "other"
    assert finding_label("RCPT_RELAY_DENIED") == "RCPT_RELAY_DENIED"
    assert finding_label("SCL_9") == "SCL_9"
    assert finding_label("CUSTOM_BAD_WORD:viagra") == "other"


def test_a_dns_route_is_its_domain_and_a_smart_host_its_connector() -> None:
    assert next_hop_label("inbound", "smarthost", "inbound[10.0.0.1:25]") == "inbound"
    assert next_hop_label("drop", "drop", "drop:/var/drop") == "drop"
    assert next_hop_label("internet", "dns", "remote.test") == "remote.test"


def test_tracking_events_count_under_the_dashboard_names() -> None:
    before = {e: value("edgeward_messages_total", event=e) for e in ("received", "delivered", "bounced")}
    for event in ("RECEIVE", "SEND", "DELIVER", "FAIL", "RECEIVE"):
        count_message(event)
    assert value("edgeward_messages_total", event="received") - before["received"] == 2
    assert value("edgeward_messages_total", event="delivered") - before["delivered"] == 2
    assert value("edgeward_messages_total", event="bounced") - before["bounced"] == 1


def test_an_outcome_counts_once_per_finding_and_none_without_one() -> None:
    def verdicts(finding: str) -> float:
        return value("edgeward_agent_verdicts_total", agent="relay-control", action="reject", finding=finding)

    denied, none = verdicts("RCPT_RELAY_DENIED"), verdicts("none")
    count_agent_outcome("relay-control", "reject", ("RCPT_RELAY_DENIED",))
    count_agent_outcome("relay-control", "reject", ())
    assert verdicts("RCPT_RELAY_DENIED") - denied == 1
    assert verdicts("none") - none == 1


def test_every_family_has_a_label() -> None:
    # Multiprocess mode depends on it (see metrics.process.enable): no value exists before enable.
    assert all(family._labelnames for family in FAMILIES)


async def test_each_engine_asked_is_timed_whether_it_answers_or_not() -> None:
    good, down = FakeScanner(name="good"), FakeScanner(name="broken")
    down.down = True
    policy = MultiEnginePolicy([Engine(good, 5.0), Engine(down, 5.0)], require="any")
    counts = {n: value("edgeward_scan_seconds_count", engine=n) for n in ("good", "broken")}
    report = await policy.scan([ScanItem(b"hello", "1", "a.txt", "text/plain", "text/plain")])
    assert report.answered == ("good",)
    assert value("edgeward_scan_seconds_count", engine="good") - counts["good"] == 1
    assert value("edgeward_scan_seconds_count", engine="broken") - counts["broken"] == 1
