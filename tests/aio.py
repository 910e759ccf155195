"""Run a coroutine from a synchronous test, whatever event loop the thread already runs.

Playwright's synchronous API (the web-map tests) keeps an event loop running in the main
thread for the whole session, so ``asyncio.run`` there would fail for any test collected after
it; a worker thread always starts with no loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def run(coro: Coroutine[object, object, T]) -> T:
    """``asyncio.run(coro)`` in a fresh thread; returns its result or raises its exception."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-asyncio") as pool:
        return pool.submit(asyncio.run, coro).result()
