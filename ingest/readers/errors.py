"""Library errors raised by delivered data, turned into bilingual :class:`UnreadableInput` (4xx, exit 2)."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from pyproj.exceptions import ProjError
from shapely.errors import GEOSException

from cim.errors import CimError, UnreadableInput

T = TypeVar("T")

# What numpy, pandas, shapely, pyproj and the file parsers raise on data they cannot take.
DATA_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, UnicodeError, GEOSException, ProjError,
               struct.error)


def library_message(exc: BaseException, path: Path) -> str:
    """A library's error text fit for a client: no server paths, first sentence only."""
    text = str(exc)
    for p in (str(path), str(path.parent)):
        text = text.replace(p + "/", "").replace(p, path.name)
    text = re.sub(r"(?:/[^\s'\"]+)+/", "", text)        # any other absolute directory
    return text.split("; ", 1)[0].strip() or type(exc).__name__


def guarded(fn: Callable[..., T], what: str, *args) -> T:
    """Run a reading or mapping step on ``what`` (a file or layer of the delivery): data that
    trips a library error is unreadable input (4xx), not a crash."""
    try:
        return fn(*args)
    except CimError:
        raise
    except DATA_ERRORS as exc:
        why = library_message(exc, Path(what))
        raise UnreadableInput(f"无法读取 {what}：文件内容不完整或格式不符（{type(exc).__name__}）",
                              f"cannot read {what}: {type(exc).__name__}: {why}", file=what) from exc


def guarded_items(items: Iterator[T], what: str) -> Iterator[T]:
    """The items of ``items``, each step run as :func:`guarded` runs a call (for readers that
    read as they are iterated)."""
    end = object()
    while (item := guarded(next, what, items, end)) is not end:
        yield item
