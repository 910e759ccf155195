"""Per-county jobs on Dask: one task per county, each a public function of ``cimplus`` on a
database connection of its own; a county's failure is its own result, not the batch's end.

The task functions of :mod:`batch.hazards` and :mod:`batch.healthcheck` return a
:class:`CountyResult`: the county, the value the ``cimplus`` function returned, or the domain
error it raised (as data: a :class:`cim.errors.CimError` does not survive pickling between
processes), so the client can show every county and decide the exit code once all have run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from batch import engine
from cim.errors import CimError, InvalidInput


@dataclass
class CountyResult:
    """What one county's task gave: ``value`` or ``error`` (``code``, ``message_zh``, ``message_en``)."""

    county: str
    value: Any = None
    error: dict[str, Any] | None = None
    seconds: float = 0.0


def check_codes(wanted: Sequence[str] | None) -> None:
    """Refuse county codes that are not six digits (:class:`cim.errors.InvalidInput`, all named)."""
    bad = [c for c in wanted or [] if not (c.isdigit() and len(c) == 6)]
    if bad:
        raise InvalidInput(f"县级行政区代码须为 6 位数字：{','.join(bad)}", f"a county code has 6 digits: {','.join(bad)}")


def guarded(county: str, fn: Callable[[], Any]) -> CountyResult:
    """``fn()`` as a county's result; a domain error (or any other failure) becomes its ``error``."""
    import time

    began = time.monotonic()
    try:
        value = fn()
    except CimError as exc:
        return CountyResult(county, error=exc.to_dict(), seconds=time.monotonic() - began)
    except Exception as exc:  # noqa: BLE001 - one county's crash is reported, the other counties go on
        text = f"{type(exc).__name__}: {exc}"
        return CountyResult(county, error={"code": "error", "message_zh": f"任务失败：{text}", "message_en": text},
                            seconds=time.monotonic() - began)
    return CountyResult(county, value=value, seconds=time.monotonic() - began)


def run(client: Any, fn: Callable, counties: Sequence[str], *args: Any,
        progress: Callable[[int, int], None] | None = None) -> list[CountyResult]:
    """``fn(*args, county)`` for every county as Dask tasks (the largest arguments scattered once
    by the caller); results in county order, ``progress(done, total)`` as they complete."""
    total = len(counties)
    if progress:
        progress(0, total)
    done: list[CountyResult] = []
    for result in engine.map_unordered(client, fn, list(counties), *args):
        done.append(result)
        if progress:
            progress(len(done), total)
    return sorted(done, key=lambda r: r.county)
