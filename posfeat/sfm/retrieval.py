"""Retrieval pairs for big scenes: a bag-of-visual-words global descriptor and k nearest neighbours.

The ETH local feature benchmark matches the big internet collections (Alamo, Roman Forum, Cornell) with
COLMAP's **vocabulary-tree matcher**: each image against its nearest neighbours by a visual-word
histogram. The pre-trained vocabulary tree cannot be downloaded here, so this module is its stand-in,
built from the features being evaluated:

1. a flat vocabulary of ``num_words`` visual words: spherical k-means (dot-product assignment of the
   L2-normalised descriptors, a few Lloyd iterations, seeded) on a sample of the scene's descriptors (up to
   256 an image and :data:`MAX_SAMPLE` in all);
2. per image a TF-IDF histogram of its words (smoothed ``idf = log((1 + N) / (1 + df)) + 1``),
   square-rooted and L2-normalised;
3. each image paired with its ``k`` most similar other images (cosine similarity), pairs symmetrised
   and de-duplicated.

Cost: the vocabulary is O(sample · words · iterations) with the sample capped, so bounded, and its assignment
runs in blocks of :data:`BLOCK_ROWS` rows; the histograms are one (N_i × words) product per image, linear in the
number of images; the similarity is N × N × words in row blocks, which is what a retrieval protocol costs
(COLMAP's inverted file does the same scoring); memory stays O(N · words) beyond the bounded sample.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

MAX_SAMPLE = 262144
"""Descriptors sampled for the vocabulary at most, over all images (256 an image up to 1024 images)."""
BLOCK_ROWS = 16384
"""Sample rows assigned to their words at once while the vocabulary is built."""


@torch.no_grad()
def build_vocabulary(sample: torch.Tensor, num_words: int, iterations: int = 10, seed: int = 0) -> torch.Tensor:
    """Spherical k-means of ``sample`` (M×D, L2-normalised rows) → ``num_words``×D unit centroids."""
    m = sample.shape[0]
    k = max(1, min(int(num_words), m))
    g = torch.Generator().manual_seed(int(seed))
    centers = sample[torch.randperm(m, generator=g)[:k].to(sample.device)].clone()
    for _ in range(int(iterations)):
        new = torch.zeros_like(centers)
        counts = torch.zeros(k, dtype=torch.long, device=sample.device)
        for s in range(0, m, BLOCK_ROWS):
            part = sample[s : s + BLOCK_ROWS]
            assign = (part @ centers.T).argmax(1)
            new.index_add_(0, assign, part)
            counts += torch.bincount(assign, minlength=k)
        empty = counts == 0
        if empty.any():  # re-seed empty words with random samples
            new[empty] = sample[torch.randint(0, m, (int(empty.sum()),), generator=g).to(sample.device)]
        centers = torch.nn.functional.normalize(new, dim=1)
    return centers


@torch.no_grad()
def bow_descriptors(
    names: Sequence[str],
    get_descriptors: Callable[[str], np.ndarray],
    num_words: int = 1024,
    sample_per_image: int = 256,
    iterations: int = 10,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """TF-IDF bag-of-words global descriptors (N×words, unit rows) of the images ``names``.

    ``get_descriptors(name)`` returns that image's local descriptors (n×D). Descriptors are read twice
    (vocabulary sample, then assignment), one image at a time. The sample takes ``sample_per_image``
    descriptors an image, fewer when that would exceed :data:`MAX_SAMPLE` in all.
    """
    dev = torch.device(device)
    rng = np.random.default_rng(seed)
    per_image = max(1, min(int(sample_per_image), MAX_SAMPLE // max(len(names), 1)))
    sample = []
    for n in names:
        d = np.asarray(get_descriptors(n), np.float32)
        if len(d):
            sel = rng.choice(len(d), size=min(per_image, len(d)), replace=False)
            sample.append(d[sel])
    if not sample:
        return torch.zeros((len(names), 1))
    sample_t = torch.nn.functional.normalize(torch.from_numpy(np.concatenate(sample)).to(dev), dim=1)
    words = build_vocabulary(sample_t, num_words, iterations, seed)
    tf = torch.zeros((len(names), words.shape[0]), device=dev)
    for i, n in enumerate(names):
        d = torch.from_numpy(np.asarray(get_descriptors(n), np.float32)).to(dev)
        if len(d):
            w = (torch.nn.functional.normalize(d, dim=1) @ words.T).argmax(1)
            tf[i] = torch.bincount(w, minlength=words.shape[0]).float()
    df = (tf > 0).sum(0).float()
    idf = torch.log((1.0 + len(names)) / (1.0 + df)) + 1.0  # smoothed: a word in every image still counts
    h = torch.sqrt(tf * idf)
    return torch.nn.functional.normalize(h, dim=1).cpu()


@torch.no_grad()
def nearest_neighbour_pairs(
    names: Sequence[str], global_desc: torch.Tensor, k: int, block_size: int = 1024
) -> list[tuple[str, str]]:
    """Each image with its ``k`` most similar others; symmetric duplicates removed, sorted by index.

    Ties are broken by the lower index (stable). ``k >= len(names) - 1`` gives every pair.
    """
    n = len(names)
    k = max(0, min(int(k), n - 1))
    if k == 0:
        return []
    g = global_desc.float()
    keys: set[tuple[int, int]] = set()
    for s in range(0, n, block_size):
        sim = g[s : s + block_size] @ g.T
        rows = torch.arange(s, min(s + block_size, n))
        sim[torch.arange(len(rows)), rows] = -float("inf")
        # stable top-k: sort by (−similarity, index)
        order = torch.sort(-sim, dim=1, stable=True).indices[:, :k]
        for r, nbrs in zip(rows.tolist(), order.tolist()):
            for j in nbrs:
                keys.add((min(r, j), max(r, j)))
    return [(names[i], names[j]) for i, j in sorted(keys)]


__all__ = ["build_vocabulary", "bow_descriptors", "nearest_neighbour_pairs"]
