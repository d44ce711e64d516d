"""Notice templates: ``string.Template`` files, shipped defaults, an operator's folder first.

A template is a text file named after the event kind (``virus.txt``, ``engine_down.txt``, ...;
``default.txt`` for any kind without its own, ``virus-sender.txt`` for the sender's notice when
``notify_senders`` is on). Its first line is ``Subject: ...``, then a blank line, then the
body. ``$name`` placeholders are the event's fields (of the batch's first event) and:

``$kind $severity $summary $hostname $time $interval $count`` (events in the notice),
``$more`` (events counted beyond the samples), ``$more_text`` (a sentence, empty when none),
``$more_subject`` (" (and 37 more)", empty when none), ``$details`` (one line per sample).

A placeholder with no value becomes empty rather than failing: a notice must still go out when
an operator's template names a field one kind of event lacks. ``[notify] templates`` names a
folder whose files replace the shipped ones one by one (the shipped files stay untouched, as
rspamd's local overrides do). Templates are read once, when the notifier is built; a file
that cannot be parsed is refused then, with its name, rather than at the first incident.

Security: values are cleaned when an event is made (``events.clean``); the rendered subject is
cleaned again, so a template or a value can never end the Subject header early.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from edgeward.errors import ConfigError
from edgeward.notify.events import clean
from edgeward.notify.limiter import Batch

__all__ = ["Rendered", "Templates", "context"]

SHIPPED = "edgeward.notify"
MAX_TEMPLATE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    body: str


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True, slots=True)
class _Template:
    subject: str
    body: str


def _parse(name: str, text: str) -> _Template:

    first, _, rest = text.partition("\n")
    if not first.lower().startswith("subject:"):
        raise ConfigError(f"notify template {name}: the first line must be 'Subject: ...'")
    body = rest[1:] if rest.startswith("\n") else rest
    subject = first.split(":", 1)[1].strip()
    for part in (subject, body):
        if not Template(part).is_valid():
            raise ConfigError(f"notify template {name}: invalid placeholder (use $name, ${{name}}; $$ is $)")
    return _Template(subject, body)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


def context(batch: Batch, hostname: str, interval: float) -> dict[str, str]:
    """The placeholder values for one notice."""
    first = batch.first
    values = _Blank(first.fields)
    lines = []
    for event in batch.samples:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event.at))
        extra = " ".join(f"{k}={v}" for k, v in event.fields.items())
        lines.append(f"- {stamp} UTC {event.summary}" + (f" ({extra})" if extra else ""))
    more = batch.more
    values.update(
        kind=first.kind,
        severity=first.severity,
        summary=first.summary,
        hostname=clean(hostname, 255),
        time=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(first.at)),
        interval=_duration(interval),
        count=str(batch.count),
        more=str(more),
        more_text=f"... and {more} more event(s) of this kind, not shown.\n" if more else "",
        more_subject=f" (and {batch.count - 1} more)" if batch.count > 1 else "",
        details="\n".join(lines),
    )
    return values


class Templates:
    """The templates in use: the operator's folder over the shipped defaults."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self._cache: dict[str, _Template] = {}
        shipped = resources.files(SHIPPED).joinpath("templates")
        for entry in shipped.iterdir():
            if entry.name.endswith(".txt"):
                self._cache[entry.name[:-4]] = _parse(entry.name, entry.read_text(encoding="utf-8"))
        if folder is not None:
            if not folder.is_dir():
                raise ConfigError(f"notify.templates: {folder} is not a folder")
            for path in sorted(folder.glob("*.txt")):
                try:
                    if path.stat().st_size > MAX_TEMPLATE:
                        raise ConfigError(f"notify template {path}: larger than {MAX_TEMPLATE} bytes")
                    text = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(f"notify template {path}: {exc}") from None
                self._cache[path.stem] = _parse(str(path), text)

    def names(self) -> list[str]:
        return sorted(self._cache)

    def render(self, name: str, values: Mapping[str, str]) -> Rendered:
        """Template ``name`` (``default`` if there is none of that name) filled with ``values``."""

        tpl = self._cache.get(name) or self._cache["default"]
        mapping = _Blank(values)
        subject = clean(Template(tpl.subject).substitute(mapping), 250)
        body = Template(tpl.body).substitute(mapping)
        return Rendered(subject or "Edgeward notice", body)
