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


class KeyIds:
    """Dense ids (in order of first appearance) of keys made of several uint64 columns, over many
    arrays of rows: the stream keys of every chunk of a capture.

    An open-addressing hash table (linear probing, at most a quarter full) kept in numpy arrays: a
    chunk's rows are looked up at once, probe by probe; only keys not seen before (a few per chunk)
    are added one by one. Each key's full columns are kept, so a hash collision between different
    keys is caught (HashCollision) rather than merging them.
    """

    _MIN_BITS = 12

    def __init__(self, columns: int):
        self.n = 0
        self.keys = [np.zeros(16, dtype=np.uint64) for _ in range(columns)]   # per column, per id
        self._hashes = np.zeros(16, dtype=np.uint64)              # per id
        self._bits = self._MIN_BITS
        self._slots = np.full(1 << self._bits, -1, dtype=np.int64)

    def ids(self, columns: list[np.ndarray]) -> np.ndarray:
        """The id of every row's key (int64); new keys get the next ids in order of their first row."""
        hashed = mix_columns(columns)
        ids = np.full(len(hashed), -1, dtype=np.int64)
        mask = (1 << self._bits) - 1
        slot = (hashed >> np.uint64(64 - self._bits)).astype(np.intp)
        probing = np.arange(len(hashed))
        while len(probing):                     # rows whose key sits further along its probe sequence
            held = self._slots[slot[probing]]
            hit = held >= 0
            hit[hit] = self._hashes[held[hit]] == hashed[probing[hit]]
            ids[probing[hit]] = held[hit]
            probing = probing[~hit & (held >= 0)]
            slot[probing] = (slot[probing] + 1) & mask
        missing = np.flatnonzero(ids < 0)
        if len(missing):                        # keys not seen before
            codes, first = factorize(hashed[missing])
            new_ids = np.asarray([self._find_or_add(int(hashed[row]), [int(c[row]) for c in columns])
                                  for row in missing[first].tolist()], dtype=np.int64)
            ids[missing] = new_ids[codes]
        for kept, column in zip(self.keys, columns):
            if not (kept[ids] == column).all():
                raise HashCollision("two different keys share a 64-bit hash")
        return ids

    def _find_or_add(self, hashed: int, key: list[int]) -> int:
        """Linear probing from the key's slot: its id, or a new one."""
        mask = (1 << self._bits) - 1
        slot = hashed >> (64 - self._bits)
        while (found := int(self._slots[slot])) >= 0:
            if int(self._hashes[found]) == hashed:
                return found
            slot = (slot + 1) & mask
        new = self.n
        if new == len(self._hashes):
            self.keys = [np.concatenate([kept, np.zeros_like(kept)]) for kept in self.keys]
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
        for kept, value in zip(self.keys, key):
            kept[new] = value
        self._hashes[new] = hashed
        self.n += 1
        self._slots[slot] = new
        if 4 * self.n > len(self._slots):          # at most a quarter full: probes stay short
            self._grow()
        return new

    def _grow(self) -> None:
        self._bits += 1
        self._slots = np.full(1 << self._bits, -1, dtype=np.int64)
        mask = (1 << self._bits) - 1
        for i, hashed in enumerate(self._hashes[:self.n].tolist()):
            slot = hashed >> (64 - self._bits)
            while self._slots[slot] >= 0:
                slot = (slot + 1) & mask
            self._slots[slot] = i


class HashCollision(Exception):
    """Two different keys with the same 64-bit hash (KeyIds): the caller groups those rows another way."""


# Odd 64-bit multipliers (those of splitmix64, Fibonacci hashing, MurmurHash3's finalizer and
# xorshift64*) that spread each column over the hash.
MIX = np.asarray([0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0x9E3779B97F4A7C15, 0xD6E8FEB86659FD93,
                  0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x2545F4914F6CDD1D], dtype=np.uint64)


def mix_columns(columns: list[np.ndarray]) -> np.ndarray:
    """One 64-bit hash per row of up to seven integer columns. A multiplication by an odd constant
    carries every input bit into the bits above it, so the top bits (KeyIds' slot) depend on all."""
    mixed = np.zeros(len(columns[0]), dtype=np.uint64)
    for k, column in enumerate(columns):
        mixed = (mixed ^ column.astype(np.uint64)) * MIX[k]
    return mixed
