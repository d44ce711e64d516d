"""Scores and thresholds: what a finding weighs, and what a total does.

``ScoreTable`` is the shipped catalogue (``config/scores.py``) with the operator's ``[scores]``
overrides laid over it. ``Thresholds`` turns a total into an action, checked from the most
severe down: discard, reject, tempfail, quarantine, stamp. Each is off unless set.

The ``[policy]`` thresholds reject, quarantine and discard default to the content filter's SCL
settings (``reject_threshold`` when ``reject_enabled``, and so on) taken through the score
table: the total is the weight of ``SCL_<threshold>``, so content alone acts exactly at that SCL
(as it did before the score table existed) and other findings add to a lower SCL. Setting a
``[policy]`` threshold (a number, or ``"off"``) takes over from the content filter's.

Phishing has thresholds of its own, on the phishing confidence level rather than the total
(``pcl_reject``, ``pcl_quarantine``): a message whose links and wording are a credential lure
is held even when its spam total is low, because phishing should not wait for a spam score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from edgeward.config.schema import Config, Threshold
from edgeward.config.scores import SCORE_TABLE
from edgeward.types import Action, Finding, Reply

TEMPFAILED = Reply(451, "4.7.1", "Message deferred by policy, try again later")
SPAM_REJECTED_TEXT = "Message rejected as spam"
# Actions a threshold can take, from the most severe down; "stamp" only adds the spam flag.
ORDER = ("discard", "reject", "tempfail", "quarantine", "stamp")
# The actions a phishing level can take, most severe first.
PCL_ORDER = ("reject", "quarantine")
_ACTIONS = {
    "discard": Action.DISCARD,
    "reject": Action.REJECT,
    "tempfail": Action.TEMPFAIL,
    "quarantine": Action.QUARANTINE,
    "stamp": Action.CONTINUE,
}


class ScoreTable:
    """Weights by finding name: the shipped defaults with the configuration's overrides."""

    def __init__(self, overrides: Mapping[str, float] | None = None) -> None:
        self.weights = {name: d.weight for name, d in SCORE_TABLE.items()}
        self.overridden = frozenset(overrides or ())
        self.weights.update(overrides or {})

    def weight(self, name: str) -> float:
        # A name missing from the catalogue is a bug in the agent, not a reason to lose mail.
        return self.weights.get(name, 0.0)

    def scored(self, finding: Finding, stage: str) -> Finding:
        return replace(finding, score=self.weight(finding.name), stage=finding.stage or stage)


@dataclass(frozen=True, slots=True)
class ThresholdHit:
    """The rule a total crossed: its name, its value, and the action it takes."""

    name: str
    value: float
    action: Action


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The effective thresholds, by action name; ``None`` is off."""

    values: Mapping[str, float | None]
    rejection: Reply
    # Phishing thresholds by action name ("reject", "quarantine"): a PCL, or None for off.
    pcl: Mapping[str, int | None] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config) -> Thresholds:
        policy, cf = config.policy, config.agents.content_filter
        table = ScoreTable(config.scores)

        def scl(level: int, enabled: bool) -> float | None:
            return table.weight(f"SCL_{level}") if enabled else None

        inherited: dict[str, float | None] = {
            "discard": scl(cf.delete_threshold, cf.delete_enabled),
            "reject": scl(cf.reject_threshold, cf.reject_enabled),
            "quarantine": scl(cf.quarantine_threshold, cf.quarantine_enabled),
            "tempfail": None,
            "stamp": None,
        }
        values = {name: _resolve(getattr(policy, name), inherited[name]) for name in ORDER}
        # With the content filter off, the total is other agents' findings: don't name it.
        text = policy.rejection_response or (cf.rejection_response if cf.enabled else SPAM_REJECTED_TEXT)
        pcl = {name: _level(getattr(policy, f"pcl_{name}")) for name in PCL_ORDER}
        return cls(values, Reply(550, "5.7.1", text), pcl)

    def hit(self, total: float) -> ThresholdHit | None:
        """The most severe threshold ``total`` reaches, or ``None``."""
        for name in ORDER:
            value = self.values.get(name)
            if value is not None and total >= value:
                return ThresholdHit(name, value, _ACTIONS[name])
        return None

    def phishing_hit(self, pcl: int) -> ThresholdHit | None:
        """The most severe phishing threshold a phishing level reaches, or ``None``."""
        for name in PCL_ORDER:
            value = self.pcl.get(name)
            if value is not None and pcl >= value:
                return ThresholdHit(f"pcl_{name}", value, _ACTIONS[name])
        return None

    def flagged(self, total: float) -> bool:
        """Whether the spam flag is stamped: the stamp threshold, when set, is reached."""
        value = self.values.get("stamp")
        return value is not None and total >= value


def _resolve(value: Threshold, inherited: float | None) -> float | None:
    if value == "off":
        return None
    if value is None:
        return inherited
    return float(value)


def _level(value: int | str) -> int | None:
    return None if value == "off" else int(value)


def severity(action: Action) -> int:
    """Rank of an action a threshold takes: lower is more severe (the order of ``ORDER``)."""
    names = [name for name in ORDER if _ACTIONS[name] is action]
    return ORDER.index(names[0]) if names else len(ORDER)
