"""The file rules of a template, made concrete: which paths they cover, and who should own them.

A rule's path is filled in from the configuration (``{config}``, ``{data_dir}`` ...) and, when
recursive, covers what is below it. Both ``harden analyse`` (EW-FILE-001/002) and ``harden
apply`` work from :func:`file_targets`, so they judge and change the same paths.

Security: the service user owns the data folders, so any symlink there may be its work.
:func:`trusted_path` follows only links root owns (the system's, install-service's queue and
quarantine links) and gives up on a path with anyone else's on it; ``os.walk`` does not descend
into links. The paths handed to apply are therefore symlink-free, and
:mod:`edgeward.harden.files` checks again at the moment of the change.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeward.config.schema import Config
from edgeward.harden.template import RoleTemplate

__all__ = ["Target", "file_targets", "owner_text", "service_ids", "trusted_path", "wanted_owner"]


def service_ids(config: Config) -> tuple[int, int] | None:
    """(uid, gid) the gateway runs as: ``server.user`` and ``server.group`` or its primary group."""
    try:
        pw = pwd.getpwnam(config.server.user)
    except KeyError:
        return None
    if not config.server.group:
        return pw.pw_uid, pw.pw_gid
    try:
        return pw.pw_uid, grp.getgrnam(config.server.group).gr_gid
    except KeyError:
        return None


def wanted_owner(owner: str, service: tuple[int, int] | None) -> tuple[int | None, int | None]:
    """(uid, gid) a file rule's ``owner`` asks for; None where it asks nothing or cannot be known.

    ``root`` files (the configuration and its folder) are root's with the service's group, so the
    gateway reads them and cannot change them: the layout install-service makes.
    """
    if owner == "root":
        return 0, service[1] if service else None
    if owner == "service" and service is not None:
        return service
    return None, None


def owner_text(uid: int | None, gid: int | None) -> str:
    def name(ident: int | None, lookup: Callable[[int], str]) -> str:
        if ident is None:
            return "any"
        try:
            return lookup(ident)
        except KeyError:
            return str(ident)

    return f"{name(uid, lambda i: pwd.getpwuid(i).pw_name)}:{name(gid, lambda i: grp.getgrgid(i).gr_name)}"


def trusted_path(text: str) -> Path | None:
    """``text`` made absolute with every symlink on it resolved, or None if one is not root's.

    A link the service user could have made (in a folder it owns) is never followed: it would
    point analyse, and apply running as root, wherever it liked. Root's own links (the system's,
    and install-service's queue and quarantine links in the data folder) stand for their target.
    """
    todo = list(reversed(Path(os.path.abspath(text)).parts[1:]))
    done, hops = Path("/"), 0
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            done = done.parent
            continue
        step = done / part
        try:
            st = step.lstat()
        except OSError:  # missing or unreadable: the caller's lstat says which
            return step.joinpath(*reversed(todo))
        if not stat.S_ISLNK(st.st_mode):
            done = step
            continue
        hops += 1
        if st.st_uid != 0 or hops > 40:
            return None
        target = Path(os.readlink(step))
        if target.is_absolute():
            done = Path("/")
        todo += reversed(target.parts[1:] if target.is_absolute() else target.parts)
    return done


@dataclass(frozen=True)
class Target:
    """One path a file rule covers, with the rule's limits; ``path`` is symlink-free when trusted."""

    path: Path
    max_mode: int
    owner: str
    trusted: bool = True  # False: another user's symlink is on the way, nothing is judged or changed


def file_targets(template: RoleTemplate, config: Config, config_path: Path) -> list[Target]:
    """Every path the file rules cover, filled in from the configuration."""
    values = {
        "config": str(config_path), "config_dir": str(config_path.parent),
        "data_dir": str(config.resolve(Path("."))).rstrip("/."),
        "log_dir": str(config.resolve(config.logging.dir)),
    }  # fmt: skip
    out: list[Target] = []
    for rule in template.files:
        text = os.path.abspath(rule.path.format(**values))
        top = trusted_path(text)
        if top is None:
            out.append(Target(Path(text), rule.max_mode, rule.owner, trusted=False))
            continue
        out.append(Target(top, rule.max_mode, rule.owner))
        try:
            walk = rule.recursive and top.is_dir()
        except OSError:  # a folder above is not ours to read: the lstat below says so
            walk = False
        if walk:
            try:
                # os.walk does not descend into symlinks; a link below is listed and not followed.
                for dirpath, dirnames, filenames in os.walk(top):
                    for name in dirnames + filenames:
                        child = Path(dirpath, name)
                        # Files get no execute bit; folders keep the rule's.
                        mode = rule.max_mode if child.is_dir() else rule.max_mode & 0o666
                        out.append(Target(child, mode, rule.owner))
            except OSError:
                pass
    return out
