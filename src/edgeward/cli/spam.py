"""``edgeward spam``: train, evaluate, run and teach the content classifier.

Owns the command-line face of :mod:`edgeward.content`; decisions live there, this module parses
options, reads messages (files, folders, mbox files, ``.tar.gz`` archives) and prints.

* ``train PATH... [--ham P] [--spam P] [--out MODEL]``: labels come from ``--ham``/``--spam``, or
  for positional paths from the path naming "ham" or "spam"; ``--corpora DIR`` adds the train
  split of the shared corpora (:mod:`edgeward.content.corpora`). Deterministic for the same
  input. The shipped model is rebuilt with::

      edgeward spam train --corpora ../shared/corpora --out src/edgeward/content/data/default-model.npz

* ``eval --ham P --spam P [--model M] [--roc-png FILE]``: precision, recall and FP rate at the
  reject threshold (SCL >= 7), ROC AUC, recall at 0.1 % and 1 % FP, counts per SCL.
  ``eval --corpora DIR``: the same per source on the dev split (SCL >= 7 and >= 4, ROC AUC).
* ``classify PATH... [--json] [-c CONFIG]``: one line per message: name, SCL, PCL, probability,
  findings; with ``-c`` rated as that gateway rates (its live model and custom words).
* ``learn --spam|--ham PATH... [--state DB]``: update the live model in the state store.
* ``status [-c CONFIG] [--json]``: the model's origin, what it learned by path and when, the
  learning queue (:mod:`edgeward.cli.spam_status`).

Exit codes: 0 success, 2 bad input (no messages, unlabelled path, unreadable or invalid model).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgeward.cli.tables import add_id_column, print_table
from edgeward.content.classifier import SpamClassifier, default_model_path
from edgeward.content.devreport import REJECT_SCL
from edgeward.content.evaluate import evaluate_scores, write_roc_png
from edgeward.content.model import ModelFormatError
from edgeward.content.sources import count_messages, iter_messages, label_from_path
from edgeward.content.state import SqliteModelStateStore

spam_app = typer.Typer(
    name="spam",
    help="Train, evaluate and run the spam and phishing classifier.",
    no_args_is_help=True,
    add_completion=False,
)


ModelOption = Annotated[
    Path | None, typer.Option("--model", help="Model file (.npz); default: the model shipped in the package.")
]
CorporaOption = Annotated[
    Path | None,
    typer.Option(
        "--corpora",
        help="The shared corpora folder: use its SpamAssassin split and the seeded split of modern/.",
    ),
]
PathList = Annotated[list[Path] | None, typer.Option(help="File, folder, mbox or .tar.gz (repeatable).")]


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def _check_paths(paths: list[Path]) -> None:
    for path in paths:
        if not path.exists():
            raise _fail(f"no such file or folder: {path}")


def _load(model: Path | None) -> SpamClassifier:
    try:
        return SpamClassifier.load(model, learning=False)
    except (OSError, ModelFormatError) as exc:
        raise _fail(f"cannot load model {model or default_model_path()}: {exc}") from exc


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _labelled(paths: list[Path], ham: list[Path], spam: list[Path]) -> list[tuple[Path, bool]]:
    labelled = [(p, False) for p in ham] + [(p, True) for p in spam]
    for path in paths:
        label = label_from_path(str(path))
        if label is None:
            raise _fail(f"cannot tell whether {path} is ham or spam: use --ham/--spam")
        labelled.append((path, label))
    return labelled


def _corpus_train(root: Path) -> list[tuple[bytes, bool, float]]:
    from edgeward.content.corpora import training_items

    try:
        return training_items(root)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from exc


@spam_app.command()
def train(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Inputs whose path names 'ham' or 'spam'.")
    ] = None,
    ham: PathList = None,
    spam: PathList = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the model.")] = Path("content-model.npz"),
    # Same values as edgeward.content.train.DEFAULT_C / DEFAULT_BITS (not imported here: that
    # module pulls in scipy, which every other command can do without).
    c: Annotated[float, typer.Option("--c", help="Inverse regularisation strength.", min=1e-4)] = 300.0,
    bits: Annotated[
        int, typer.Option("--bits", help="log2 of the hashed feature space.", min=12, max=24)
    ] = 20,
    corpora: CorporaOption = None,
) -> None:
    """Train a model from labelled messages (deterministic)."""
    from edgeward.content.train import train_model

    labelled = _labelled(paths or [], ham or [], spam or [])
    _check_paths([p for p, _ in labelled])
    extra = _corpus_train(corpora) if corpora is not None else []
    if not labelled and not extra:
        raise _fail("nothing to train on: give --ham and --spam paths or --corpora")
    console = Console(stderr=True)
    counts = [count_messages(p) for p, _ in labelled]
    total = None if None in counts else sum(n for n in counts if n is not None) + len(extra)

    def messages() -> Iterator[tuple[bytes, bool] | tuple[bytes, bool, float]]:
        yield from extra
        for path, is_spam in labelled:
            for _, raw in iter_messages(path):
                yield raw, is_spam

    with _progress(console) as progress:
        task = progress.add_task("training", total=total)
        try:
            model = train_model(messages(), bits=bits, c=c, progress=lambda: progress.advance(task))
        except ValueError as exc:
            raise _fail(str(exc)) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model.to_bytes())
    typer.echo(f"wrote {out} ({out.stat().st_size} bytes, {2**bits} slots)")


def _score_all(
    classifier: SpamClassifier, paths: list[Path], progress: Progress, label: str
) -> list[tuple[float, int]]:
    results: list[tuple[float, int]] = []
    task = progress.add_task(label, total=None)
    for path in paths:
        for _, raw in iter_messages(path):
            verdict = classifier.score(raw)
            results.append((verdict.probability, verdict.scl))
            progress.advance(task)
    return results


@spam_app.command("eval")
def evaluate(
    ham: Annotated[list[Path] | None, typer.Option(help="Ham input (repeatable).")] = None,
    spam: Annotated[list[Path] | None, typer.Option(help="Spam input (repeatable).")] = None,
    model: ModelOption = None,
    corpora: Annotated[
        Path | None,
        typer.Option("--corpora", help="Report per source on the dev split of this corpora folder."),
    ] = None,
    roc_png: Annotated[Path | None, typer.Option("--roc-png", help="Write the ROC curve here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Measure a model on labelled messages."""
    ham, spam = ham or [], spam or []
    _check_paths([*ham, *spam])
    classifier = _load(model)
    if corpora is not None:
        _dev_report(classifier, corpora, as_json)
        return
    if not ham or not spam:
        raise _fail("give --ham and --spam, or --corpora")
    console = Console(stderr=True)
    with _progress(console) as progress:
        ham_results = _score_all(classifier, ham, progress, "ham")
        spam_results = _score_all(classifier, spam, progress, "spam")
    if not ham_results or not spam_results:
        raise _fail("evaluation needs at least one ham and one spam message")
    # Score by SCL first, probability second: the SCL includes rules (GTUBE, words, phishing).
    report = evaluate_scores(
        [scl + p for p, scl in ham_results],
        [scl + p for p, scl in spam_results],
        threshold=REJECT_SCL,
        ham_scl=[s for _, s in ham_results],
        spam_scl=[s for _, s in spam_results],
    )
    if roc_png is not None:
        write_roc_png({"edgeward": (report.fpr_curve, report.tpr_curve)}, roc_png)
    summary = {
        "ham": report.n_ham,
        "spam": report.n_spam,
        "roc_auc": round(report.roc_auc, 5),
        "recall_at_0.1%_fp": round(report.recall_at_fpr[0.001], 4),
        "recall_at_1%_fp": round(report.recall_at_fpr[0.01], 4),
        f"precision_scl>={REJECT_SCL}": round(report.precision, 4),
        f"recall_scl>={REJECT_SCL}": round(report.recall, 4),
        f"fp_rate_scl>={REJECT_SCL}": round(report.fpr, 5),
        "scl_table": {str(k): {"ham": v[0], "spam": v[1]} for k, v in report.scl_table.items()},
    }
    if as_json:
        typer.echo(json.dumps(summary, sort_keys=True))
        return
    out = Console()
    metrics = Table(title="content classifier", show_header=False)
    for key, value in summary.items():
        if key != "scl_table":
            metrics.add_row(key, str(value))
    out.print(metrics)
    table = Table("SCL", "ham", "spam", title="messages per SCL")
    for level, (n_ham, n_spam) in report.scl_table.items():
        table.add_row(str(level), str(n_ham), str(n_spam))
    out.print(table)


def _dev_report(classifier: SpamClassifier, root: Path, as_json: bool) -> None:
    from edgeward.content.corpora import corpus_sets
    from edgeward.content.devreport import NEAR_REJECT_SCL, QUARANTINE_SCL, dev_report

    try:
        sets = corpus_sets(root)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from exc

    def scorer(raw: bytes) -> tuple[float, int]:
        verdict = classifier.score(raw)
        return verdict.scl + verdict.probability, verdict.scl

    figures = dev_report(sets, scorer)
    rows = [
        {
            "source": f.source,
            "label": "spam" if f.is_spam else "ham",
            "messages": f.count,
            f"share_scl>={REJECT_SCL}": round(f.at_reject, 4),
            f"share_scl>={NEAR_REJECT_SCL}": round(f.at_near_reject, 4),
            f"share_scl>={QUARANTINE_SCL}": round(f.at_quarantine, 4),
            "roc_auc": round(f.roc_auc, 5),
        }
        for f in figures
    ]
    if as_json:
        typer.echo(json.dumps(rows, sort_keys=True))
        return
    table = Table(title="dev split (ham: false-positive rate; spam: recall)")
    add_id_column(table, "source")
    for header in ("label", "messages", f"SCL>={REJECT_SCL} (reject)", f"SCL>={NEAR_REJECT_SCL}",
                   f"SCL>={QUARANTINE_SCL} (quarantine)", "ROC AUC"):  # fmt: skip
        table.add_column(header)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    print_table(Console(), table, keep=[str(r["source"]) for r in rows])


@spam_app.command()
def classify(
    paths: Annotated[list[Path], typer.Argument(help="Messages: files, folders, mbox or .tar.gz.")],
    model: ModelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Rate as this gateway does: its live model and custom words (overrides --model).",
        ),
    ] = None,
) -> None:
    """Rate messages: SCL, PCL, probability and the strongest findings."""
    _check_paths(paths)
    classifier = _load(model) if config_path is None else _gateway_classifier(config_path)
    for path in paths:
        for name, raw in iter_messages(path):
            verdict = classifier.score(raw)
            findings = [[n, round(w, 3)] for n, w in verdict.findings[:5]]
            if as_json:
                record = {
                    "path": name,
                    "scl": verdict.scl,
                    "pcl": verdict.pcl,
                    "probability": round(verdict.probability, 5),
                    "findings": findings,
                }
                typer.echo(json.dumps(record))
            else:
                shown = ", ".join(f"{n}({w:+.2f})" for n, w in findings)
                typer.echo(
                    f"{name}\tSCL={verdict.scl}\tPCL={verdict.pcl}\tp={verdict.probability:.4f}\t{shown}"
                )


def _gateway_classifier(config_path: Path) -> SpamClassifier:
    from edgeward.config.load import load_config
    from edgeward.content.words import CustomWords
    from edgeward.errors import ConfigError
    from edgeward.paths import content_state_path

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise _fail(str(exc)) from exc
    cfg = config.agents.content_filter
    model = config.resolve(cfg.model) if cfg.model is not None else None
    state = content_state_path(config)
    words = CustomWords(cfg.good_words, cfg.bad_words)
    try:
        if not (cfg.learning and state.exists()):
            return SpamClassifier.load(model, words=words, learning=False)
        # Read once and let go: rating must not hold the gateway's state file open.
        with SqliteModelStateStore(state) as store:
            classifier = SpamClassifier.load(model, store=store, words=words, learning=False)
        classifier.store = None
        return classifier
    except (OSError, ModelFormatError) as exc:
        raise _fail(f"cannot load model: {exc}") from exc


@spam_app.command()
def learn(
    paths: Annotated[list[Path], typer.Argument(help="Messages to learn from.")],
    is_spam: Annotated[bool, typer.Option("--spam/--ham", help="What the messages are.")],
    state: Annotated[
        Path,
        typer.Option(
            "--state", envvar="EDGEWARD_CONTENT_STATE", help="State store (SQLite) holding the live model."
        ),
    ] = Path("content-state.db"),
    model: ModelOption = None,
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Learn into this gateway's live model (overrides --state, --model)."
        ),
    ] = None,
) -> None:
    """Teach the live model (in the state store) that messages are spam or ham."""
    _check_paths(paths)
    if config_path is not None:
        from edgeward.config.load import load_config
        from edgeward.errors import ConfigError
        from edgeward.paths import content_state_path

        try:
            config = load_config(config_path)
        except ConfigError as exc:
            raise _fail(str(exc)) from exc
        state = content_state_path(config)
        state.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        cfg_model = config.agents.content_filter.model
        model = config.resolve(cfg_model) if cfg_model is not None else model
    with SqliteModelStateStore(state) as store:
        try:
            classifier = SpamClassifier.load(model, store=store, learning=True)
        except (OSError, ModelFormatError) as exc:
            raise _fail(f"cannot load model: {exc}") from exc
        learned = 0
        for path in paths:
            for _, raw in iter_messages(path):
                classifier.learn(raw, is_spam)
                learned += 1
        if not learned:
            raise _fail("no messages found")
        store.record_learned("manual", is_spam, time.time(), learned)
        kind = "spam" if is_spam else "ham"
        typer.echo(f"learned {learned} message(s) as {kind}; live model version {classifier.version}")


# Registered here so ``spam_app`` is whole wherever it is imported; the command has its own module.
from edgeward.cli.spam_status import status as _status  # noqa: E402

spam_app.command("status")(_status)
