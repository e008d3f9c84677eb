"""The training data: intrinsics under resizing, global batches over ranks, colour jitter, the pair dataset,
view augmentation (CPU, fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from training_setup import SIZE, index  # noqa: F401 (a fixture)

from posfeat.io import DataError
from posfeat.trainset.batch_order import StepBatchSampler, global_batch
from posfeat.trainset.pairs import (
    PairDataset,
    color_jitter,
    night_look,
    scale_intrinsics,
    view_augmentation,
    warp_image,
)


def test_scale_intrinsics_follows_cv2_resize():
    K = np.array([[500.0, 0, 319.5], [0, 510.0, 239.5], [0, 0, 1]])
    X = np.array([[0.3, -0.2, 4.0], [-1.0, 0.5, 7.0]])
    sx, sy = 320 / 640, 256 / 480
    p = (K @ X.T).T
    p = p[:, :2] / p[:, 2:]
    expected = np.stack([(p[:, 0] + 0.5) * sx - 0.5, (p[:, 1] + 0.5) * sy - 0.5], 1)
    q = (scale_intrinsics(K, sx, sy) @ X.T).T
    np.testing.assert_allclose(q[:, :2] / q[:, 2:], expected, atol=1e-9)


def test_global_batch_is_split_exactly_over_ranks():
    full = global_batch(7, 4, 5, seed=3)
    assert full == global_batch(7, 4, 5, seed=3)  # pure function
    parts = [list(StepBatchSampler(7, 4, 3, num_steps=6, start_step=5, rank=r, world_size=2))[0] for r in (0, 1)]
    assert parts[0] + parts[1] == full
    # every pair once per pass
    seen = [i for s in range(7) for i, _ in global_batch(7, 1, s, seed=3)]
    assert sorted(seen) == list(range(7))
    with pytest.raises(ValueError):
        StepBatchSampler(7, 3, 0, 1, world_size=2)


def test_color_jitter_is_reproducible_and_bounded():
    img = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    a = color_jitter(img.clone(), (1, 1, 1, 0.4), torch.Generator().manual_seed(5))
    b = color_jitter(img.clone(), (1, 1, 1, 0.4), torch.Generator().manual_seed(5))
    c = color_jitter(img.clone(), (1, 1, 1, 0.4), torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    with pytest.raises(ValueError):
        color_jitter(img, (0, 0, 0, 0.7), torch.Generator())


def test_pair_dataset_geometry_and_bad_image(index, tmp_path):
    s = PairDataset(index, "train", SIZE, None, 0)[0]
    assert s["image1"].shape == (3, SIZE[1], SIZE[0]) and s["skipped"] == 0
    # F12 from the resized intrinsics: x2ᵀ F12 x1 = 0 for a projected 3D point
    meta1, meta2 = index["images"][s["name1"]], index["images"][s["name2"]]
    R1, t1 = np.array(meta1["R"]), np.array(meta1["t"])
    R2, t2 = np.array(meta2["R"]), np.array(meta2["t"])
    Xc1 = np.array([0.1, -0.05, 1.0]) * 5.0
    Xw = R1.T @ (Xc1 - t1)
    x1 = s["K1"].double().numpy() @ Xc1
    x2 = s["K2"].double().numpy() @ (R2 @ Xw + t2)
    x1, x2 = x1 / x1[2], x2 / x2[2]
    line = s["F12"].double().numpy() @ x1
    assert abs(x2 @ line) / np.linalg.norm(line[:2]) < 1e-2
    # a corrupt image is replaced by another pair, counted, never returned as None
    bad = json.loads(json.dumps(index))
    root = tmp_path / "root"
    for key in {k for p in bad["train"] for k in p}:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).symlink_to(Path(index["root"]) / key)
    broken = bad["train"][0][0]
    (root / broken).unlink()
    (root / broken).write_bytes(b"not a jpeg")
    bad["root"] = str(root)
    ds = PairDataset(bad, "train", SIZE, None, 0)
    first = next(i for i, p in enumerate(ds.pairs) if broken in p)
    out = ds[first]
    assert out["skipped"] >= 1 and broken not in (out["name1"], out["name2"])
    with pytest.raises(DataError, match="expected key .train."):
        PairDataset({"root": ".", "images": {}}, "train")


def test_view_augmentation_is_an_exact_camera_change():
    """Rotating a camera about its axis and zooming: the warp maps each old projection onto the new one."""
    rng = np.random.default_rng(3)
    K = np.array([[300.0, 0, 130.2], [0, 310.0, 94.7], [0, 0, 1]])
    Hw, K2, Rz = view_augmentation(K, (256, 192), 25.0, 1.3)
    assert np.allclose(Rz @ Rz.T, np.eye(3)) and np.isclose(np.linalg.det(Rz), 1.0)
    X = rng.uniform([-2, -2, 3], [2, 2, 9], size=(50, 3))  # camera-frame points at many depths
    x_old = (K @ X.T).T
    x_new = (K2 @ (Rz @ X.T)).T
    x_warp = (Hw @ x_old.T).T
    assert np.allclose(x_warp[:, :2] / x_warp[:, 2:], x_new[:, :2] / x_new[:, 2:], atol=1e-8)
    # the image centre stays put under a pure zoom, and a zoom scales distances from it
    Hz, _, _ = view_augmentation(K, (256, 192), 0.0, 2.0)
    c = Hz @ np.array([127.5, 95.5, 1.0])
    assert np.allclose(c[:2] / c[2], [127.5, 95.5])
    # warp_image moves a bright dot where Hw says
    img = np.zeros((192, 256, 3), np.uint8)
    img[100, 140] = 255
    out = warp_image(img, Hw)
    p = Hw @ np.array([140.0, 100.0, 1.0])
    yy, xx = np.nonzero(out[:, :, 0] > 0)
    assert abs(np.average(xx, weights=out[yy, xx, 0]) - p[0] / p[2]) < 1.0
    assert abs(np.average(yy, weights=out[yy, xx, 0]) - p[1] / p[2]) < 1.0


def _assert_epipolar(sample: dict, Xc1: np.ndarray) -> None:
    """The camera-1 point ``Xc1`` projected with the sample's K1, K2, R, t satisfies x2ᵀ F12 x1 = 0 (1e-2 px)."""
    K1, K2 = sample["K1"].double().numpy(), sample["K2"].double().numpy()
    R, t = sample["R"].double().numpy(), sample["t"].double().numpy()
    x1, x2 = K1 @ Xc1, K2 @ (R @ Xc1 + t)
    x1, x2 = x1 / x1[2], x2 / x2[2]
    line = sample["F12"].double().numpy() @ x1
    assert abs(x2 @ line) / np.linalg.norm(line[:2]) < 1e-2


def test_augmented_pairs_keep_the_epipolar_geometry(index):
    """With rotation and zoom on, x2ᵀ F12 x1 = 0 still holds for the returned K1, K2, R, t and F12."""
    ds = PairDataset(index, "train", SIZE, None, 0, rotation=40.0, scale=(0.6, 1.6))
    for i in range(3):
        s = ds[(i % len(ds), 77 + i)]
        _assert_epipolar(s, np.array([0.2, -0.1, 1.0]) * 4.0)
    plain = PairDataset(index, "train", SIZE, None, 0)[(0, 5)]
    rotated = PairDataset(index, "train", SIZE, None, 0, rotation=40.0)[(0, 5)]
    assert torch.equal(plain["image1"], rotated["image1"]) and not torch.equal(plain["image2"], rotated["image2"])
    with pytest.raises(ValueError, match="rotation"):
        PairDataset(index, "train", SIZE, None, 0, scale=(1.5, 1.0))


def test_grayscale_probability(index):
    """p = 1 turns every image grey (equal channels, the 601 luma); p = 0 leaves the samples untouched."""
    plain = PairDataset(index, "train", SIZE, (0.3, 0.3, 0.3, 0.05), 0)[(1, 9)]
    assert torch.equal(
        plain["image1"], PairDataset(index, "train", SIZE, (0.3, 0.3, 0.3, 0.05), 0, grayscale=0.0)[(1, 9)]["image1"]
    )
    grey = PairDataset(index, "train", SIZE, None, 0, grayscale=1.0)[(1, 9)]
    colour = PairDataset(index, "train", SIZE, None, 0)[(1, 9)]
    for k in ("image1", "image2"):
        assert torch.allclose(grey[k][0], grey[k][1]) and torch.allclose(grey[k][1], grey[k][2])
        luma = 0.299 * colour[k][0] + 0.587 * colour[k][1] + 0.114 * colour[k][2]
        assert torch.allclose(grey[k][0], luma, atol=2e-3)
    with pytest.raises(ValueError, match="grayscale"):
        PairDataset(index, "train", SIZE, None, 0, grayscale=1.5)


def test_night_look_dims_tints_and_is_reproducible():
    """The night look darkens in linear light (a mid-grey image ends far below its level), keeps [0, 1] and the
    shape, and is a function of the generator's state."""
    img = torch.full((3, 48, 64), 0.6)
    a = night_look(img, torch.Generator().manual_seed(3))
    b = night_look(img, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == img.shape
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    # gain <= 0.3, light <= 1.7, cast <= 1.3 in linear light; the noise is zero-mean (±0.02 over 9216 pixels)
    bound = 0.6 * (0.3 * 1.7 * 1.3) ** (1 / 2.2) + 0.02
    assert float(a.mean()) < bound < 0.6
    means = a.mean(dim=(1, 2))
    assert abs(float(means[0] - means[2])) > 0.005  # tinted: red and blue differ


def test_night_probability(index):
    """p = 1 changes both images and only their pixels (the geometry is the same sample); p = 0 is a no-op."""
    plain = PairDataset(index, "train", SIZE, None, 0)[(1, 9)]
    assert torch.equal(plain["image2"], PairDataset(index, "train", SIZE, None, 0, night=0.0)[(1, 9)]["image2"])
    dark = PairDataset(index, "train", SIZE, None, 0, night=1.0)[(1, 9)]
    for k in ("image1", "image2"):
        assert float(dark[k].mean()) < float(plain[k].mean())
    assert torch.equal(dark["F12"], plain["F12"]) and dark["name2"] == plain["name2"]
    with pytest.raises(ValueError, match="night"):
        PairDataset(index, "train", SIZE, None, 0, night=-0.1)


def test_crop_cuts_one_window_of_a_finer_resize_with_exact_cameras(index):
    """``crop``: both images resized by one factor and cut at one relative position; K follows exactly (the
    crop equals that window of the resized image, and x2ᵀ F12 x1 = 0 for the returned cameras)."""
    from posfeat.datasets.images import read_image
    from posfeat.trainset.pairs import resize_image

    ds = PairDataset(index, "train", SIZE, None, 0, crop=(1.5, 2.0))
    plain = PairDataset(index, "train", SIZE, None, 0)
    for i in range(3):
        s, p = ds[(i, 11 + i)], plain[(i, 11 + i)]
        assert s["image1"].shape == p["image1"].shape == (3, SIZE[1], SIZE[0])
        K1, K2 = s["K1"].double().numpy(), s["K2"].double().numpy()
        f = K1[0, 0] / p["K1"][0, 0].item()  # the resolution factor, the same for both images
        assert 1.5 - 0.02 <= f <= 2.0 + 0.02 and np.isclose(K2[0, 0] / p["K2"][0, 0].item(), f, rtol=1e-3)
        # the crop is the window of the resized image that K's principal point says
        meta = index["images"][s["name1"]]
        fy = K1[1, 1] / p["K1"][1, 1].item()  # the resized height is rounded on its own
        big = resize_image(
            read_image(Path(index["root"]) / s["name1"]), (int(round(SIZE[0] * f)), int(round(SIZE[1] * fy)))
        )
        x0 = int(round((f * (p["K1"][0, 2].item() + 0.5) - 0.5) - K1[0, 2]))
        y0 = int(round((fy * (p["K1"][1, 2].item() + 0.5) - 0.5) - K1[1, 2]))
        window = torch.from_numpy(big[y0 : y0 + SIZE[1], x0 : x0 + SIZE[0]].copy()).permute(2, 0, 1).float() / 255
        assert torch.equal(window, s["image1"]), (x0, y0, meta["width"])
        _assert_epipolar(s, np.array([0.15, -0.1, 1.0]) * 4.0)
    # (1, 1) is the whole image, as without the option; a factor below 1 is refused
    assert torch.equal(
        PairDataset(index, "train", SIZE, None, 0, crop=(1.0, 1.0))[(0, 5)]["image2"], plain[(0, 5)]["image2"]
    )
    with pytest.raises(ValueError, match="crop"):
        PairDataset(index, "train", SIZE, None, 0, crop=(0.5, 1.0))


def _synthetic_index(n_images: int, n_pairs: int) -> dict:
    rng = np.random.default_rng(0)
    cam = {"width": 640, "height": 480, "K": [[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]],
           "R": np.eye(3).tolist(), "t": [0.0, 0.0, 1.0]}  # fmt: skip
    keys = [f"{i // 200:04d}/dense0/aligned/images/{i % 200:04d}.jpg" for i in range(n_images)]
    pairs = [[keys[a], keys[b]] for a, b in rng.integers(0, n_images, (n_pairs, 2)) if a != b]
    return {"root": "/nowhere", "images": {k: dict(cam) for k in keys}, "train": pairs, "val": []}


def test_training_set_memory_per_pair_is_flat():
    """The training set keeps flat arrays, not a Python object per pair: its memory grows by at most 32 bytes a
    pair (two int64 rows; a list of key tuples took over 100), so the loader's workers, which inherit it, do not
    copy it page by page as they read (measured with tracemalloc, which counts numpy's buffers too)."""
    import tracemalloc

    def held(n_pairs: int) -> tuple[int, int]:
        index = _synthetic_index(400, n_pairs)
        tracemalloc.start()
        ds = PairDataset(index)
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return size, len(ds)

    (m1, n1), (m4, n4) = held(5000), held(20000)
    assert n4 > 3 * n1
    assert (m4 - m1) / (n4 - n1) <= 32, (m1, m4)
    ds = PairDataset(_synthetic_index(400, 100))
    assert ds.pairs[0] == tuple(_synthetic_index(400, 100)["train"][0]) and len(ds.pairs) == len(ds)
