"""posfeat.matching against brute-force NumPy references (mutual NN, ratio test, both; blocks; edge cases)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posfeat.matching import match_descriptors


def _unit(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _reference(d0: np.ndarray, d1: np.ndarray, mutual: bool, ratio: float | None) -> set[tuple[int, int]]:
    """Loop-by-loop reference: Python max over each row / column of the similarity matrix."""
    sim = d0.astype(np.float64) @ d1.astype(np.float64).T
    dist = np.sqrt(np.maximum(2.0 - 2.0 * sim, 0.0))
    out = set()
    for i in range(len(d0)):
        j = int(np.argmax(sim[i]))
        if mutual and int(np.argmax(sim[:, j])) != i:
            continue
        if ratio is not None:
            row = np.sort(dist[i])
            if len(row) > 1 and not row[0] <= ratio * row[1]:
                continue
            col = np.sort(dist[:, j])
            if mutual and len(col) > 1 and not col[0] <= ratio * col[1]:
                continue
        out.add((i, j))
    return out


@pytest.mark.parametrize("mutual,ratio", [(True, None), (False, None), (False, 0.8), (True, 0.8), (True, 0.95)])
def test_matches_equal_brute_force(mutual, ratio):
    rng = np.random.default_rng(0)
    d1 = _unit(rng, 150)
    # d0: noisy copies of half of d1 (true matches) plus distractors
    perm = rng.permutation(150)[:60]
    d0 = d1[perm] + 0.15 * rng.standard_normal((60, 16)).astype(np.float32)
    d0 = np.concatenate([d0 / np.linalg.norm(d0, axis=1, keepdims=True), _unit(rng, 40)])
    got = match_descriptors(d0, d1, mutual=mutual, ratio=ratio, block_size=17)
    assert got.dtype == np.int64 and got.ndim == 2 and got.shape[1] == 2
    assert len({tuple(m) for m in got}) == len(got)  # no duplicates
    assert {tuple(map(int, m)) for m in got} == _reference(d0, d1, mutual, ratio)
    if mutual:  # a mutual matching is one-to-one
        assert len(set(got[:, 1])) == len(got)


def test_mutual_recovers_a_permutation_and_block_size_does_not_matter():
    rng = np.random.default_rng(1)
    d1 = _unit(rng, 300, 32)
    perm = rng.permutation(300)
    d0 = d1[perm]
    full = match_descriptors(d0, d1, mutual=True)
    np.testing.assert_array_equal(full, np.stack([np.arange(300), perm], 1))
    for bs in (1, 7, 299, 1000):
        np.testing.assert_array_equal(match_descriptors(d0, d1, mutual=True, block_size=bs), full)


def test_ratio_test_rejects_ambiguous_match():
    # query 0 is equally close to references 0 and 1 (ratio 1) -> rejected by any ratio < 1
    d1 = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    q = np.array([[1, 1, 0.2], [0, 0, 1]], np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    assert {tuple(m) for m in match_descriptors(q, d1, mutual=False, ratio=0.9)} == {(1, 2)}
    assert len(match_descriptors(q, d1, mutual=False, ratio=None)) == 2


def test_torch_input_and_edge_cases():
    rng = np.random.default_rng(2)
    d = _unit(rng, 10)
    got = match_descriptors(torch.from_numpy(d), torch.from_numpy(d))
    np.testing.assert_array_equal(got, np.stack([np.arange(10)] * 2, 1))
    assert match_descriptors(np.zeros((0, 16), np.float32), d).shape == (0, 2)
    assert match_descriptors(d, np.zeros((0, 16), np.float32)).shape == (0, 2)
    # a single reference descriptor: no second neighbour, the ratio test passes
    one = match_descriptors(d[:3], d[:1], mutual=True, ratio=0.8)
    np.testing.assert_array_equal(one, [[0, 0]])
    with pytest.raises(ValueError):
        match_descriptors(d, _unit(rng, 5, 8))


def test_ties_go_to_the_first_index_across_blocks():
    """Mutual NN with exact duplicates: the first index wins both ways, whatever the block boundaries."""
    rng = np.random.default_rng(2)
    d1 = _unit(rng, 12, 8)
    d1[9] = d1[4]  # two identical references: row 4 of the first set must match reference 4
    d0 = d1[[4, 1, 1, 7]]  # queries 1 and 2 are identical: reference 1's best is query 1
    for bs in (1, 2, 3, 1024):
        got = {tuple(map(int, m)) for m in match_descriptors(d0, d1, mutual=True, block_size=bs)}
        assert got == {(0, 4), (1, 1), (3, 7)}, (bs, got)
