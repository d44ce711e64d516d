"""Group commit: many concurrent ``Spool.accept()`` calls made durable by one round of fsyncs.

A round runs in worker threads, so the event loop never waits on the disk; the loop hands a
whole round to one worker call, which writes the round's files from a small pool of its own.
While a round runs, new messages queue up; the next round takes all of them (the scheme databases
use for their write-ahead logs). Per message a round costs one flushed file (the data file, which
carries the record in its head: ``queue.datafile``), one unflushed file (the metadata), a link
and a rename; per round it costs one folder fsync, which the concurrent sessions then share.

The order inside a round is Postfix's fsync-before-rename: each data file written in ``tmp/``
and flushed, linked into ``data/`` (a link refuses a name that exists, as an ``O_EXCL`` create
does), ``data/`` flushed; only then the metadata renamed into ``incoming/``, so the queue
manager never sees a message whose data is not in place. The callers
are then told the message is safe and may answer ``250``: what makes it safe is the flushed data
file under its final name. The metadata and its rename are not flushed; a power cut that takes
them leaves a data file with a live head and no metadata, which ``recover()`` puts back in
``incoming/`` from that head. A data file is only ever linked into ``data/`` whole and flushed,
so nothing half-written is ever restored.

Security: files are created through :func:`edgeward.queue.files.write_new` (0600, ``O_EXCL``,
``O_NOFOLLOW``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from edgeward.config.ownership import Owner
from edgeward.errors import QueueError, storage_error
from edgeward.message_file import MessageFile
from edgeward.queue.datafile import head
from edgeward.queue.files import datasync, open_new, sync_dir, unlink_quiet, write_new

__all__ = ["GroupCommitter"]


# Threads that write and flush the files of one round side by side (as many as asyncio's default
# executor gave the per-message hand-offs on a small host).
_WRITERS = 8

# (the data file in data/, the metadata in tmp/, its name in incoming/)
_Written = tuple[Path, Path, Path] | QueueError


@dataclass(slots=True)
class _Open:
    """A message's files of a round before its data file is flushed and linked."""

    fd: int  # the data file, open in tmp/
    data_tmp: Path
    data_path: Path
    meta_tmp: Path
    final: Path
    msg_id: str
    flush_error: OSError | None = None


def _store_error(msg_id: str, exc: OSError) -> QueueError:
    return storage_error(f"cannot store message {msg_id}", exc)


@dataclass(slots=True)
class _Pending:
    msg_id: str
    data: bytes  # the whole message, or with ``source`` the header block that goes before its body
    meta: bytes
    future: asyncio.Future[str]
    source: MessageFile | None = None


class GroupCommitter:
    """Writes new messages into ``data/`` and ``incoming/`` in batches."""

    def __init__(
        self,
        *,
        tmp: Path,
        data: Path,
        incoming: Path,
        sync: bool,
        on_commit: Callable[[int], None] | None = None,
        owner: Owner | None = None,
    ) -> None:
        self._tmp, self._data, self._incoming = tmp, data, incoming
        self._owner = owner
        self._sync = sync
        self._on_commit = on_commit
        self._pending: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None
        self._pool: ThreadPoolExecutor | None = None

    async def submit(
        self, msg_id: str, data: bytes, meta: bytes, *, source: MessageFile | None = None
    ) -> str:
        """Return once the message is durable; raise ``QueueError`` if it could not be stored.

        With ``source`` the data file is ``data`` followed by the body of ``source``."""
        loop = asyncio.get_running_loop()
        pending = _Pending(msg_id, data, meta, loop.create_future(), source)
        if self._task is not None and not self._task.done() and self._task.get_loop() is not loop:
            raise RuntimeError("a Spool accepts messages from one event loop only")
        self._pending.append(pending)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        # shield: a client that hangs up mid-commit must not cancel the round of the others.
        return await asyncio.shield(pending.future)

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                errors = await self._commit(batch)
            except BaseException:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(QueueError("the spool was shut down"))
                raise
            for item, error in zip(batch, errors, strict=True):
                if item.future.done():
                    continue
                if error is None:
                    item.future.set_result(item.msg_id)
                else:
                    item.future.set_exception(error)

    async def _commit(self, batch: list[_Pending]) -> list[QueueError | None]:
        """One round, handed to a worker thread in one piece: one hop off the loop per round,
        not one per message plus one for the publish."""
        written, failure = await asyncio.get_running_loop().run_in_executor(None, self._round, batch)
        errors: list[QueueError | None] = [p if isinstance(p, QueueError) else None for p in written]
        staged = [i for i, paths in enumerate(written) if not isinstance(paths, QueueError)]
        if failure is not None:
            for i in staged:
                errors[i] = _store_error(batch[i].msg_id, failure)
        elif staged and self._on_commit is not None:
            self._on_commit(len(staged))
        return errors

    def _round(self, batch: list[_Pending]) -> tuple[list[_Written], OSError | None]:
        """Write the round's files, flush the data files, then publish them (worker thread).

        The files are created and written from this one thread. Only the data files' flushes run
        side by side, from a small pool: the file system's journal then covers many flushes with
        one commit (about twice as fast on ext4 as one after another), and a pool thread takes
        the interpreter's lock twice per file instead of for every call of its writing."""
        opened = [self._open(item) for item in batch]
        files = [o for o in opened if isinstance(o, _Open)]
        if self._sync and len(files) == 1:
            files[0].flush_error = datasync(files[0].fd)
        elif self._sync and files:
            for f, error in zip(files, self._writers().map(datasync, [f.fd for f in files]), strict=True):
                f.flush_error = error
        written = [o if isinstance(o, QueueError) else self._link(o) for o in opened]
        staged = [paths for paths in written if not isinstance(paths, QueueError)]
        return written, (self._publish(staged) if staged else None)

    def _writers(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_WRITERS, thread_name_prefix="spool-commit")
        return self._pool

    def _open(self, item: _Pending) -> _Open | QueueError:
        """Write one message's data file (left open, not flushed) and its metadata (closed, never
        flushed) in ``tmp/``."""
        token = secrets.token_hex(4)
        data_tmp = self._tmp / f"{item.msg_id}.data.{token}"
        meta_tmp = self._tmp / f"{item.msg_id}.new.{token}"
        first = head(item.meta) + item.data
        src = item.source
        try:
            if src is None:
                fd = open_new(data_tmp, first, owner=self._owner)
            else:
                fd = open_new(data_tmp, first, src.path, src.body_offset, src.file_size, owner=self._owner)
            try:
                write_new(meta_tmp, item.meta, sync=False, owner=self._owner)
            except OSError:
                os.close(fd)
                unlink_quiet(data_tmp)
                raise
        except OSError as exc:
            return _store_error(item.msg_id, exc)
        final = self._incoming / f"{item.msg_id}.json"
        return _Open(fd, data_tmp, self._data / f"{item.msg_id}.eml", meta_tmp, final, item.msg_id)

    @staticmethod
    def _link(f: _Open) -> _Written:
        """Close a flushed data file and link it into ``data/`` (a link, not a rename: it refuses
        a name that exists, as an ``O_EXCL`` create does, so a queue id given twice never
        replaces another message's data)."""
        try:
            os.close(f.fd)
            if f.flush_error is not None:
                raise f.flush_error
            os.link(f.data_tmp, f.data_path)
        except OSError as exc:
            unlink_quiet(f.meta_tmp)
            return _store_error(f.msg_id, exc)
        finally:
            unlink_quiet(f.data_tmp)
        return f.data_path, f.meta_tmp, f.final

    def _publish(self, staged: list[tuple[Path, Path, Path]]) -> OSError | None:
        """Make a round safe and visible (worker thread): flush data/, then rename the metadata
        into incoming/."""
        try:
            if self._sync:
                sync_dir(self._data)
            for _, meta_tmp, final in staged:
                os.rename(meta_tmp, final)
        except OSError as exc:
            # Take back the whole round: its clients get 451 and send again later.
            for data_path, meta_tmp, final in staged:
                unlink_quiet(final)
                unlink_quiet(meta_tmp)
                unlink_quiet(data_path)
            return exc
        return None
