"""The value cells inside ``prometheus_client``'s labelled children.

A counter's or gauge's child keeps its number in ``_value`` (a ``MutexValue``:
a float and a lock), a histogram's in ``_sum`` and one cell per bucket in
``_buckets``, the bounds in ``_upper_bounds``.  ``prometheus_client`` has no
public way to update them without its per-call checks and lock, and the
gateway records about ten updates per proxied request on the reactor thread,
where the lock protects nothing.  ``observe.metrics`` swaps lock-free cells
in with :func:`unlocked_value` and :func:`histogram_cells` and updates those;
rendering reads them through the cells' ``get``, as it always does.
``tests/unit/observe/test_metrics_cells.py`` pins the rendered numbers.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

import attrs

__all__ = ["HistogramCells", "ReactorValue", "histogram_cells", "unlocked_value"]


class ReactorValue:
    """``prometheus_client``'s ``MutexValue`` without the mutex (reactor thread only)."""

    __slots__ = ("_exemplar", "_value")

    def __init__(self, value: float = 0.0) -> None:
        self._value = value
        self._exemplar: Any = None

    def inc(self, amount: float) -> None:
        self._value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._value = value

    def get(self) -> float:
        return self._value

    def set_exemplar(self, exemplar: Any) -> None:
        self._exemplar = exemplar

    def get_exemplar(self) -> Any:
        return self._exemplar


def _unlocked(value: Any) -> ReactorValue:
    return value if isinstance(value, ReactorValue) else ReactorValue(value.get())


def unlocked_value(child: Any) -> ReactorValue:
    """The value cell of a counter's or gauge's labelled ``child``, made lock-free in place."""
    cell = child._value = _unlocked(child._value)
    return cell


@attrs.frozen
class HistogramCells:
    """The value cells of one labelled histogram child, observed without its wrapper.

    ``Histogram.observe`` costs a few Python calls per observation (the
    observability check, the bucket loop); a proxied request observes two
    histograms.  This does the same updates (the sum, then the first bucket
    whose bound is at least the value) straight on the child's cells.
    """

    sum: ReactorValue
    buckets: list[ReactorValue]
    bounds: list[float]

    def observe(self, amount: float) -> None:
        self.sum.inc(amount)
        self.buckets[bisect_left(self.bounds, amount)].inc(1)


def histogram_cells(child: Any) -> HistogramCells:
    """The cells of a histogram's labelled ``child``, made lock-free in place."""
    child._sum = _unlocked(child._sum)
    child._buckets[:] = [_unlocked(bucket) for bucket in child._buckets]
    return HistogramCells(child._sum, child._buckets, list(child._upper_bounds))
