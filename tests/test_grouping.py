"""voipwatch.batch.grouping against its peers: pandas.factorize and numpy's stable argsort."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from voipwatch.batch import grouping
from voipwatch.batch.grouping import KeyIds, factorize, stable_order


def _peer_factorize(values: np.ndarray) -> tuple[list[int], list[int]]:
    codes, uniques = pd.factorize(values)
    first = [int(np.flatnonzero(codes == code)[0]) for code in range(len(uniques))]
    return codes.tolist(), first


@pytest.mark.parametrize("seed", range(40))
def test_factorize_matches_pandas(seed):
    rng = np.random.default_rng(seed)
    distinct = rng.integers(0, 2**63, size=int(rng.integers(1, 300)), dtype=np.uint64)
    values = distinct[rng.integers(0, len(distinct), size=int(rng.integers(0, 5000)))]
    if seed % 3 == 0:                 # rows already grouped, as the candidate blocks are
        values = values[stable_order(factorize(values)[0])]
    codes, first = factorize(values)
    assert (codes.tolist(), first.tolist()) == _peer_factorize(values)


def test_factorize_when_every_value_shares_a_hash(monkeypatch):
    values = np.random.default_rng(1).integers(0, 50, size=3000).astype(np.int64)
    monkeypatch.setattr(grouping, "_SPREAD", np.uint64(0))
    codes, first = factorize(values)
    assert (codes.tolist(), first.tolist()) == _peer_factorize(values)


def test_factorize_empty():
    codes, first = factorize(np.zeros(0, dtype=np.int64))
    assert codes.tolist() == [] and first.tolist() == []


@pytest.mark.parametrize("high", [7, 70_000, 2**32 - 1])
def test_stable_order_matches_a_stable_argsort(high):
    key = np.random.default_rng(high).integers(0, high + 1, size=20_000).astype(np.int64)
    assert stable_order(key).tolist() == np.argsort(key, kind="stable").tolist()


@pytest.mark.parametrize("seed", range(8))
def test_key_ids_number_keys_in_order_of_first_appearance_across_arrays(seed):
    """KeyIds over a sequence of arrays gives pandas.factorize's codes of their concatenation, while
    its table grows from 4,096 slots to hold thousands of keys."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 2**40, size=(int(rng.integers(1, 6000)), 4)).astype(np.uint64)
    ids = KeyIds(4)
    arrays = [rng.integers(0, len(keys), size=int(rng.integers(0, 3000))) for _ in range(20)]
    got = [ids.ids([keys[rows, k] for k in range(4)]) for rows in arrays]
    assert np.concatenate(got).tolist() == pd.factorize(np.concatenate(arrays))[0].tolist()
    assert ids.n == len(set(np.concatenate(arrays).tolist()))
