"""The event loop ``edgeward serve`` runs on: uvloop where it is installed, else asyncio's own.

uvloop (libuv under asyncio's API) spends less CPU per socket event than the stdlib's selector
loop, which is where a busy receiving process spends much of what the agents leave
(``bench/README.md`` has the figures). ``[server] event_loop`` picks it: ``auto`` takes uvloop
when it imports and falls back to the stdlib loop without it, ``asyncio`` always takes the
stdlib loop, ``uvloop`` insists (and fails to start without it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Literal

log = logging.getLogger("edgeward.eventloop")

EventLoopChoice = Literal["auto", "asyncio", "uvloop"]


def run(main: Coroutine[Any, Any, None], choice: EventLoopChoice = "auto") -> None:
    """Run ``main`` to completion on the chosen loop."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                main.close()
                raise
        else:
            log.debug("event loop: uvloop")
            uvloop.run(main)
            return
    asyncio.run(main)
