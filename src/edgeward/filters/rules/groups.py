"""Groups for the rule conditions ``from_groups`` and ``to_groups``.

``GroupSource`` is the small interface a directory replica implements later; today the group
file (``DATA_DIR/groups.txt``, ``config.rules.GROUPS_FILE``) answers it: one ``group member``
pair per line, the member an address or ``@domain``, ``#`` starting a comment. It is read when
the agents are built (at start and on SIGHUP), like the recipients file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from edgeward.errors import ConfigError
from edgeward.types import Address

__all__ = ["FileGroups", "GroupSource"]


class GroupSource(Protocol):
    """Answers group membership; a source that cannot answer raises ``OSError``."""

    async def member(self, group: str, address: Address) -> bool: ...


class FileGroups:
    """Group membership from pairs ``(group, member)``, compared case-insensitively."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self.groups: dict[str, frozenset[str]] = {}
        members: dict[str, set[str]] = {}
        for group, member in pairs:
            members.setdefault(group.lower(), set()).add(member.lower())
        self.groups = {g: frozenset(m) for g, m in members.items()}

    @classmethod
    def read(cls, path: Path) -> FileGroups:
        """The group file at ``path``; a missing file is no groups (group conditions never match)."""
        try:
            lines = path.read_text("utf-8").splitlines()
        except FileNotFoundError:
            return cls()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the group file ({exc})") from None
        pairs: list[tuple[str, str]] = []
        for number, line in enumerate(lines, 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) != 2 or ("@" not in words[1]):
                raise ConfigError(f"{path}:{number}: expected 'group address' or 'group @domain'")
            pairs.append((words[0], words[1]))
        return cls(pairs)

    async def member(self, group: str, address: Address) -> bool:
        members = self.groups.get(group.lower(), frozenset())
        return str(address).lower() in members or f"@{address.domain.lower()}" in members
