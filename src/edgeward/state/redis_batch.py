"""Commands to the Redis policy store made while one pipeline is on the wire share the next one.

The receiving process asks the store from every session at once (a rate counter at MAIL, a
list lookup at RCPT). Sent one by one, each command costs its own write, read and pool
checkout on both sides; queued while a pipeline is out, they go together in the next
(one write, one read of all replies), which is what group commit (``state/batch.py``) does
for the SQLite store. The pipeline is not a transaction: each command, a script included, is
atomic on its own, and one command's error reply is its caller's alone.

A caller that is cancelled while it waits leaves its command in the pipeline (it has been
asked; a command already sent is not recalled either), so a cancelled ``incr`` still counts.

Scripts are sent as EVALSHA; a server that does not know one (it restarted, or was flushed)
answers NOSCRIPT, and only those commands are sent again after SCRIPT LOAD, so none runs twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

__all__ = ["PipelineRunner"]

Command = tuple[Any, ...]


class PipelineRunner:
    """Sends queued commands in pipelines of at most ``max_batch``, one pipeline at a time."""

    def __init__(self, max_batch: int = 128) -> None:
        self._max_batch = max_batch
        self._queue: list[tuple[Command, asyncio.Future[Any]]] = []
        self._drain: asyncio.Task[None] | None = None

    def submit(self, client: Redis, command: Command, scripts: Mapping[str, str]) -> asyncio.Future[Any]:
        """Queue ``command``; the future gets its reply, or the error reply or fault as exception.

        ``scripts`` maps each script's SHA1 to its text, for a server that has to load it again.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        if self._drain is None or self._drain.done():
            self._drain = asyncio.ensure_future(self._run(client, scripts))
        return future

    async def wait_idle(self) -> None:
        """Until every command queued so far has its reply (before the client is closed)."""
        if self._drain is not None:
            await asyncio.gather(self._drain, return_exceptions=True)

    async def _run(self, client: Redis, scripts: Mapping[str, str]) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            try:
                replies: list[Any] = await _send(client, [command for command, _ in batch], scripts)
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # the connection, not a command: every caller gets it
                replies = [exc] * len(batch)
            for (_, future), reply in zip(batch, replies, strict=True):
                if future.done():
                    continue  # its caller was cancelled; the command ran all the same
                if isinstance(reply, BaseException):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)


async def _send(client: Redis, commands: Sequence[Command], scripts: Mapping[str, str]) -> list[Any]:
    replies = await _pipeline(client, commands)
    unknown = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if unknown:
        for sha in {commands[i][1] for i in unknown}:
            await client.script_load(scripts[sha])
        for i, reply in zip(unknown, await _pipeline(client, [commands[i] for i in unknown]), strict=True):
            replies[i] = reply
    return replies


async def _pipeline(client: Redis, commands: Sequence[Command]) -> list[Any]:
    async with client.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))
