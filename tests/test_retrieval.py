"""Bag-of-words retrieval (posfeat/sfm/retrieval.py): the vocabulary's bounded sample and its blocked assignment."""

from __future__ import annotations

import numpy as np
import torch

from posfeat.sfm import retrieval


def _unit(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_vocabulary_in_blocks_equals_one_block(monkeypatch):
    """Assigning the sample block by block gives the centroids of the whole-matrix assignment."""
    sample = torch.from_numpy(_unit(np.random.default_rng(0), 1000))
    whole = retrieval.build_vocabulary(sample, 32, iterations=5, seed=1)
    monkeypatch.setattr(retrieval, "BLOCK_ROWS", 97)
    blocked = retrieval.build_vocabulary(sample, 32, iterations=5, seed=1)
    torch.testing.assert_close(blocked, whole, rtol=0, atol=1e-6)
    # and they are k-means centroids: each is the normalised mean of the sample rows nearest to it
    assign = (sample @ blocked.T).argmax(1)
    for w in torch.unique(assign)[:5]:
        mean = torch.nn.functional.normalize(sample[assign == w].sum(0), dim=0)
        assert float(mean @ blocked[w]) > 0.99


def test_vocabulary_sample_is_bounded(monkeypatch):
    """However many images, the vocabulary sees at most MAX_SAMPLE descriptors (the memory of retrieval is then
    bounded by the sample plus one histogram row an image); below the cap, 256 an image."""
    sizes = []
    build = retrieval.build_vocabulary

    def spy(sample, *args, **kwargs):
        sizes.append(sample.shape[0])
        return build(sample, *args, **kwargs)

    monkeypatch.setattr(retrieval, "build_vocabulary", spy)
    monkeypatch.setattr(retrieval, "MAX_SAMPLE", 2000)
    descriptors = {f"{i}": _unit(np.random.default_rng(i), 300) for i in range(40)}
    for n in (4, 40):
        names = list(descriptors)[:n]
        g = retrieval.bow_descriptors(names, descriptors.__getitem__, num_words=8)
        assert g.shape == (n, 8)
    assert sizes == [4 * 256, 40 * (2000 // 40)]
