"""The Dask side of a batch: a client on a local or remote cluster, and ordered / unordered maps.

:func:`dask_client` starts a ``distributed.LocalCluster`` (``workers`` processes of one thread,
no dashboard) or connects to a scheduler address. Each task of a batch is a plain function of
``tiles`` / ``cimplus`` that reaches the database by URL, so a worker on another host needs the
platform installed (the same version) and a database URL it can reach (``CIM_DATABASE_URL``; the
embedded cluster listens on 127.0.0.1 only).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from cim.errors import ConfigError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int = 2) -> Iterator[Any]:
    """A ``distributed.Client``: on a new LocalCluster of ``workers`` processes, or on ``scheduler``."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"无法连接 Dask 调度器 {scheduler}",
                              f"cannot reach the Dask scheduler {scheduler}: {exc}") from exc
        try:
            yield client
        finally:
            client.close()
        return
    with LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def worker_count(client: Any) -> int:
    """Worker threads the cluster has now (at least 1)."""
    info = client.scheduler_info()
    return max(1, sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values()))


def map_unordered(client: Any, fn: Callable, blocks: Sequence, *args: Any) -> Iterator[Any]:
    """``fn(*args, block)`` for every block as Dask tasks; results as they complete."""
    from distributed import as_completed

    futures = client.map(fn, *[[a] * len(blocks) for a in args], list(blocks), pure=False)
    for future in as_completed(futures):
        yield future.result()
        future.release()


def map_ordered(client: Any, fn: Callable, blocks: Sequence, *args: Any) -> Iterator[Any]:
    """``fn(*args, block)`` for every block as Dask tasks; results in the order of ``blocks``."""
    futures = client.map(fn, *[[a] * len(blocks) for a in args], list(blocks), pure=False)
    for future in futures:
        yield future.result()
        future.release()


def blocks_of(items: Sequence, size: int) -> list[list]:
    """Consecutive runs of ``size`` items."""
    size = max(1, size)
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def flatten(results: Iterable[list]) -> Iterator:
    """The items of each result list, one by one."""
    for result in results:
        yield from result
