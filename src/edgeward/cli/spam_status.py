"""``edgeward spam status``: where the content model came from, what it learned, and when.

Reads the gateway's live model store (``state/content-model.db``) without creating it: the
model's origin (the live store's version over the model file, or the file alone: its SHA-256,
date and, for the shipped model, the command that rebuilds it), the learning switches of
``[learning]``, the ledger of lessons by path (reply, correspondent, release, report, trap,
manual: ham and spam counts, the last one's time), and the learning worker's queue as it last
reported it (waiting, dropped when full, GTUBE messages skipped).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edgeward.config.load import DEFAULT_CONFIG_PATH, load_config
from edgeward.config.schema import Config
from edgeward.content.classifier import default_model_path
from edgeward.content.model import LinearModel, ModelFormatError
from edgeward.content.sitelearn import PATHS
from edgeward.content.state import SqliteModelStateStore
from edgeward.errors import ConfigError

__all__ = ["TRAIN_COMMAND", "status", "status_report"]

# How the shipped model is rebuilt byte for byte (tests/content/test_shipped_model.py holds it).
TRAIN_COMMAND = (
    "edgeward spam train --corpora ../shared/corpora --out src/edgeward/content/data/default-model.npz"
)


def _when(at: float | None) -> str:
    if not at:
        return ""
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="seconds")


def _file_origin(path: Path, shipped: bool) -> dict[str, Any]:
    blob = path.read_bytes()
    origin: dict[str, Any] = {
        "model_file": str(path),
        "shipped": shipped,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "file_date": _when(path.stat().st_mtime),
    }
    if shipped:
        origin["train_command"] = TRAIN_COMMAND
    return origin


def status_report(config: Config) -> dict[str, Any]:
    """Everything ``spam status`` prints, as one JSON-ready mapping."""
    from edgeward.paths import content_state_path

    cf, learning = config.agents.content_filter, config.learning
    model_path = config.resolve(cf.model) if cf.model is not None else default_model_path()
    origin = _file_origin(model_path, shipped=cf.model is None)
    origin.update(source="file", live_version=0, updates_learned=0)
    learned: dict[str, dict[str, Any]] = {p: {"ham": 0, "spam": 0, "last": ""} for p in PATHS}
    queue: dict[str, Any] = {"pending": 0, "dropped": 0, "skipped": 0, "as_of": ""}
    state = content_state_path(config)
    if state.exists():
        with SqliteModelStateStore(state) as store:
            stored = store.get("default")
            if stored is not None:
                model = LinearModel.from_bytes(stored.blob)
                origin.update(source="live", live_version=stored.version, updates_learned=model.learned)
            for row in store.learned_counts():
                entry = learned.setdefault(row.path, {"ham": 0, "spam": 0, "last": ""})
                entry[row.label] = row.count
                entry["last"] = max(entry["last"], _when(row.last_at))
            for name, (value, at) in store.gauges().items():
                queue[name] = value
                queue["as_of"] = max(queue["as_of"], _when(at))
    switches = {
        "enabled": learning.enabled and cf.learning,
        "reply": learning.replies,
        "correspondent": learning.correspondents,
        "release": learning.releases,
        "report": learning.reports,
        "trap": learning.traps,
        "manual": cf.learning,
    }
    return {
        "origin": origin,
        "state": str(state),
        "learning": switches,
        "learned": learned,
        "queue": queue,
    }


ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Configuration file.")]


def status(
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The model's origin, what it learned from the site's mail by path and when, the queue."""
    err = Console(stderr=True)
    try:
        report = status_report(load_config(config_path))
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except (OSError, ModelFormatError) as exc:
        err.print(f"[red]error:[/red] cannot read the model or its state: {exc}")
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    out = Console()
    origin = report["origin"]
    head = Table(title="content model", show_header=False)
    if origin["source"] == "live":
        head.add_row("origin", f"live model, version {origin['live_version']} "
                     f"({origin['updates_learned']} learning updates) over the file below")  # fmt: skip
    else:
        head.add_row("origin", "model file (nothing learned yet)")
    for key in ("model_file", "sha256", "file_date", "train_command"):
        if key in origin:
            head.add_row(key.replace("_", " "), str(origin[key]))
    head.add_row("state", report["state"])
    on = [name for name, value in report["learning"].items() if value and name != "enabled"]
    head.add_row("learning", ("on: " + ", ".join(on)) if report["learning"]["enabled"] else "off")
    queue = report["queue"]
    head.add_row("queue", f"{queue['pending']} waiting, {queue['dropped']} dropped, "
                 f"{queue['skipped']} GTUBE skipped (as of {queue['as_of'] or 'never'})")  # fmt: skip
    out.print(head)
    table = Table("path", "ham", "spam", "last", title="learned")
    for path, row in report["learned"].items():
        table.add_row(path, str(row["ham"]), str(row["spam"]), row["last"] or "-")
    out.print(table)
