"""The dashboard page (``/dashboard``) and its figures as JSON (``/api/v1/stats``).

Both answer one window, the last hour, day or week (``?window=``, ``hour`` by default), from
``logs.stats``: the console's one :class:`~edgeward.logs.stats.TrackingStats` folds in what
the tracking logs gained since the last call, then the queue and the certificate store are
read as they are now. The page needs a session of either role (it changes nothing), the API
any token; a window that is none is a 400 (a page, or ``{"detail": ...}``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from edgeward.logs.stats import WINDOWS
from edgeward.tls.store import CertificateStore
from edgeward.web.api import token
from edgeward.web.app import Console, console_of
from edgeward.web.auth import ApiToken
from edgeward.web.charts import charts_for
from edgeward.web.figures import Dashboard, dashboard

__all__ = ["api_router", "router"]

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api/v1", tags=["v1"])
Window = Annotated[str, Query(max_length=16, description="hour, day or week")]


def figures(console: Console, window: str) -> Dashboard:
    """``ValueError`` for a window that is none."""
    config = console.config
    store = CertificateStore(config.resolve(config.tls.store))
    return dashboard(console.stats, console.quarantine.queue(), store, window, console.now())


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard_page(request: Request, window: Window = "hour") -> Response:
    console = console_of(request)
    session = console.require(request)
    try:
        board = figures(console, window)
    except ValueError:
        text = f"The window is one of {', '.join(WINDOWS)}."
        return console.message(request, "Unknown window", text, 400, session)
    return console.render(
        request, "dashboard.html", session=session, window=window, windows=list(WINDOWS), stats=board.stats,
        drawn=charts_for(board), certificates=board.certificates,
    )  # fmt: skip


class Count(BaseModel):
    name: str
    count: int


class Detection(BaseModel):
    finding: str
    signature: str
    count: int


class Certificate(BaseModel):
    thumbprint: str
    subject: str
    services: list[str]
    not_after: float = Field(description="Epoch seconds")
    days_left: float


class Stats(BaseModel):
    """One window's figures; ``series[name][i]`` counts the bucket starting at ``times[i]``."""

    window: str
    start: float = Field(description="Epoch seconds, inclusive")
    end: float = Field(description="Epoch seconds, exclusive (the end of the current minute)")
    bucket_seconds: int
    times: list[float] = Field(description="Start of each bucket, epoch seconds")
    series: dict[str, list[int]] = Field(
        description="received, delivered, rejected, quarantined, deferred, bounced: events per bucket"
    )
    totals: dict[str, int] = Field(description="Each series summed over the window")
    rejected_by_agent: list[Count]
    rejected_by_finding: list[Count]
    top_ips: list[Count]
    top_domains: list[Count]
    scl: list[int] = Field(description="Messages at SCL 0 to 9 (index = SCL)")
    av: list[Detection]
    damaged_lines: int = Field(description="Tracking lines skipped as unreadable since the console started")
    queue: dict[str, int] = Field(description="Messages in the queue by state, now")
    certificates: list[Certificate] = Field(description="Certificates in the store, soonest to expire first")


@api_router.get(
    "/stats",
    responses={401: {"description": "No valid API token"}, 400: {"description": "Not a window"}},
)
def stats(request: Request, _tok: Annotated[ApiToken, Depends(token)], window: Window = "hour") -> Stats:
    try:
        board = figures(console_of(request), window)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return Stats.model_validate(board.to_dict())
