"""Grouping integer columns with numpy alone: dense codes in order of first appearance, stable orders.

The batch path groups RTP rows by stream without pandas (whose import alone takes a quarter of a
second, and which `voipwatch analyze` needs only for Parquet); these give what pandas.factorize
and a stable argsort would.
"""
from __future__ import annotations

import numpy as np

_SPREAD = np.uint64(0x9E3779B97F4A7C15)     # Fibonacci hashing's odd multiplier: spreads values over the top bits


def stable_order(key: np.ndarray) -> np.ndarray:
    """Row order by key (integers in 0 .. 2^32 - 1), rows of equal key kept in their order: stable
    radix sorts on 16-bit digits."""
    order = np.argsort((key & 0xFFFF).astype(np.uint16), kind="stable")
    if key.max(initial=0) > 0xFFFF:
        order = order[np.argsort((key[order] >> 16).astype(np.uint16), kind="stable")]
    return order


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes (int64) of an integer array, numbered in order of first appearance, and the row where
    each code first appears. Runs of equal values are taken as one, so grouped rows cost little."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    values = values.astype(np.uint64, copy=False)
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    run_values = values[starts]
    order = _equal_values_together(run_values)
    ordered = run_values[order]
    new_value = np.r_[True, ordered[1:] != ordered[:-1]]
    first_run = order[new_value]                  # the order is stable: each value's first run
    by_appearance = np.argsort(first_run)
    rank = np.empty(len(first_run), dtype=np.int64)
    rank[by_appearance] = np.arange(len(first_run))
    run_codes = np.empty(len(run_values), dtype=np.int64)
    run_codes[order] = rank[np.cumsum(new_value) - 1]
    return np.repeat(run_codes, np.diff(np.r_[starts, n])), starts[first_run[by_appearance]]


def _equal_values_together(values: np.ndarray) -> np.ndarray:
    """A stable order that puts equal values next to each other: radix passes over a 32-bit hash of
    them, or a full stable sort when two different values share a hash."""
    hashed = ((values * _SPREAD) >> np.uint64(32)).astype(np.uint32)
    order = stable_order(hashed)
    h, v = hashed[order], values[order]
    if ((h[1:] == h[:-1]) & (v[1:] != v[:-1])).any():
        return np.argsort(values, kind="stable")
    return order
