"""Judging values: pass / fail against the threshold, and the choropleth classes of a level.

Classes are quantiles of the computed values of one indicator at one admin level, taken apart
on each side of the threshold of the run's year, so no class holds both a passing and a failing
value. Failing
classes take the ``fail`` colours (darker further from the target), passing classes the
``passing`` colours (darker further beyond it), indicators without a threshold the ``neutral``
ramp (darker = higher value). A value's class and colour are stored with it, so the map, the
report and the API show the same classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cimplus.healthcheck.catalog import Indicator, Palette


@dataclass(frozen=True)
class Verdict:
    """A value judged against its indicator's threshold for a year."""

    threshold: float | None
    op: str | None
    passed: bool | None


def verdict(ind: Indicator, value: float | None, year: int) -> Verdict:
    """Threshold of the year, its comparison and whether ``value`` meets it (None: not judged)."""
    if ind.threshold is None:
        return Verdict(None, None, None)
    t = ind.threshold.for_year(year)
    return Verdict(t, ind.threshold.op, None if value is None else ind.threshold.passes(value, year))


def _fmt(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() and abs(v) >= 10 else f"{v:.4g}" if abs(v) < 1 else f"{v:.1f}"


def _quantiles(vals: list[float], k: int) -> list[tuple[float, float]]:
    """Up to ``k`` quantile spans of sorted ``vals`` (one span when they are all equal)."""
    n = len(vals)
    breaks = sorted({vals[round(i * (n - 1) / k)] for i in range(k + 1)})
    return [(breaks[i], breaks[i + 1]) for i in range(len(breaks) - 1)] or [(breaks[0], breaks[0])]


def classes(ind: Indicator, values: list[float], year: int, palette: Palette) -> list[dict[str, Any]]:
    """The classes of one indicator at one level: ``[{no, min, max, pass, color, label_zh, label_en}]``.

    With a threshold, the passing and the failing values get classes of their own (quantiles
    within each side, the classes shared in proportion to the values, at least one per side), so
    a class never holds both a passing and a failing value, even when a value equals the threshold."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return []
    k, n = palette.count, len(vals)
    t = ind.threshold.for_year(year) if ind.threshold else None
    out: list[dict[str, Any]]
    if ind.threshold is None:
        out = [{"min": lo, "max": hi, "pass": None} for lo, hi in _quantiles(vals, k)]
    else:
        ok = [v for v in vals if ind.threshold.passes(v, year)]
        bad = [v for v in vals if not ind.threshold.passes(v, year)]
        k_ok = 0 if not ok else (k - 1 if not bad else min(k - 1, max(1, round(k * len(ok) / n))))
        k_ok = k if not bad else k_ok
        out = [{"min": lo, "max": hi, "pass": True} for lo, hi in (_quantiles(ok, k_ok) if ok else [])]
        out += [{"min": lo, "max": hi, "pass": False} for lo, hi in (_quantiles(bad, k - k_ok) if bad else [])]
        out.sort(key=lambda c: (c["min"], c["max"]))
    _colour(out, ind, t, palette)
    unit = ind.unit
    for no, c in enumerate(out):
        c["no"] = no
        text = f"{_fmt(c['min'])}" if c["min"] == c["max"] else f"{_fmt(c['min'])} – {_fmt(c['max'])}"
        tail_zh = "" if c["pass"] is None else ("（达标）" if c["pass"] else "（未达标）")
        tail_en = "" if c["pass"] is None else (" (meets target)" if c["pass"] else " (below target)")
        c["label_zh"] = f"{text} {unit}{tail_zh}"
        c["label_en"] = f"{text} {unit}{tail_en}"
    return out


def _colour(spans: list[dict[str, Any]], ind: Indicator, t: float | None, palette: Palette) -> None:
    if t is None:
        ramp = palette.neutral
        for i, c in enumerate(spans):
            c["color"] = ramp[_index(i, len(spans), len(ramp))]
        return
    for group, ramp in ((False, palette.fail), (True, palette.passing)):
        members = [c for c in spans if c["pass"] is group]
        # nearest the threshold first: lightest
        members.sort(key=lambda c: abs((c["min"] + c["max"]) / 2 - t))
        for i, c in enumerate(members):
            c["color"] = ramp[_index(i, len(members), len(ramp))]


def _index(i: int, count: int, ramp: int) -> int:
    """Spread ``count`` classes over a ramp of ``ramp`` colours (first and last always used)."""
    if count <= 1:
        return ramp // 2 if ramp > 2 else ramp - 1
    return round(i * (ramp - 1) / (count - 1))


def class_of(value: float | None, passed: bool | None, spans: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The class holding ``value`` (at a shared break, the one on the value's side of the threshold)."""
    if value is None or not spans:
        return None
    hits = [c for c in spans if c["min"] <= value <= c["max"]]
    if not hits:
        return spans[0] if value < spans[0]["min"] else spans[-1]
    if len(hits) > 1 and passed is not None:
        hits = [c for c in hits if c["pass"] is passed] or hits
    return hits[-1]            # classes are [min, max): a value on an inner break belongs to the upper one
