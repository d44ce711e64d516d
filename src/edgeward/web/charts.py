"""The dashboard's charts: geometry computed here, SVG written by ``templates/charts.html``.

The console has no script (``script-src 'none'``), so charts are inline SVG drawn on the
server. This module turns figures into numbers only (coordinates, tick positions, counts) and
leaves every label as the plain string it came as; the template puts labels into ``<text>``
and ``<title>`` elements through Jinja's autoescape and ``clean()`` (which shows control and
bidi characters as ``\\uNNNN``), so an IP, a domain or a reason from mail never becomes markup.
Nothing here builds markup by concatenation. Colours are SVG presentation attributes, which
the CSP's ``style-src 'self'`` does not govern (it forbids ``style=`` attributes, not these).

Every chart carries ``class="chart"``, ``data-series`` (its name) and ``data-points`` (how
many of its points or bars are not zero), and comes with a table of the same figures, for
readers that cannot see the drawing and for tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from edgeward.logs.stats import SERIES
from edgeward.web.figures import Dashboard

__all__ = ["AreaChart", "BarChart", "DashboardCharts", "area_chart", "bar_chart", "charts_for", "histogram"]

WIDTH, HEIGHT = 420, 150
_LEFT, _RIGHT, _TOP, _BOTTOM = 34, 8, 10, 20
_LABEL_MAX = 26  # characters of a label drawn; the full one is in the bar's <title> and the table
_BAR_ROW = 18
_BAR_LABEL = 178  # room for the labels of horizontal bars
COLOURS = {"received": "#1d6fb8", "delivered": "#2a9d4b", "rejected": "#c0392b", "quarantined": "#b7791f",
           "deferred": "#7b5ea7", "bounced": "#5d6d7e"}  # fmt: skip
TITLES = {"received": "Received", "delivered": "Delivered", "rejected": "Rejected",
          "quarantined": "Quarantined", "deferred": "Deferred", "bounced": "Bounced"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True, slots=True)
class AreaChart:
    series: str
    title: str
    colour: str
    line: str  # polyline points: numbers only
    area: str
    points: int  # non-zero points
    total: int
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    rows: tuple[tuple[str, int], ...]  # (bucket start, count) for the table
    width: int = WIDTH
    height: int = HEIGHT
    left: int = _LEFT
    right: int = WIDTH - _RIGHT
    bottom: int = HEIGHT - _BOTTOM


@dataclass(frozen=True, slots=True)
class Bar:
    label: str  # as it came: escaped by the template
    short: str  # what is drawn (cut to _LABEL_MAX)
    value: int
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True, slots=True)
class BarChart:
    series: str
    title: str
    vertical: bool
    bars: tuple[Bar, ...]
    points: int
    width: int
    height: int
    heading: str  # the table's first column


def _nice(peak: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above ``peak`` (at least 1)."""
    if peak <= 1:
        return 1
    power = int(10 ** math.floor(math.log10(peak)))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= peak)


def _stamp(when: float, fmt: str) -> str:
    return datetime.fromtimestamp(when, UTC).strftime(fmt)


def area_chart(series: str, times: list[float], values: list[int], bucket_seconds: int) -> AreaChart:
    """A line with the area under it, one point per bucket, oldest on the left."""
    n = len(values)
    top = _nice(max(values, default=0))
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    step = plot_w / (n - 1) if n > 1 else 0.0
    xy = [(_LEFT + i * step, _TOP + plot_h * (1 - v / top)) for i, v in enumerate(values)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    base = _TOP + plot_h
    area = f"{_LEFT:.1f},{base:.1f} {line} {_LEFT + (n - 1) * step:.1f},{base:.1f}" if n else ""
    fmt = "%a %H:%M" if bucket_seconds >= 3600 else "%H:%M"
    x_ticks = tuple(Tick(xy[i][0], _stamp(times[i], fmt)) for i in range(0, n, max(1, n // 4)))
    y_ticks = tuple(Tick(_TOP + plot_h * (1 - f), f"{top * f:g}") for f in (0.0, 0.5, 1.0))
    rows = tuple((_stamp(t, "%Y-%m-%d %H:%M"), v) for t, v in zip(times, values, strict=True))
    return AreaChart(series, TITLES.get(series, series), COLOURS.get(series, "#1d6fb8"), line, area,
                     sum(1 for v in values if v), sum(values), y_ticks, x_ticks, rows)  # fmt: skip


def _short(label: str) -> str:
    return label if len(label) <= _LABEL_MAX else label[: _LABEL_MAX - 1] + "\u2026"


def bar_chart(series: str, title: str, items: list[tuple[str, int]], heading: str = "Name") -> BarChart:
    """Horizontal bars, one row per item, the label on the left: for top lists."""
    top = max((v for _, v in items), default=0) or 1
    room = WIDTH - _BAR_LABEL - _RIGHT - 36  # and room for the count after the bar
    bars = tuple(
        Bar(label, _short(label), value, _BAR_LABEL, 4 + i * _BAR_ROW, room * value / top, _BAR_ROW - 6)
        for i, (label, value) in enumerate(items)
    )
    height = 8 + max(1, len(items)) * _BAR_ROW
    return BarChart(series, title, False, bars, sum(1 for b in bars if b.value), WIDTH, height, heading)


def histogram(series: str, title: str, labels: list[str], values: list[int], heading: str) -> BarChart:
    """Vertical bars over a fixed set of labels (the SCL 0-9)."""
    top = _nice(max(values, default=0))
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(1, len(values))
    bars = tuple(
        Bar(label, label, v, _LEFT + i * slot + slot * 0.15, _TOP + plot_h * (1 - v / top), slot * 0.7,
            plot_h * v / top)
        for i, (label, v) in enumerate(zip(labels, values, strict=True))
    )  # fmt: skip
    return BarChart(series, title, True, bars, sum(1 for v in values if v), WIDTH, HEIGHT, heading)


@dataclass(frozen=True, slots=True)
class DashboardCharts:
    series: tuple[AreaChart, ...]
    scl: BarChart
    bars: tuple[BarChart, ...]


def charts_for(board: Dashboard) -> DashboardCharts:
    s = board.stats
    series = tuple(area_chart(name, s.times, s.series[name], s.bucket_seconds) for name in SERIES)
    scl = histogram("scl", "Spam confidence level (SCL)", [str(n) for n in range(10)], s.scl, "SCL")
    av = [(f"{finding} {signature}".strip(), n) for finding, signature, n in s.av]
    bars = (
        bar_chart("rejected-by-agent", "Rejections by agent", s.rejected_by_agent, "Decided by"),
        bar_chart("rejected-by-finding", "Rejections by finding", s.rejected_by_finding, "Finding"),
        bar_chart("top-ips", "Top sending IPs", s.top_ips, "Client IP"),
        bar_chart("top-domains", "Top sender domains", s.top_domains, "Domain"),
        bar_chart("av", "AV detections", av, "Finding and signature"),
        bar_chart("queue", "Queue depth", list(board.queue.items()), "State"),
    )
    return DashboardCharts(series, scl, bars)
