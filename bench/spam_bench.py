"""Spam benchmark: Edgeward's content classifier vs SpamAssassin 4.0 and rspamd 3.4, one run.

All three learn from the same training data, the SpamAssassin train split plus the train part of
the seeded split of ``modern/`` (:mod:`edgeward.content.corpora`), and are measured on the dev
splits: SpamAssassin dev, and each modern archive's dev part separately:

* Edgeward: ``train_model`` on the train split, modern messages weighted as the shipped model
  (the same data and code as ``edgeward spam train --corpora``).
* SpamAssassin: ``sa-learn`` (Bayes) on the train split, then every dev message checked through the
  Mail::SpamAssassin API in one Perl process with stock rules and ``local_tests_only`` (no DNS,
  Razor, Pyzor or DCC); score = SpamAssassin points.
* rspamd: a private rspamd (own config dir, run dir, loopback ports) on top of the stock config,
  with a private redis-server for Bayes; modules that use the network are disabled and DNS points
  at a closed loopback port; ``rspamc learn_spam/learn_ham`` on the train split; score = rspamd
  points.

Printed per engine on SpamAssassin dev: ROC AUC, recall at 0.1 % and 1 % FP, FP rate and recall
at the reject point and at the quarantine point (each one's default actions: Edgeward SCL >= 8,
where content alone is rejected, and SCL >= 4; SpamAssassin >= 5 points for both; rspamd >= 15
points "reject" and >= 6 "add header"), and messages per CPU-second of the scanning process(es)
(per core), plus ratios to Edgeward. Then per set, SpamAssassin dev, all modern dev messages
together and each modern archive: ROC AUC, recall at 0.1 % and 1 % FP (a ham archive ranked
against all modern dev spam, a spam archive against all modern dev ham) and the share at the
reject and quarantine points (for ham the false-positive rate, for spam the recall; Edgeward's
former reject point SCL >= 7 too). ``--json FILE`` writes every figure. The peers' Bayes learns
every message once (neither takes a weight). An engine whose programs are not installed is
skipped with a notice.
Everything listens on 127.0.0.1 only.

    .venv/bin/python bench/spam_bench.py [--limit N] [--corpora ../shared/corpora] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edgeward.content.classifier import SpamClassifier
from edgeward.content.corpora import MODERN_WEIGHT, corpus_sets
from edgeward.content.evaluate import evaluate_scores, write_roc_png
from edgeward.content.train import train_model

SA_CHECK = r"""
use strict; use warnings;
use Mail::SpamAssassin;
my ($prefs, @files) = @ARGV;
my $sa = Mail::SpamAssassin->new({ local_tests_only => 1, userprefs_filename => $prefs,
                                   dont_copy_prefs => 1 });
$sa->init(1);
my @t0 = times;
for my $f (@files) {
    open(my $fh, '<:raw', $f) or die "$f: $!"; local $/; my $text = <$fh>; close $fh;
    my $mail = $sa->parse($text);
    my $status = $sa->check($mail);
    print $f, "\t", $status->get_score(), "\n";
    $status->finish(); $mail->finish();
}
my @t1 = times;
printf STDERR "CPU\t%.3f\n", ($t1[0] - $t0[0]) + ($t1[1] - $t0[1]);
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def extract(archive: Path, dest: Path, limit: int | None) -> list[Path]:
    files: list[Path] = []
    with tarfile.open(archive) as tar:
        for member in tar:
            if not member.isfile() or (limit is not None and len(files) >= limit):
                continue
            target = dest / f"{len(files):05d}"
            handle = tar.extractfile(member)
            if handle is not None:
                target.write_bytes(handle.read())
                files.append(target)
    return files


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


# --- engines ------------------------------------------------------------------------------------


def run_edgeward(
    train: dict[str, list[Path]], dev: dict[str, list[Path]], weights: dict[Path, float]
) -> dict[str, list[float]]:
    pairs = [
        (p.read_bytes(), label == "spam", weights.get(p, 1.0))
        for label in ("ham", "spam")
        for p in train[label]
    ]
    t = time.monotonic()
    classifier = SpamClassifier(train_model(pairs), learning=False)
    print(f"  edgeward trained in {time.monotonic() - t:.1f} s", file=sys.stderr)
    raws = {label: [p.read_bytes() for p in dev[label]] for label in dev}
    scores: dict[str, list[float]] = {}
    start = time.process_time()
    for label, items in raws.items():
        verdicts = [classifier.score(raw) for raw in items]
        scores[label] = [v.scl + v.probability for v in verdicts]
    cpu = time.process_time() - start
    scores["_rate"] = [sum(len(v) for v in raws.values()) / cpu]
    return scores


def run_spamassassin(
    work: Path, train: dict[str, list[Path]], dev: dict[str, list[Path]]
) -> dict[str, list[float]]:
    prefs = work / "sa-prefs.cf"
    prefs.write_text(
        f"bayes_path {work}/sa-bayes/bayes\nuse_bayes 1\nbayes_auto_learn 0\nuse_auto_whitelist 0\n"
        "bayes_learn_to_journal 0\nskip_rbl_checks 1\nuse_razor2 0\nuse_pyzor 0\nuse_dcc 0\n"
        "lock_method flock\n"
    )
    (work / "sa-bayes").mkdir()
    t = time.monotonic()
    for label in ("ham", "spam"):
        subprocess.run(
            ["sa-learn", "-L", "-p", str(prefs), f"--{label}", str(train[label][0].parent)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    print(f"  spamassassin trained in {time.monotonic() - t:.1f} s", file=sys.stderr)
    script = work / "sa-check.pl"
    script.write_text(SA_CHECK)
    files = [str(p) for label in ("ham", "spam") for p in dev[label]]
    result = subprocess.run(
        ["perl", str(script), str(prefs), *files], check=True, capture_output=True, text=True
    )
    by_file = dict(line.split("\t") for line in result.stdout.splitlines())
    cpu = float(next(line for line in result.stderr.splitlines() if line.startswith("CPU\t")).split("\t")[1])
    scores = {label: [float(by_file[str(p)]) for p in dev[label]] for label in ("ham", "spam")}
    scores["_rate"] = [len(files) / cpu]
    return scores


RSPAMD_DISABLED = (
    "rbl",
    "surbl",
    "spf",
    "dkim",
    "dmarc",
    "arc",
    "fuzzy_check",
    "asn",
    "neural",
    "greylist",
    "ratelimit",
    "replies",
    "history_redis",
    "url_redirector",
    "rspamd_update",
    "reputation",
    "dcc",
    "mx_check",
    "bimi",
    "hfilter",
    "emails",
    "external_services",
    "antivirus",
    "clickhouse",
    "elastic",
    "metadata_exporter",
)


def write_rspamd_config(conf: Path, redis_port: int, normal_port: int, controller_port: int) -> None:
    local = conf / "local.d"
    override = conf / "override.d"
    local.mkdir(parents=True)
    override.mkdir()
    for module in RSPAMD_DISABLED:
        (local / f"{module}.conf").write_text("enabled = false;\n")
    (local / "redis.conf").write_text(f'servers = "127.0.0.1:{redis_port}";\n')
    (local / "classifier-bayes.conf").write_text(
        f'backend = "redis";\nservers = "127.0.0.1:{redis_port}";\nautolearn = false;\n'
    )
    # DNS to a closed loopback port: anything left that resolves fails at once, nothing leaves.
    (override / "options.inc").write_text(
        f'dns {{ nameserver = ["127.0.0.1:{free_port()}"]; timeout = 0.2s; retransmits = 1; }}\n'
        'local_addrs = "127.0.0.0/8";\n'
    )
    (override / "worker-normal.inc").write_text(f'bind_socket = "127.0.0.1:{normal_port}";\ncount = 1;\n')
    (override / "worker-controller.inc").write_text(f'bind_socket = "127.0.0.1:{controller_port}";\n')
    (override / "worker-proxy.inc").write_text(f'bind_socket = "127.0.0.1:{free_port()}";\ncount = 0;\n')
    (override / "worker-fuzzy.inc").write_text(f'bind_socket = "127.0.0.1:{free_port()}";\ncount = -1;\n')
    (override / "logging.inc").write_text('type = "file";\nlevel = "error";\n')


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


def rspamc(port: int, *args: str) -> str:
    result = subprocess.run(
        ["rspamc", "-h", f"127.0.0.1:{port}", "-t", "60", *args], check=True, capture_output=True, text=True
    )
    return result.stdout


def run_rspamd(
    work: Path, train: dict[str, list[Path]], dev: dict[str, list[Path]]
) -> dict[str, list[float]]:
    redis_port, normal_port, controller_port = free_port(), free_port(), free_port()
    conf, run = work / "rspamd-local", work / "rspamd-run"
    for d in (run, run / "db", run / "log"):
        d.mkdir(parents=True)
    write_rspamd_config(conf, redis_port, normal_port, controller_port)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            subprocess.Popen(
                [
                    "redis-server",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(redis_port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(run),
                ],
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        wait_port(redis_port)
        rspamd_cmd = [
            "rspamd",
            "-f",
            "-i",
            "-c",
            "/etc/rspamd/rspamd.conf",
            f"--var=LOCAL_CONFDIR={conf}",
            f"--var=RUNDIR={run}",
            f"--var=DBDIR={run / 'db'}",
            f"--var=LOGDIR={run / 'log'}",
        ]
        if os.geteuid() == 0:
            rspamd_cmd += ["-u", "nobody", "-g", "nogroup"]
            shutil.chown(run, "nobody", "nogroup")
            for d in (run / "db", run / "log"):
                shutil.chown(d, "nobody", "nogroup")
        procs.append(subprocess.Popen(rspamd_cmd, stdout=subprocess.DEVNULL, start_new_session=True))
        wait_port(normal_port)
        wait_port(controller_port)
        t = time.monotonic()
        for label in ("ham", "spam"):
            rspamc(controller_port, "-n", "2", f"learn_{label}", str(train[label][0].parent))
        print(f"  rspamd trained in {time.monotonic() - t:.1f} s", file=sys.stderr)
        files = [p for label in ("ham", "spam") for p in dev[label]]
        pids = process_tree(procs[1].pid)
        before = cpu_seconds(pids)
        output = rspamc(normal_port, "-n", "2", "-j", *[str(p) for p in files])
        cpu = cpu_seconds(pids) - before
        by_file: dict[str, float] = {}
        decoder = json.JSONDecoder()
        text, pos = output, 0
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            obj, pos = decoder.raw_decode(text, pos)
            by_file[obj.get("filename", "")] = float(obj.get("score", 0.0))
        scores = {label: [by_file[str(p)] for p in dev[label]] for label in ("ham", "spam")}
        scores["_rate"] = [len(files) / max(cpu, 1e-6)]
        return scores
    finally:
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


# Each engine's (reject, quarantine) points, its default actions: Edgeward rejects on content
# alone from SCL 8 (content_filter.reject_threshold) and SCL 4 is the junk/quarantine level;
# SpamAssassin has one "spam" score, rspamd tags ("add header") at 6 and rejects at 15.
POINTS = {"edgeward": (8.0, 4.0), "spamassassin": (5.0, 5.0), "rspamd": (15.0, 6.0)}
# Edgeward's former reject SCL, also shown so figures compare with earlier runs.
EDGEWARD_SCL7 = 7.0
NEEDS = {"spamassassin": ("sa-learn", "perl"), "rspamd": ("rspamd", "rspamc", "redis-server")}


def write_sets(
    root: Path, work: Path, limit: int | None
) -> tuple[dict[str, dict[str, list[Path]]], dict[Path, str], dict[Path, float]]:
    """Write train and dev messages to files; return them, each dev file's source, train weights."""
    data: dict[str, dict[str, list[Path]]] = {s: {"ham": [], "spam": []} for s in ("train", "dev")}
    source_of: dict[Path, str] = {}
    weights: dict[Path, float] = {}
    for split in ("train", "dev"):
        for label in ("ham", "spam"):
            (work / f"{split}-{label}").mkdir()
    for item in corpus_sets(root):
        label = "spam" if item.is_spam else "ham"
        for _, raw, _ in item.messages[:limit]:
            files = data[item.split][label]
            path = work / f"{item.split}-{label}" / f"{len(files):05d}"
            path.write_bytes(raw)
            files.append(path)
            source_of[path] = item.source
            weights[path] = 1.0 if item.source == "spamassassin" else MODERN_WEIGHT
    return data, source_of, weights


Row = dict[str, float | int | str]


def _row(name: str, source: str, label: str, ham: list[float], spam: list[float], own: list[float]) -> Row:
    """Figures of one set: ``own`` are its scores, ``ham``/``spam`` the sets it is ranked against."""
    reject, quarantine = POINTS[name]
    curve = evaluate_scores(ham, spam, reject)
    row: Row = {
        "engine": name, "source": source, "label": label, "n": len(own),
        "auc": curve.roc_auc, "r@0.1%": curve.recall_at_fpr[0.001], "r@1%": curve.recall_at_fpr[0.01],
        ">=reject": sum(v >= reject for v in own) / len(own),
        ">=quarantine": sum(v >= quarantine for v in own) / len(own),
    }  # fmt: skip
    if name == "edgeward":
        row[">=scl7"] = sum(v >= EDGEWARD_SCL7 for v in own) / len(own)
    return row


def modern_rows(
    name: str, dev: dict[str, list[Path]], scores: dict[str, list[float]], source_of: dict[Path, str]
) -> list[Row]:
    """All modern dev messages together, then each archive: ham against all modern dev spam,
    spam against all modern dev ham (an archive holds one label)."""
    by_source: dict[tuple[str, str], list[float]] = {}
    for label in ("ham", "spam"):
        for path, score in zip(dev[label], scores[label], strict=True):
            if source_of[path] != "spamassassin":
                by_source.setdefault((source_of[path], label), []).append(score)
    ham = [v for (_, label), vals in by_source.items() if label == "ham" for v in vals]
    spam = [v for (_, label), vals in by_source.items() if label == "spam" for v in vals]
    pooled = "modern (all)"
    rows = [_row(name, pooled, "ham", ham, spam, ham), _row(name, pooled, "spam", ham, spam, spam)]
    for (source, label), vals in sorted(by_source.items()):
        pair = (vals, spam) if label == "ham" else (ham, vals)
        rows.append(_row(name, source, label, *pair, vals))
    return rows


def print_rows(rows: list[Row]) -> None:
    """Per set: for ham the shares are false-positive rates, for spam recall. Recall at an FP
    rate is of the spam ranked against that ham."""
    print(
        f"{'engine':13s}{'source':22s}{'label':>5s}{'n':>6s}{'ROC AUC':>9s}{'R@0.1%FP':>9s}{'R@1%FP':>8s}"
        f"{'>=reject':>9s}{'>=quar.':>8s}{'>=SCL7':>8s}"
    )
    for row in rows:
        scl7 = f"{row['>=scl7']:8.4f}" if ">=scl7" in row else f"{'':8s}"
        print(
            f"{row['engine']!s:13s}{row['source']!s:22s}{row['label']!s:>5s}{row['n']:6d}{row['auc']:9.5f}"
            f"{row['r@0.1%']:9.3f}{row['r@1%']:8.3f}{row['>=reject']:9.4f}{row['>=quarantine']:8.4f}{scl7}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--corpora", type=Path, default=Path(__file__).resolve().parents[2] / "shared/corpora"
    )
    parser.add_argument("--limit", type=int, default=None, help="at most N messages per set (quick run)")
    parser.add_argument(
        "--roc-png", type=Path, default=None, help="write the SpamAssassin-dev ROC curves here"
    )
    parser.add_argument("--skip", action="append", default=[], choices=["spamassassin", "rspamd"])
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here as JSON")
    args = parser.parse_args()
    for engine, programs in NEEDS.items():
        missing = [p for p in programs if shutil.which(p) is None]
        if missing and engine not in args.skip:
            print(f"skipping {engine}: {', '.join(missing)} not installed", file=sys.stderr)
            args.skip.append(engine)
    set_rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="spam-bench-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        data, source_of, weights = write_sets(args.corpora, work, args.limit)
        print(
            f"train {len(data['train']['ham'])} ham / {len(data['train']['spam'])} spam, "
            f"dev {len(data['dev']['ham'])} ham / {len(data['dev']['spam'])} spam",
            file=sys.stderr,
        )
        engines: dict[str, Callable[[], dict[str, list[float]]]] = {
            "edgeward": lambda: run_edgeward(data["train"], data["dev"], weights)
        }
        if "spamassassin" not in args.skip:
            engines["spamassassin"] = lambda: run_spamassassin(work, data["train"], data["dev"])
        if "rspamd" not in args.skip:
            engines["rspamd"] = lambda: run_rspamd(work, data["train"], data["dev"])
        rows: dict[str, dict[str, float]] = {}
        curves = {}
        for name, run in engines.items():
            print(f"running {name} ...", file=sys.stderr)
            scores = run()
            reject = POINTS[name][0]
            sa = {
                label: [s for p, s in zip(data["dev"][label], scores[label], strict=True)
                        if source_of[p] == "spamassassin"]
                for label in ("ham", "spam")
            }  # fmt: skip
            report = evaluate_scores(sa["ham"], sa["spam"], reject)
            at_quarantine = evaluate_scores(sa["ham"], sa["spam"], POINTS[name][1])
            curves[name] = (report.fpr_curve, report.tpr_curve)
            rows[name] = {
                "auc": report.roc_auc,
                "r@0.1%": report.recall_at_fpr[0.001],
                "r@1%": report.recall_at_fpr[0.01],
                "fpr@reject": report.fpr,
                "recall@reject": report.recall,
                "fpr@quarantine": at_quarantine.fpr,
                "recall@quarantine": at_quarantine.recall,
                "msg/s/core": scores["_rate"][0],
            }
            set_rows.append(_row(name, "spamassassin", "ham", sa["ham"], sa["spam"], sa["ham"]))
            set_rows.append(_row(name, "spamassassin", "spam", sa["ham"], sa["spam"], sa["spam"]))
            set_rows.extend(modern_rows(name, data["dev"], scores, source_of))
    if args.roc_png:
        write_roc_png(curves, args.roc_png)
    print("SpamAssassin dev (rate: all dev messages); reject/quarantine points:", POINTS)
    print(
        f"{'engine':14s}{'ROC AUC':>9s}{'R@0.1%FP':>10s}{'R@1%FP':>9s}"
        f"{'FPR@rej':>9s}{'R@rej':>8s}{'FPR@quar':>9s}{'R@quar':>8s}{'msg/s/core':>12s}"
    )
    for name, row in rows.items():
        print(
            f"{name:14s}{row['auc']:9.5f}{row['r@0.1%']:10.3f}{row['r@1%']:9.3f}"
            f"{row['fpr@reject']:9.4f}{row['recall@reject']:8.3f}"
            f"{row['fpr@quarantine']:9.4f}{row['recall@quarantine']:8.3f}{row['msg/s/core']:12.1f}"
        )
    base = rows["edgeward"]
    for name, row in rows.items():
        if name != "edgeward":
            print(
                f"edgeward/{name}: speed x{base['msg/s/core'] / row['msg/s/core']:.1f}, "
                f"missed spam at 0.1% FP x{(1 - base['r@0.1%']) / max(1e-9, 1 - row['r@0.1%']):.2f}, "
                f"ROC AUC {base['auc'] - row['auc']:+.5f}"
            )
    print("\nPer set (ham: false-positive rate at each point; spam: recall)")
    print_rows(set_rows)
    if args.json:
        args.json.write_text(json.dumps({"engines": rows, "sets": set_rows, "points": POINTS}, indent=1))


if __name__ == "__main__":
    main()
