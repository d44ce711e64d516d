"""The YARA engine: a folder of rules, compiled once, matched against every item.

Every ``*.yar`` and ``*.yara`` file under ``rules_dir`` (sub-folders included) is compiled
into one rule set, each file in its own namespace (its path relative to the folder), so two
files may use the same rule name. Rules see these externals, all strings: ``filename`` (the
declared file name), ``extension`` (its last suffix, lower case, without the dot),
``filetype`` (the true MIME type read from the content), ``declared_type`` (the Content-Type
of the message) and ``path`` (where the item sits in the message). Only a rule set whose
files name ``filetype`` gets the text subtype of an item the walk typed coarsely
(``truetype.refine``: libmagic's text tests, its dearest part); any other sees ``text/plain``.

Reloading: the folder's fingerprint (each file's size and mtime) is checked at most every
``check_every`` seconds, on a scan or on :meth:`YaraEngine.status`, and on
:meth:`YaraEngine.reload` (``edgeward av update``). Compilation runs in a worker thread. A
rule set that fails to compile keeps the last good one in use and makes the engine unhealthy
with yara's error until the files are fixed; with no good set ever compiled (or no rule file
in the folder) every scan raises :class:`ScanEngineError`: the engine never answers "clean"
with no rules behind the answer.

Findings: a match is ``AV_YARA_MATCH`` with the rule name as the signature. A rule can ask
for a different finding with ``meta: finding = "AV_INFECTED"``; only the anti-virus names of
the score table (``AV_*``) are honoured, so a rule file cannot forge a finding of another
agent (an unknown name falls back to ``AV_YARA_MATCH`` and is named in ``status()``).

Matching runs in a worker thread (yara releases the GIL while it scans) under yara's own
timeout, which stops the scan inside the library: a catastrophic rule or input costs at most
``timeout`` seconds per item and raises :class:`ScanEngineError`, never a hung worker.

Security: ``include`` directives are refused (every file is compiled anyway, and an include
could read a file outside the folder); items are matched in memory, never written out.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yara

from edgeward.config.scores import SCORE_TABLE
from edgeward.ports import Clock, EngineStatus, ScanEngineError, ScanHit, ScanItem, SystemClock
from edgeward.scanning import in_memory
from edgeward.scanning.truetype import refine
from edgeward.scanning.watch import FileWatch, Fingerprint

__all__ = ["FINDING", "YaraEngine", "rule_files"]

FINDING = "AV_YARA_MATCH"
SUFFIXES = (".yar", ".yara")
EXTERNALS: dict[str, str] = {"filename": "", "extension": "", "filetype": "", "declared_type": "", "path": ""}


def rule_files(rules_dir: Path) -> list[Path]:
    """The rule files under ``rules_dir``, in a stable order; none when it does not exist."""
    try:
        return sorted(p for p in rules_dir.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    except OSError:
        return []


# A file that names the external anywhere (a comment too: reading it needlessly is only slower).
_READS_FILETYPE = re.compile(rb"\bfiletype\b")


def _externals(item: ScanItem, subtypes: bool) -> dict[str, str]:
    suffix = PurePosixPath(item.name).suffix
    return {
        "filename": item.name,
        "extension": suffix[1:].lower() if suffix else "",
        "filetype": refine(item) if subtypes else item.true_type,
        "declared_type": item.declared_type,
        "path": item.path,
    }


class _RuleSet:
    """One compiled rule set and what ``status()`` says about it."""

    def __init__(
        self, rules: Any, count: int, files: int, newest: float | None, bad: list[str], reads_filetype: bool
    ) -> None:
        self.rules = rules
        self.reads_filetype = reads_filetype
        self.count = count
        self.files = files
        self.newest = newest
        self.bad_meta = bad


def _compile(rules_dir: Path) -> _RuleSet:
    files = rule_files(rules_dir)
    if not files:
        raise ScanEngineError(f"yara: no .yar or .yara file under {rules_dir}")
    sources = {str(p.relative_to(rules_dir)): str(p) for p in files}
    try:
        rules = yara.compile(filepaths=sources, externals=EXTERNALS, includes=False)
    except yara.Error as exc:  # SyntaxError is a subclass; it names the file and line
        raise ScanEngineError(f"yara: rules do not compile: {exc}") from None
    count = 0
    bad: list[str] = []
    for rule in rules:
        count += 1
        wanted = rule.meta.get("finding")
        if wanted is not None and not _honoured(wanted):
            bad.append(f"{rule.identifier}: finding {str(wanted)[:60]!r}")
    mtimes = []
    reads_filetype = False
    for p in files:
        try:
            mtimes.append(p.stat().st_mtime)
            reads_filetype = reads_filetype or _READS_FILETYPE.search(p.read_bytes()) is not None
        except OSError:
            reads_filetype = True  # compiled, so readable a moment ago: assume it does
    return _RuleSet(rules, count, len(files), max(mtimes, default=None), bad, reads_filetype)


def _honoured(finding: object) -> bool:
    return isinstance(finding, str) and finding.startswith("AV_") and finding in SCORE_TABLE


def _match(ruleset: _RuleSet, items: Sequence[ScanItem], timeout: int) -> list[ScanHit]:
    hits: list[ScanHit] = []
    rules, subtypes = ruleset.rules, ruleset.reads_filetype
    for item in items:
        try:
            matches = rules.match(data=item.data, externals=_externals(item, subtypes), timeout=timeout)
        except yara.TimeoutError:
            raise ScanEngineError(f"yara: timed out after {timeout}s on {item.path}") from None
        except yara.Error as exc:
            raise ScanEngineError(f"yara: cannot scan {item.path}: {exc}") from None
        for match in matches:
            wanted = match.meta.get("finding")
            name = wanted if _honoured(wanted) else FINDING
            hits.append(ScanHit(name, "yara", match.rule, item.path))
    return hits


class YaraEngine:
    """A :class:`~edgeward.ports.Scanner` over a folder of YARA rules. See the module docstring."""

    name = "yara"

    def __init__(
        self,
        rules_dir: Path,
        *,
        timeout: float = 10.0,
        clock: Clock | None = None,
        check_every: float = 5.0,
    ) -> None:
        self.rules_dir = Path(rules_dir)
        # yara takes whole seconds; rounding up never cuts a scan shorter than configured.
        self.timeout = max(1, math.ceil(timeout))
        self._clock = clock if clock is not None else SystemClock()
        self._watch = FileWatch(lambda: rule_files(self.rules_dir), clock=self._clock, every=check_every)
        self._set: _RuleSet | None = None
        self._error = ""
        self._lock = asyncio.Lock()

    @property
    def rule_count(self) -> int:
        """How many rules the rule set in use holds (0 when none compiled)."""
        return self._set.count if self._set is not None else 0

    async def reload(self) -> bool:
        """Compile the folder now; whether it compiled (otherwise the last good set stays)."""
        async with self._lock:
            return await self._load(self._watch.current())

    async def _load(self, seen: Fingerprint) -> bool:
        try:
            compiled = await asyncio.to_thread(_compile, self.rules_dir)
        except ScanEngineError as exc:
            self._error = str(exc)
            self._watch.mark(seen)
            return False
        self._set = compiled
        self._error = ""
        self._watch.mark(seen)
        return True

    async def _fresh(self) -> _RuleSet:
        if self._set is None or self._watch.due() is not None:
            async with self._lock:
                seen = self._watch.current()
                # Another scan may have compiled while this one waited for the lock.
                if (self._set is None and not self._error) or seen != self._watch.seen:
                    await self._load(seen)
        if self._set is None:
            raise ScanEngineError(self._error or "yara: no rules compiled")
        return self._set

    async def scan(self, items: Sequence[ScanItem]) -> list[ScanHit]:
        ruleset = await self._fresh()
        return await asyncio.to_thread(_match, ruleset, in_memory(items), self.timeout)

    async def status(self) -> EngineStatus:
        try:
            current = await self._fresh()
        except ScanEngineError as exc:
            return EngineStatus(self.name, False, version=f"yara {yara.__version__}", detail=str(exc))
        details = []
        if self._error:
            details.append(f"{self._error}; the last good rule set is in use")
        if current.bad_meta:
            details.append("finding meta ignored (not an AV_ name): " + ", ".join(current.bad_meta[:5]))
        return EngineStatus(
            self.name,
            healthy=not self._error,
            version=f"yara {yara.__version__}, {current.count} rules in {current.files} files",
            signatures_at=current.newest,
            detail="; ".join(details),
        )
