"""The effective agent pipeline as ``edgeward agents list`` and the web console show it.

Built the way the gateway builds it (``runtime_policy.build_agents``), with nothing started: the
policy store is opened only when it exists (a root shell or a console must not create the
SQLite file; without it the store-backed agents are listed in their place as off) or when it
is Redis, which lives outside this machine and is listed as the gateway runs it. The score
table is the built-in one with the ``[scores]`` overrides applied and marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeward.config.schema import Config

if TYPE_CHECKING:
    from edgeward.runtime_policy import ListedAgent

__all__ = ["Pipeline", "ScoreRow", "pipeline", "score_rows"]


@dataclass(frozen=True, slots=True)
class ScoreRow:
    name: str
    weight: float
    overridden: bool
    description: str


@dataclass(frozen=True, slots=True)
class Pipeline:
    config: Config
    rows: tuple[ListedAgent, ...]
    store_path: Path
    store_present: bool

    @property
    def mode(self) -> str:
        return "observe-only" if self.config.agents.observe_only else "enforcing"

    def document(self) -> dict[str, Any]:
        """What ``agents list --json`` prints."""
        from edgeward.filters.base import Stage, is_antispam
        from edgeward.filters.scoring import Thresholds
        from edgeward.runtime_policy import STORE_AGENTS

        redis = self.config.policy_store.backend == "redis"
        thresholds = Thresholds.from_config(self.config)
        return {
            "mode": self.mode,
            "timeout": self.config.agents.timeout,
            "policy_store": {
                "backend": self.config.policy_store.backend,
                "path": None if redis else str(self.store_path),
                "present": self.store_present,
            },
            "agents": [
                {
                    "name": row.name,
                    "stages": [s.value for s in Stage if row.agent and s in row.agent.stages],
                    "fail_open": bool(row.agent and row.agent.fail_open),
                    "exemptible": bool(row.agent and is_antispam(row.agent)),
                    "needs_policy_store": row.name in STORE_AGENTS,
                    "off": row.off or None,
                    "off_without_store": row.without_store or None,
                }
                for row in self.rows
            ],
            "thresholds": thresholds.values,
            "pcl_thresholds": thresholds.pcl,
            "scores": {
                r.name: {"weight": r.weight, "description": r.description} for r in score_rows(self.config)
            },
        }


def pipeline(config: Config) -> Pipeline:
    """The agents ``config`` runs, in their order."""
    from edgeward.queue.spool import Spool
    from edgeward.runtime_policy import build_agents, pipeline_listing
    from edgeward.state.policy import default_policy_path
    from edgeward.state.stores import policy_store_for

    spool = Spool(config.resolve(Path("queue")), fsync=False)
    store_path = default_policy_path(config.server.data_dir)
    redis = config.policy_store.backend == "redis"
    store = policy_store_for(config) if redis or store_path.exists() else None
    agents = build_agents(config, spool, policy_store=store)
    rows = pipeline_listing(config, agents, policy_store=store is not None)
    return Pipeline(config, tuple(rows), store_path, store is not None)


def score_rows(config: Config) -> list[ScoreRow]:
    from edgeward.config.scores import SCORE_TABLE

    return [
        ScoreRow(name, config.scores.get(name, d.weight), name in config.scores, d.description)
        for name, d in SCORE_TABLE.items()
    ]
