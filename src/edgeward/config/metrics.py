"""The ``[metrics]`` settings: the receiving process's own Prometheus listener.

Decisions:

- Off by default (``listen = ""``): ``edgeward web`` already serves ``/metrics``; the own
  listener is for gateways that run without the console.
- Plain HTTP, as Prometheus scrapes exporters (node_exporter and the rest) on their own port;
  meant for loopback or a management network. Who may read is ``[web] metrics_allow``, the
  same networks as the console's ``/metrics``, so one setting says who may scrape.
- An address, not a name: what is bound is what is configured.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgeward.config.web import split_listen


class MetricsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    listen: str = Field(
        "",
        description="ADDR:PORT of a plain-HTTP /metrics listener in the receiving process "
        "(e.g. 127.0.0.1:9464; empty: off); readers as [web] metrics_allow",
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value:
            split_listen(value)
        return value
