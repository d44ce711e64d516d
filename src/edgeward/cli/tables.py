"""Printing tables whose identifiers are never cut, at any terminal width.

Queue ids, quarantine ids, thumbprints and message ids are what an administrator copies into
the next command, so a table that shortens one to fit the terminal ("1a2b3c…") is worse than
no table. :func:`print_table` prints a Rich table only if every identifier it is given appears
whole in the rendering at the console's width; failing that, the same table without borders
or padding (a listing in the style of ``postqueue -p``). Otherwise it prints the same rows as labelled
lines (``ID: ...`` then ``  Sender: ...``) with soft wrapping, so nothing is folded or cut by
Rich and the terminal's own wrapping keeps a copied id in one piece. The same happens when the
table would squeeze another column below a readable width; those columns wrap (long words
too), never ending in an ellipsis.

Columns that hold identifiers should be added with :func:`add_id_column` (never wrapped), and
the others are left to wrap, which gives the table its best chance to fit before the fallback.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from rich import box
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

__all__ = ["add_id_column", "print_table", "rows_as_lines"]

# Narrower than this, a wrapped column is more line breaks than text.
READABLE = 8


def add_id_column(table: Table, header: str) -> None:
    """A column for identifiers: kept on one line; :func:`print_table` ensures it is not cut."""
    table.add_column(header, no_wrap=True, overflow="fold")


def _as_text(cell: RenderableType) -> Text:
    if isinstance(cell, Text):
        return cell
    if isinstance(cell, str):
        return Text.from_markup(cell)  # as the table itself would have read it
    return Text(str(cell))


def _needed_width(console: Console, table: Table) -> int:
    """The narrowest width at which Rich gives identifiers their length and others ``READABLE``.

    Rich narrows the widest wrapping columns first, so when the sum fits, every wrapping column
    ends up at least this wide (or as wide as its content).
    """
    unbounded = console.options.update_width(1 << 20)
    n = len(table.columns)
    _, right, _, left = table.padding
    total = (left + right) * n - (0 if table.pad_edge else left + right)
    if table.box is not None:
        total += n + 1 if table.show_edge else n - 1
    for column in table.columns:
        cells = [column.header, *column.cells] if table.show_header else list(column.cells)
        widest = max((Measurement.get(console, unbounded, c).maximum for c in cells), default=1)
        total += widest if column.no_wrap else min(widest, READABLE)
    return total


def _fits(console: Console, table: Table, keep: list[str]) -> bool:
    if _needed_width(console, table) > console.width:
        return False
    if not keep:
        return True
    # Only rendering tells for sure that every identifier came out whole.
    probe = Console(
        file=io.StringIO(), width=console.width, color_system=None, force_terminal=False, highlight=False
    )
    probe.print(table)
    rendered = probe.file.getvalue()  # type: ignore[attr-defined]
    return all(k in rendered for k in keep)


def rows_as_lines(table: Table) -> list[Text]:
    """The rows of ``table`` as lines: the first cell labelled, the others indented below it."""
    columns = table.columns
    headers = [_as_text(c.header).plain if table.show_header else "" for c in columns]
    cells = [list(c.cells) for c in columns]
    lines: list[Text] = []
    if table.title:
        lines.append(_as_text(table.title))
    for row in range(table.row_count):
        values = [_as_text(cells[col][row]) for col in range(len(columns))]
        if not table.show_header:  # a key/value table: one "key: value" line per row
            lines.append(Text(": ").join(values))
            continue
        for col, value in enumerate(values):
            label = f"{headers[col]}: " if headers[col] else ""
            lines.append(Text.assemble(("  " if col else "") + label, value))
        lines.append(Text(""))
    if table.caption:
        lines.append(_as_text(table.caption))
    return lines


def print_table(console: Console, table: Table, keep: Iterable[str] = ()) -> None:
    """Print ``table`` if every string in ``keep`` shows whole, else its rows as labelled lines."""
    for column in table.columns:
        if not column.no_wrap:
            column.overflow = "fold"  # wrap a long word rather than end it with an ellipsis
    whole = [k for k in keep if k]
    if _fits(console, table, whole):
        console.print(table)
        return
    if table.box is not None:
        # Second try: a listing without borders or padding, one space between columns.
        table.box, table.show_edge, table.padding = box.SIMPLE_HEAD, False, (0, 0)
        if _fits(console, table, whole):
            console.print(table)
            return
    for line in rows_as_lines(table):
        console.print(line, soft_wrap=True)
