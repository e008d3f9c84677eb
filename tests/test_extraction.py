"""posfeat.extraction and stages.extract: detection rules, descriptor sampling, SIFT, feature files, stage runs."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from posfeat.extraction import (
    ExtractConfig,
    describe,
    detect_keypoints,
    extract_dataset,
    extract_posfeat,
    extract_posfeat_batch,
    extract_sift,
    nms_mask,
    refine_subpixel,
    refine_subpixel_quadratic,
)
from posfeat.io import DataError, FeatureReader, feature_method_name
from posfeat.models import IMAGENET_MEAN, IMAGENET_STD, build_model, save_checkpoint

TINY_MODEL = {"encoder": "small", "det_conv1": 16, "det_img": 8, "det_mid": 8}
"""An untrained model small enough for CPU tests (the demo encoder with a slim detector head)."""


# ----------------------------------------------------------------------------------------- NMS
def _nms_reference(s: np.ndarray, r: int) -> np.ndarray:
    """Keep p iff it is the first (row-major) maximum of its window clipped to the map."""
    h, w = s.shape
    keep = np.zeros_like(s, dtype=bool)
    for y in range(h):
        for x in range(w):
            win = s[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
            wy, wx = np.unravel_index(np.argmax(win), win.shape)  # argmax = first maximum
            keep[y, x] = (max(0, y - r) + wy, max(0, x - r) + wx) == (y, x)
    return keep


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_nms_matches_brute_force_with_ties(radius):
    rng = np.random.default_rng(radius)
    s = rng.integers(0, 6, size=(23, 31)).astype(np.float32)  # many ties
    got = nms_mask(torch.from_numpy(s), radius).numpy()
    np.testing.assert_array_equal(got, _nms_reference(s, radius))


def test_nms_plateau_keeps_one_pixel_and_radius_zero_keeps_all():
    s = torch.zeros(9, 9)
    s[3:5, 3:6] = 2.0  # a 2×3 plateau
    m = nms_mask(s, 1)
    assert m[3:5, 3:6].sum() == 1 and m[3, 3]
    assert nms_mask(s, 0).all()


# ------------------------------------------------------------------------------------ sub-pixel
def test_refine_subpixel_is_the_weighted_centroid():
    s = torch.zeros(7, 8)
    patch = torch.tensor([[0.0, 1.0, 0.0], [2.0, 4.0, 1.0], [0.0, 3.0, 0.0]])
    s[2:5, 3:6] = patch  # peak at (row 3, col 4)
    s[0, 0] = -5.0  # negative scores weigh 0
    xy = refine_subpixel(s, torch.tensor([[3, 4], [1, 1]]))
    tot = patch.sum()
    ex = 4 + float((patch * torch.tensor([-1.0, 0.0, 1.0])[None, :]).sum() / tot)  # (−2 + 1) / 11
    ey = 3 + float((patch * torch.tensor([-1.0, 0.0, 1.0])[:, None]).sum() / tot)  # (−1 + 3) / 11
    np.testing.assert_allclose(xy[0].numpy(), [ex, ey], atol=1e-6)
    np.testing.assert_allclose(xy[0].numpy(), [4 - 1 / 11, 3 + 2 / 11], atol=1e-6)
    np.testing.assert_allclose(xy[1].numpy(), [1.0, 1.0])  # all-zero neighbourhood: integer peak


def test_detect_symmetric_and_asymmetric_peaks():
    yy, xx = np.mgrid[0:40, 0:50].astype(np.float64)
    s = np.exp(-((xx - 20) ** 2 + (yy - 10) ** 2) / 4.0)  # symmetric peak at integer (20, 10)
    s += 0.8 * np.exp(-((xx - 35.3) ** 2 + (yy - 27.0) ** 2) / 4.0)  # off-grid peak near (35, 27)
    xy, sc = detect_keypoints(torch.from_numpy(s).float(), nms_radius=2, threshold=0.1, threshold_mode="abs")
    assert len(xy) == 2
    np.testing.assert_allclose(xy[0].numpy(), [20.0, 10.0], atol=1e-5)
    assert 35.0 < xy[1, 0] < 35.3 + 1e-6 and abs(float(xy[1, 1]) - 27.0) < 1e-5  # pulled towards the true peak
    assert sc[0] > sc[1]


def test_refine_subpixel_quadratic_finds_the_vertex_of_a_paraboloid():
    yy, xx = np.mgrid[0:9, 0:11].astype(np.float64)
    s = torch.from_numpy(10.0 - 0.7 * (xx - 4.3) ** 2 - 1.9 * (yy - 2.8) ** 2).float()  # peak pixel (row 3, col 4)
    xy = refine_subpixel_quadratic(s, torch.tensor([[3, 4]]))
    np.testing.assert_allclose(xy[0].numpy(), [4.3, 2.8], atol=1e-4)


def test_refine_subpixel_quadratic_keeps_plateaus_borders_and_non_peaks_integer():
    s = torch.zeros(6, 7)
    s[2, 2:4] = 1.0  # a 1×2 plateau, refined from its left pixel
    s[0, 5], s[1, 5] = 3.0, 1.0  # a peak on the top edge: no neighbour above
    xy = refine_subpixel_quadratic(s, torch.tensor([[2, 2], [0, 5], [4, 1]]))
    np.testing.assert_allclose(xy[0].numpy(), [2.5, 2.0], atol=1e-6)  # l=0, c=1, r=1: the vertex at +0.5 (clamped)
    np.testing.assert_allclose(xy[1].numpy(), [5.0, 0.0], atol=1e-6)  # y: outside the map; x: 0, 3, 0 → no shift
    np.testing.assert_allclose(xy[2].numpy(), [1.0, 4.0], atol=1e-6)  # flat zeros: not concave, integer


@pytest.mark.parametrize("x0, y0", [(20.3, 10.0), (20.0, 9.65), (19.6, 10.4)])
def test_quadratic_subpixel_localises_a_broad_peak_better_than_the_centroid(x0, y0):
    yy, xx = np.mgrid[0:30, 0:40].astype(np.float64)
    s = torch.from_numpy(np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 1.5**2))).float()  # σ = 1.5 px
    err = {}
    for mode in ("centroid", "quadratic"):
        xy, _ = detect_keypoints(s, nms_radius=2, threshold=0.5, threshold_mode="abs", subpixel=mode)
        assert len(xy) == 1
        err[mode] = math.hypot(xy[0, 0].item() - x0, xy[0, 1].item() - y0)
    assert err["quadratic"] < 0.06 and err["centroid"] > 2 * err["quadratic"], err


def test_subpixel_mode_is_checked():
    with pytest.raises(ValueError, match="subpixel"):
        ExtractConfig(subpixel="gaussian")
    with pytest.raises(ValueError, match="subpixel"):
        detect_keypoints(torch.zeros(5, 5), subpixel="none")


# ---------------------------------------------------------------------------------- thresholds
def _three_peaks() -> torch.Tensor:
    s = torch.zeros(20, 30)
    s[5, 5], s[10, 15], s[15, 25] = 1.0, 2.0, 4.0
    return s


def test_threshold_modes():
    s = _three_peaks()  # mean of the interior (18×28) = 7/504
    for mode, thr, n in [("abs", 1.5, 2), ("abs", 0.5, 3), ("max", 0.4, 2), ("max", 0.1, 3), ("max", 1.0, 0)]:
        xy, _ = detect_keypoints(s, 1, thr, mode, None)
        assert len(xy) == n, (mode, thr)
    mean = 7.0 / (18 * 28)
    assert len(detect_keypoints(s, 1, 1.5 / mean, "mean", None)[0]) == 2
    assert len(detect_keypoints(s, 1, 3.0 / mean, "mean", None)[0]) == 1
    # no threshold: every NMS survivor, including flat-zero plateaus' first pixels
    assert len(detect_keypoints(s, 1, None, None, None)[0]) > 3
    with pytest.raises(ValueError):
        detect_keypoints(s, 1, 0.5, "median", None)


def test_top_n_sorted_and_no_padding_to_128():
    s = _three_peaks()
    xy, sc = detect_keypoints(s, 1, 0.5, "abs", max_keypoints=8192)
    assert len(xy) == 3  # the original would return 128 points here (pitfall 7.4.6)
    np.testing.assert_array_equal(sc.numpy(), [4.0, 2.0, 1.0])
    np.testing.assert_allclose(xy.numpy(), [[25, 15], [15, 10], [5, 5]])
    xy, sc = detect_keypoints(s, 1, 0.5, "abs", max_keypoints=2)
    np.testing.assert_array_equal(sc.numpy(), [4.0, 2.0])


def test_border_nan_and_empty():
    s = torch.zeros(12, 12)
    s[0, 6] = 9.0  # on the image edge: never a keypoint with border 1
    s[6, 6] = 1.0
    s[3, 3] = float("nan")
    xy, sc = detect_keypoints(s[None, None], 1, 0.5, "abs", None, border=1)
    np.testing.assert_allclose(xy.numpy(), [[6.0, 6.0]])
    xy, _ = detect_keypoints(s, 1, 0.5, "abs", None, border=0)
    assert [6.0, 0.0] in xy.numpy().round(6).tolist()
    xy, sc = detect_keypoints(torch.zeros(10, 10), 1, 0.5, "abs")
    assert xy.shape == (0, 2) and sc.shape == (0,)
    assert detect_keypoints(torch.ones(2, 2), 1, None, None)[0].shape == (0, 2)


# ------------------------------------------------------------------------------ descriptors
def _ramp_map(hf: int, wf: int) -> torch.Tensor:
    """(1, 3, Hf, Wf): channel 0 = column index, 1 = row index, 2 = constant 100."""
    v, u = torch.meshgrid(torch.arange(hf, dtype=torch.float32), torch.arange(wf, dtype=torch.float32), indexing="ij")
    return torch.stack([u, v, torch.full_like(u, 100.0)])[None]


def test_describe_uses_the_sampling_convention_and_normalises():
    W, H = 64, 48
    fmap = _ramp_map(H // 4, W // 4)
    xy = torch.tensor([[10.0, 7.5], [33.3, 20.0], [60.0, 40.0]])
    d = describe(fmap, xy, (W, H))
    assert d.shape == (3, 3)
    np.testing.assert_allclose(d.norm(dim=1).numpy(), 1.0, atol=1e-6)
    u = d[:, 0] / d[:, 2] * 100.0
    v = d[:, 1] / d[:, 2] * 100.0
    # docs/method.md#conventions: x -> x·Wf/(W−1) − 0.5 (align_corners=True normalisation, align_corners=False sampling)
    np.testing.assert_allclose(u.numpy(), (xy[:, 0] * (W // 4) / (W - 1) - 0.5).numpy(), atol=1e-4)
    np.testing.assert_allclose(v.numpy(), (xy[:, 1] * (H // 4) / (H - 1) - 0.5).numpy(), atol=1e-4)
    assert describe(fmap, torch.zeros(0, 2), (W, H)).shape == (0, 3)


class _FakeModel(nn.Module):
    """Score = the image's red channel (in [0, 1]); local map = a coordinate ramp at stride 4."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.inputs: list[tuple[int, int]] = []

    def forward(self, xn: torch.Tensor) -> dict:
        mean = xn.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = xn.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        x = xn * std + mean
        b, _, h, w = x.shape
        self.inputs.append((h, w))
        return {"score": x[:, :1], "local_map": _ramp_map(h // 4, w // 4).expand(b, -1, -1, -1)}


def test_any_image_size_is_padded_without_shifting_coordinates():
    H, W = 61, 75  # not multiples of 16 -> the network sees 64 × 80
    img = np.zeros((H, W, 3), np.uint8)
    peaks = [(10, 8), (40, 30), (W - 3, H - 3), (71, 20)]  # (x, y); two near the right/bottom edge
    for x, y in peaks:
        img[y - 1 : y + 2, x - 1 : x + 2, 0] = 60
        img[y, x, 0] = 200
    model = _FakeModel()
    f = extract_posfeat(model, img, ExtractConfig(max_keypoints=100, nms_radius=2, threshold=0.05), "cpu")
    assert model.inputs == [(64, 80)]
    np.testing.assert_array_equal(f["image_size"], [W, H])
    got = sorted(map(tuple, f["keypoints"].round(4).tolist()))
    assert got == sorted((float(x), float(y)) for x, y in peaks)  # exact: symmetric 3×3 neighbourhoods
    # descriptors are sampled from the padded image's map with the padded size (80 × 64)
    u = f["descriptors"][:, 0] / f["descriptors"][:, 2] * 100.0
    inside = f["keypoints"][:, 0] * 20 / 79 - 0.5 <= 19
    np.testing.assert_allclose(u[inside], (f["keypoints"][:, 0] * 20 / 79 - 0.5)[inside], atol=1e-3)
    assert f["keypoints"].dtype == np.float32 and f["descriptors"].dtype == np.float32


def test_real_model_batch_equals_single_images():
    torch.manual_seed(0)
    model = build_model(TINY_MODEL)
    rng = np.random.default_rng(0)
    ims = [(rng.random((50, 70, 3)) * 255).astype(np.uint8) for _ in range(2)]
    cfg = ExtractConfig(max_keypoints=64, threshold=None, threshold_mode=None)
    batch = extract_posfeat_batch(model, ims, cfg, "cpu")
    for im, fb in zip(ims, batch):
        fs = extract_posfeat(model, im, cfg, "cpu")
        assert len(fs["keypoints"]) == 64
        np.testing.assert_allclose(fb["keypoints"], fs["keypoints"], atol=1e-4)
        np.testing.assert_allclose(fb["descriptors"], fs["descriptors"], atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(fs["descriptors"], axis=1), 1.0, atol=1e-5)
        assert np.all(np.diff(fs["scores"]) <= 0)
        # peaks at least 1 px from the edge (border 1), refined by less than 1 px: inside the image
        assert fs["keypoints"].min() > 0 and fs["keypoints"][:, 0].max() < 69 and fs["keypoints"][:, 1].max() < 49
    # PoSFeat descriptors on SIFT keypoints
    sift_img = _blob_image(120, 160, [(40.0, 50.0, 3.0), (110.0, 70.0, 4.0)])
    f = extract_posfeat(model, sift_img, ExtractConfig(sift_keypoints=True), "cpu")
    np.testing.assert_allclose(f["keypoints"], extract_sift(sift_img)["keypoints"])
    assert f["descriptors"].shape == (len(f["keypoints"]), 128)
    # on SIFT keypoints only the backbone runs (describe); a forward-only model gives the same descriptors
    forward_only = nn.Sequential(model)  # no describe(): the extractor must run forward
    full = extract_posfeat(forward_only, sift_img, ExtractConfig(sift_keypoints=True), "cpu")
    np.testing.assert_allclose(f["descriptors"], full["descriptors"], atol=1e-5)
    with pytest.raises(ValueError):
        extract_posfeat_batch(model, [ims[0], ims[0][:40]], cfg, "cpu")


def test_multiscale_extraction_maps_back_to_image_pixels():
    """scales [1, 1] equals one scale (mean of equal maps, normalised sum of equal descriptors); at scale 0.5
    the fake model's blob peaks are found again at their image positions (within the resampling error), the
    network sees the half-size image, and each descriptor is the normalised sum of the two scales' ramps."""
    torch.manual_seed(0)
    model = build_model(TINY_MODEL)
    rng = np.random.default_rng(1)
    im = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    cfg = dict(max_keypoints=32, threshold=None, threshold_mode=None)
    one = extract_posfeat(model, im, ExtractConfig(**cfg), "cpu")
    two = extract_posfeat(model, im, ExtractConfig(**cfg, scales=[1.0, 1.0]), "cpu")
    np.testing.assert_allclose(two["keypoints"], one["keypoints"], atol=1e-5)
    np.testing.assert_allclose(two["descriptors"], one["descriptors"], atol=1e-5)

    H, W = 96, 128
    img = np.zeros((H, W, 3), np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    peaks = [(30.0, 40.0), (90.0, 60.0)]
    for x, y in peaks:
        img[:, :, 0] = np.maximum(img[:, :, 0], (250 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 4.0**2))))
    fake = _FakeModel()
    f = extract_posfeat(
        fake,
        img,
        ExtractConfig(max_keypoints=2, nms_radius=3, threshold=None, threshold_mode=None, scales=[1.0, 0.5]),
        "cpu",
    )
    assert fake.inputs == [(96, 128), (48, 64)]
    got = sorted(map(tuple, f["keypoints"].tolist()))
    np.testing.assert_allclose(got, sorted(peaks), atol=0.35)
    # the ramp's first channel is x in feature pixels: the sum over scales, normalised with the other channels
    x, y = f["keypoints"][:, 0].astype(np.float64), f["keypoints"][:, 1].astype(np.float64)
    xh, yh = (x + 0.5) * 0.5 - 0.5, (y + 0.5) * 0.5 - 0.5  # the same points in the half-size image
    unit = lambda d: d / np.linalg.norm(d, axis=1, keepdims=True)  # noqa: E731
    d1 = unit(np.stack([x * 32 / 127 - 0.5, y * 24 / 95 - 0.5, np.full_like(x, 100.0)], 1))
    d2 = unit(np.stack([xh * 16 / 63 - 0.5, yh * 12 / 47 - 0.5, np.full_like(x, 100.0)], 1))
    np.testing.assert_allclose(f["descriptors"], unit(d1 + d2), atol=1e-5)
    with pytest.raises(ValueError, match="scales"):
        ExtractConfig(scales=[])
    with pytest.raises(ValueError, match="scales"):
        ExtractConfig(scales=[0.0])


def _ramp_descriptors(xy: np.ndarray, scale: float, H: int, W: int) -> np.ndarray:
    """Unit descriptors of :class:`_FakeModel` at image pixels ``xy`` when it runs on the image resized by
    ``scale`` (H, W multiples of 16 at that scale): the ramp at the point's feature-map coordinates."""
    x, y = (xy[:, 0].astype(np.float64) + 0.5) * scale - 0.5, (xy[:, 1].astype(np.float64) + 0.5) * scale - 0.5
    hs, ws = round(H * scale), round(W * scale)
    d = np.stack([x * (ws // 4) / (ws - 1) - 0.5, y * (hs // 4) / (hs - 1) - 0.5, np.full_like(x, 100.0)], 1)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def test_pyramid_keeps_each_scales_keypoints_and_descriptors():
    """With ``pyramid`` each scale detects its own peaks (mapped back to image pixels) and describes them
    from its own map; the pool is sorted by score and cut to max_keypoints. SIFT keypoints are described at
    the level nearest to pyramid_sift_size / size."""
    H, W = 96, 128
    yy, xx = np.mgrid[0:H, 0:W]
    peaks = [(30.0, 40.0), (90.0, 60.0)]
    img = np.zeros((H, W, 3), np.uint8)
    for x, y in peaks:
        img[:, :, 0] = np.maximum(img[:, :, 0], (250 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 4.0**2))))
    fake = _FakeModel()
    cfg = dict(nms_radius=3, threshold=None, threshold_mode=None, scales=[1.0, 0.5], pyramid=True)
    f = extract_posfeat(fake, img, ExtractConfig(max_keypoints=4, **cfg), "cpu")
    assert fake.inputs == [(96, 128), (48, 64)]
    assert len(f["keypoints"]) == 4 and np.all(np.diff(f["scores"]) <= 0)
    # the full-scale peaks score highest (area averaging lowers the half-scale peaks); exact positions
    np.testing.assert_allclose(sorted(map(tuple, f["keypoints"][:2].tolist())), sorted(peaks), atol=1e-4)
    # the half-scale peaks come back within the centroid refinement's error at that scale (a quarter of its pixel)
    np.testing.assert_allclose(sorted(map(tuple, f["keypoints"][2:].tolist())), sorted(peaks), atol=0.5)
    np.testing.assert_allclose(f["descriptors"][:2], _ramp_descriptors(f["keypoints"][:2], 1.0, H, W), atol=1e-5)
    np.testing.assert_allclose(f["descriptors"][2:], _ramp_descriptors(f["keypoints"][2:], 0.5, H, W), atol=1e-5)
    assert len(extract_posfeat(fake, img, ExtractConfig(max_keypoints=3, **cfg), "cpu")["keypoints"]) == 3

    blobs = _blob_image(H, W, [(40.0, 50.0, 2.0), (96.0, 48.0, 8.0)])  # a small and a large blob
    sift = extract_sift(blobs)
    small, large = sift["scales"].min(), sift["scales"].max()
    assert large > 3 * small
    g = extract_posfeat(
        _FakeModel(), blobs, ExtractConfig(**{**cfg, "sift_keypoints": True}, pyramid_sift_size=float(small)), "cpu"
    )
    np.testing.assert_allclose(g["keypoints"], sift["keypoints"])
    at_half = sift["scales"] > small * np.sqrt(2) * 1.0001  # log-nearest level: 0.5 beyond size·√2
    assert at_half.any() and (~at_half).any()
    np.testing.assert_allclose(
        g["descriptors"][~at_half], _ramp_descriptors(g["keypoints"][~at_half], 1.0, H, W), atol=1e-5
    )
    np.testing.assert_allclose(
        g["descriptors"][at_half], _ramp_descriptors(g["keypoints"][at_half], 0.5, H, W), atol=1e-5
    )
    with pytest.raises(ValueError, match="pyramid_sift_size"):
        ExtractConfig(pyramid_sift_size=0.0)


def test_batches_group_equal_sizes_within_the_pixel_budget():
    from posfeat.extraction.dataset import _batches

    a, b = np.zeros((10, 10, 3), np.uint8), np.zeros((10, 20, 3), np.uint8)
    items = [("1", a), ("2", a), ("3", a), ("4", b), ("5", b), ("6", a)]
    sizes = [[n for n, _ in batch] for batch in _batches(items, 2)]
    assert sizes == [["1", "2"], ["3"], ["4", "5"], ["6"]]
    sizes = [[n for n, _ in batch] for batch in _batches(items, 8, max_pixels=250)]
    assert sizes == [["1", "2"], ["3"], ["4"], ["5"], ["6"]]  # an image over the budget is a batch of one


# ---------------------------------------------------------------------------------------- SIFT
def test_rotation_views_map_back_and_pool():
    """``rotations``: each rotated view's keypoints come back to image pixels (a 90° turn of a square image is
    exact) with that view's descriptors; those within ``rotation_margin`` of the image edge are dropped; the
    pool is sorted by score. SIFT keypoints get one descriptor per view that holds them."""
    from posfeat import rotations

    N = 96
    yy, xx = np.mgrid[0:N, 0:N]
    peaks = [(30.0, 40.0), (70.0, 60.0), (2.0, 50.0)]  # the last one 2 px from the left edge
    img = np.zeros((N, N, 3), np.uint8)
    for i, (x, y) in enumerate(peaks):
        g = (250 - 20 * i) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 3.0**2))
        img[:, :, 0] = np.maximum(img[:, :, 0], g)
    M = rotations.rotation_matrix(N, N, 90.0)
    pts = torch.tensor(peaks)
    np.testing.assert_allclose(rotations.apply(rotations.invert(M), rotations.apply(M, pts)), pts, atol=1e-5)
    view = rotations.rotate_image(img, M)
    x, y = rotations.apply(M, pts[:1])[0].round().int().tolist()
    assert view[y, x, 0] == img[40, 30, 0]  # the view's pixel at the mapped point is the peak
    cfg = dict(nms_radius=3, threshold=0.1, threshold_mode="abs", max_keypoints=10)
    fake = _FakeModel()
    up = extract_posfeat(fake, img, ExtractConfig(**cfg), "cpu")
    f = extract_posfeat(fake, img, ExtractConfig(**cfg, rotations=[0, 90]), "cpu")
    assert len(up["keypoints"]) == 3 and len(f["keypoints"]) == 5 and np.all(np.diff(f["scores"]) <= 0)
    got = sorted(map(tuple, f["keypoints"].round(3).tolist()))
    assert got == sorted(peaks + peaks[:2])  # twice the inner peaks, once the edge one
    for k, d in zip(f["keypoints"], f["descriptors"]):
        in_up = np.where(np.abs(up["keypoints"] - k).max(1) < 1e-3)[0]
        view_xy = rotations.apply(M, torch.from_numpy(k[None])).numpy()
        rotated = _ramp_descriptors(view_xy, 1.0, N, N)[0]
        assert np.allclose(d, up["descriptors"][in_up[0]], atol=1e-5) or np.allclose(d, rotated, atol=1e-5)
    with pytest.raises(ValueError, match="rotations"):
        ExtractConfig(rotations=[0, 0])
    blobs = _blob_image(N, N, [(40.0, 50.0, 3.0), (60.0, 30.0, 4.0)])
    sift = extract_sift(blobs)
    g = extract_posfeat(_FakeModel(), blobs, ExtractConfig(sift_keypoints=True, rotations=[0, 90]), "cpu")
    assert len(g["keypoints"]) == 2 * len(sift["keypoints"])  # every SIFT keypoint lies inside the 90° view
    np.testing.assert_allclose(
        sorted(map(tuple, g["keypoints"].tolist())),
        sorted(map(tuple, np.concatenate([sift["keypoints"]] * 2).tolist())),
    )


def _blob_image(h: int, w: int, blobs) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.full((h, w), 40.0)
    for cx, cy, s in blobs:
        img += 180.0 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    g = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


def test_sift_locations_are_unbiased_in_our_convention():
    blobs = [(40.3, 50.7, 2.5), (110.0, 64.0, 3.0), (71.6, 100.2, 4.0)]
    f = extract_sift(_blob_image(140, 160, blobs))
    for cx, cy, _ in blobs:
        d = np.hypot(f["keypoints"][:, 0] - cx, f["keypoints"][:, 1] - cy)
        assert d.min() < 0.1, (cx, cy, d.min())  # OpenCV's default pyramid would be off by (0.25, 0.25)


def test_sift_and_rootsift_descriptors():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur((rng.random((160, 200)) * 255).astype(np.uint8), (0, 0), 2.0)
    s = extract_sift(img)
    r = extract_sift(img, root=True)
    assert len(s["keypoints"]) > 20 and s["descriptors"].shape == (len(s["keypoints"]), 128)
    np.testing.assert_array_equal(s["keypoints"], r["keypoints"])
    np.testing.assert_allclose(np.linalg.norm(s["descriptors"], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(r["descriptors"], axis=1), 1.0, atol=1e-5)
    expected = np.sqrt(s["descriptors"] / s["descriptors"].sum(1, keepdims=True))  # Hellinger map
    np.testing.assert_allclose(r["descriptors"], expected, atol=1e-5)
    assert np.all(np.diff(s["scores"]) <= 0)
    capped = extract_sift(img, max_keypoints=10)
    assert len(capped["keypoints"]) == 10
    np.testing.assert_allclose(capped["scores"], s["scores"][:10])
    np.testing.assert_array_equal(s["image_size"], [200, 160])
    flat = extract_sift(np.full((64, 64, 3), 128, np.uint8))
    assert flat["keypoints"].shape == (0, 2) and flat["descriptors"].shape == (0, 128)


# ------------------------------------------------------------------------------- feature files
def _write_images(folder: Path, n: int = 3) -> list[str]:
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        img = cv2.GaussianBlur((rng.random((90 + 10 * i, 120, 3)) * 255).astype(np.uint8), (0, 0), 1.5)
        cv2.imwrite(str(sub / f"{i}.png"), img)
        names.append(f"{sub.name}/{i}.png")
    return sorted(names)


def test_feature_file_reads_back_exactly(tmp_path):
    from posfeat.datasets.images import read_image

    names = _write_images(tmp_path / "imgs")
    torch.manual_seed(0)
    model = build_model(TINY_MODEL)
    cfg = ExtractConfig(max_keypoints=50, threshold=None, threshold_mode=None)
    for method in ("sift", "posfeat"):
        out = tmp_path / f"{method}.h5"
        summary = extract_dataset(
            method, tmp_path / "imgs", names, out, model=model, config=cfg, device="cpu", progress=False
        )
        assert summary["num_images"] == 3
        with FeatureReader(out) as r:
            assert r.names() == names
            for name in names:
                img = read_image(tmp_path / "imgs" / name)
                want = (
                    extract_posfeat(model, img, cfg, "cpu")
                    if method == "posfeat"
                    else extract_sift(img, cfg.max_keypoints)
                )
                got = r[name]
                for key in ("keypoints", "scores", "image_size"):
                    np.testing.assert_array_equal(got[key], want[key], err_msg=f"{method} {name} {key}")
                # stored as float16 (the default), read back as float32: exactly the float16 rounding
                want_de = np.asarray(want["descriptors"], np.float32).astype(np.float16).astype(np.float32)
                np.testing.assert_array_equal(got["descriptors"], want_de, err_msg=f"{method} {name}")
                assert got["descriptors"].shape[0] == len(got["keypoints"]) <= 50


def test_corrupt_image_raises_and_leaves_no_file(tmp_path):
    names = _write_images(tmp_path / "imgs", 2)
    (tmp_path / "imgs" / "b" / "bad.png").write_bytes(b"not a png")
    out = tmp_path / "f.h5"
    with pytest.raises(DataError, match="bad.png"):
        extract_dataset("sift", tmp_path / "imgs", names + ["b/bad.png"], out, progress=False)
    assert not out.exists() and not list(tmp_path.glob(".f.h5*"))
    with pytest.raises(ValueError):
        extract_dataset("posfeat", tmp_path / "imgs", names, out, model=None, progress=False)
    with pytest.raises(KeyError):
        ExtractConfig.from_dict({"max_keypoints": 5, "nms": 3})
    with pytest.raises(ValueError):
        ExtractConfig.from_dict({"threshold_mode": "median"})
    assert ExtractConfig.from_dict({"threshold_mode": "none"}).threshold_mode is None


def test_cli_extract(tmp_path, capsys):
    from posfeat.cli import main

    names = _write_images(tmp_path / "imgs", 2)
    out = tmp_path / "f.h5"
    assert (
        main(
            [
                "extract",
                "--method",
                "rootsift",
                "--images",
                str(tmp_path / "imgs"),
                "--out",
                str(out),
                "--max-keypoints",
                "20",
            ]
        )
        == 0
    )
    with FeatureReader(out) as r:
        assert r.names() == names
        assert all(len(r[n]["keypoints"]) <= 20 for n in names)
    assert '"num_images": 2' in capsys.readouterr().out
    ckpt = tmp_path / "m.pt"
    torch.manual_seed(0)
    save_checkpoint(ckpt, build_model(TINY_MODEL))
    assert (
        main(
            [
                "extract",
                "--method",
                "posfeat",
                "--weights",
                str(ckpt),
                "--images",
                str(tmp_path / "imgs"),
                "--out",
                str(tmp_path / "p.h5"),
                "--threshold-mode",
                "none",
                "--max-keypoints",
                "30",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    with FeatureReader(tmp_path / "p.h5") as r:
        assert [len(r[n]["keypoints"]) for n in names] == [30, 30]
    common = [
        "extract",
        "--method",
        "posfeat",
        "--weights",
        str(ckpt),
        "--images",
        str(tmp_path / "imgs"),
        "--max-keypoints",
        "30",
        "--device",
        "cpu",
    ]
    assert main(common + ["--out", str(tmp_path / "q.h5"), "--posfeat-sift-out", str(tmp_path / "q_sift.h5")]) == 0
    common[2] = "posfeat_sift"
    assert main(common + ["--out", str(tmp_path / "s.h5")]) == 0
    with FeatureReader(tmp_path / "q_sift.h5") as a, FeatureReader(tmp_path / "s.h5") as b:
        for n in names:
            np.testing.assert_array_equal(a[n]["descriptors"], b[n]["descriptors"])
    with pytest.raises(SystemExit):
        main(
            [
                "extract",
                "--method",
                "sift",
                "--images",
                str(tmp_path / "imgs"),
                "--out",
                str(tmp_path / "x.h5"),
                "--posfeat-sift-out",
                str(tmp_path / "y.h5"),
            ]
        )
    with pytest.raises(SystemExit, match="--images DIR, or --dataset"):
        main(["extract", "--method", "sift", "--out", str(tmp_path / "x.h5")])
    with pytest.raises(SystemExit, match="needs --dataset"):
        main(
            [
                "extract",
                "--method",
                "sift",
                "--images",
                str(tmp_path / "imgs"),
                "--params",
                "params.yaml",
                "--out",
                str(tmp_path / "x.h5"),
            ]
        )


# ---------------------------------------------------------------------------------------- stage
def _params(demo_root: Path, exclude=()) -> dict:
    return {
        "device": "cpu",
        "datasets": {d: str(demo_root / d) for d in ("hpatches", "aachen", "eth")},
        "extract": {
            "methods": ["posfeat", "sift"],
            "hpatches": {"max_keypoints": 256, "nms_radius": 1, "threshold": 0.9, "threshold_mode": "abs"},
            "aachen": {"max_keypoints": 512, "nms_radius": 3, "threshold": 0.5, "threshold_mode": "abs"},
            "eth": {"max_keypoints": 512, "nms_radius": 3, "threshold": 0.9, "threshold_mode": "abs"},
        },
        "eval": {"hpatches": {"max_threshold": 15, "exclude": list(exclude)}},
    }


def test_stage_extract_sift_on_demo(demo_root, tmp_path):
    from posfeat.datasets.benchmarks import benchmark_images as dataset_images
    from stages.extract import main

    summary = main("hpatches", "sift", _params(demo_root), base_dir=tmp_path)
    out = tmp_path / "features" / "sift" / "hpatches.h5"
    with FeatureReader(out) as r:
        names = r.names()
    seqs = sorted(p.name for p in (demo_root / "hpatches").iterdir() if p.is_dir())
    assert names == sorted(f"{s}/{k}.ppm" for s in seqs for k in range(1, 7))
    assert summary["num_images"] == len(names) and 0 < summary["keypoints_mean"] <= 256

    main("eth", "sift", _params(demo_root), base_dir=tmp_path)
    with FeatureReader(tmp_path / "features" / "sift" / "eth.h5") as r:
        eth_names = r.names()
    assert eth_names and all(n.startswith("Plaza/images/") for n in eth_names)
    assert all((demo_root / "eth" / n).is_file() for n in eth_names)

    image_root, aachen = dataset_images("aachen", demo_root / "aachen")
    assert image_root == demo_root / "aachen" / "images" / "images_upright"
    assert any(n.startswith("db/") for n in aachen) and any(n.startswith("query/night/") for n in aachen)
    assert all((image_root / n).is_file() for n in aachen)
    with pytest.raises(DataError):
        dataset_images("eth", tmp_path / "nowhere")


def test_stage_extract_posfeat_with_tiny_checkpoint(demo_root, tmp_path):
    from stages.extract import main

    seqs = sorted(p.name for p in (demo_root / "hpatches").iterdir() if p.is_dir())
    params = _params(demo_root, exclude=seqs[1:])  # one sequence: 6 images keep the test fast
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "models" / "posfeat.pt", build_model(TINY_MODEL))
    params["extract"]["hpatches"] = {"max_keypoints": 128, "nms_radius": 1, "threshold": 0.9, "threshold_mode": "abs"}
    summary = main("hpatches", "posfeat", params, base_dir=tmp_path)
    assert summary["num_images"] == 6
    with FeatureReader(tmp_path / "features" / "posfeat" / "hpatches.h5") as r:
        assert r.names() == [f"{seqs[0]}/{k}.ppm" for k in range(1, 7)]
        f = r[f"{seqs[0]}/1.ppm"]
    h, w = cv2.imread(str(demo_root / "hpatches" / seqs[0] / "1.ppm")).shape[:2]
    np.testing.assert_array_equal(f["image_size"], [w, h])
    assert 0 < len(f["keypoints"]) <= 128 and f["descriptors"].shape == (len(f["keypoints"]), 128)
    assert np.all(f["scores"] > 0.9)  # the abs threshold on a Softplus score map
    assert not math.isnan(float(f["keypoints"].sum()))


def test_amp_extraction_matches_float32(monkeypatch):
    """``amp`` (bfloat16 autocast, forced here even on a CPU without native bfloat16) gives nearly the float32
    features: most keypoints at the same pixels, their descriptors nearly parallel, float32 outputs."""
    from posfeat import utils

    monkeypatch.setattr(utils, "cpu_has_native_bf16", lambda: True)
    torch.manual_seed(0)
    model = build_model({"encoder": "small", "det_conv1": 16, "det_img": 8, "det_mid": 8}).eval()
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3)).astype(np.uint8), (0, 0), 2.0)
    cfg = dict(max_keypoints=200, nms_radius=2, threshold=None, threshold_mode=None, scales=[1.0, 0.5], pyramid=True)
    ref = extract_posfeat(model, img, ExtractConfig(**cfg), "cpu")
    amp = extract_posfeat(model, img, ExtractConfig(**cfg, amp=True), "cpu")
    assert amp["descriptors"].dtype == np.float32 and amp["scores"].dtype == np.float32
    d = np.linalg.norm(amp["keypoints"][:, None] - ref["keypoints"][None], axis=2)
    near = d.min(1) < 0.5
    assert near.mean() > 0.7, near.mean()
    cos = np.sum(amp["descriptors"][near] * ref["descriptors"][d.argmin(1)[near]], axis=1)
    assert np.median(cos) > 0.99 and cos.min() > 0.9, (np.median(cos), cos.min())
    np.testing.assert_allclose(np.linalg.norm(amp["descriptors"], axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("scales,pyramid,rotations", [((1.0,), False, (0.0,)), ((1.0, 0.5), True, (0.0, 45.0))])
def test_one_pass_gives_both_posfeat_files(tmp_path, scales, pyramid, rotations):
    """``extract_dataset(..., sift_out=…)`` writes, from one network pass per view, exactly the two files that
    separate runs without and with ``sift_keypoints`` write (every array equal, the configs in the attributes)."""
    torch.manual_seed(0)
    model = build_model(TINY_MODEL).eval()
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(1)
    for k in range(3):
        base = _blob_image(96, 128, [(30.0 + 10 * k, 40.0, 3.0), (90.0, 60.0 - 5 * k, 4.0), (60.0, 25.0, 2.5)])
        noisy = np.clip(base.astype(np.float32) + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / f"{k}.png"), noisy[:, :, ::-1])
    names = [f"{k}.png" for k in range(3)]
    cfg = dict(
        max_keypoints=200, threshold=None, threshold_mode=None, scales=scales, pyramid=pyramid, rotations=rotations
    )
    calls = {"n": 0}
    real_describe = model.describe

    def counted(fn):
        def wrapper(*a, **k):
            calls["n"] += 1
            return fn(*a, **k)

        return wrapper

    model.describe = counted(real_describe)  # the backbone (forward calls it too)
    summary = extract_dataset(
        "posfeat",
        root,
        names,
        tmp_path / "both.h5",
        model=model,
        config=ExtractConfig(**cfg),
        device="cpu",
        progress=False,
        sift_out=tmp_path / "both_sift.h5",
    )
    assert calls["n"] == 3 * len(scales) * len(rotations)  # one backbone pass per image, scale and view
    assert summary["on_sift_keypoints"]["keypoints_max"] > 0
    extract_dataset(
        "posfeat",
        root,
        names,
        tmp_path / "alone.h5",
        model=model,
        config=ExtractConfig(**cfg),
        device="cpu",
        progress=False,
    )
    extract_dataset(
        "posfeat",
        root,
        names,
        tmp_path / "alone_sift.h5",
        model=model,
        device="cpu",
        progress=False,
        config=ExtractConfig(**cfg, sift_keypoints=True),
    )
    for one, two in (("both.h5", "alone.h5"), ("both_sift.h5", "alone_sift.h5")):
        with FeatureReader(tmp_path / one) as a, FeatureReader(tmp_path / two) as b:
            assert a.names() == b.names() == names
            for n in names:
                fa, fb = a[n], b[n]
                assert set(fa) == set(fb)
                for key in fa:
                    np.testing.assert_array_equal(fa[key], fb[key], err_msg=f"{one} {n} {key}")
    import h5py

    with h5py.File(tmp_path / "both_sift.h5") as a, h5py.File(tmp_path / "alone_sift.h5") as b:
        assert a.attrs["config"] == b.attrs["config"]
    with FeatureReader(tmp_path / "both_sift.h5") as a:
        image = cv2.imread(str(root / "0.png"))[:, :, ::-1].copy()
        sift_xy, stored = extract_sift(image, 200)["keypoints"], a["0.png"]["keypoints"]
        if len(rotations) == 1:
            np.testing.assert_array_equal(stored, sift_xy)
        else:  # every view describes the SIFT keypoints it holds: SIFT's points, some more than once
            assert len(stored) > len(sift_xy)
            assert np.abs(stored[:, None] - sift_xy[None]).sum(-1).min(1).max() == 0
    with pytest.raises(ValueError, match="sift_out"):
        extract_dataset("sift", root, names, tmp_path / "x.h5", sift_out=tmp_path / "y.h5", progress=False)


def test_cli_names_the_library_subpixel_modes():
    from posfeat.extraction import SUBPIXEL_MODES, SUBPIXEL_REFINERS

    assert tuple(SUBPIXEL_REFINERS) == SUBPIXEL_MODES


def test_cli_with_the_study_params_writes_what_the_stage_writes(demo_root, tmp_path):
    """`posfeat extract --params params.yaml --dataset eth` = the extract_eth@posfeat and @posfeat_sift stages."""
    import yaml

    from posfeat.cli import main as cli_main
    from stages.extract import main as stage_main

    study = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params = {
        "device": "cpu",
        "datasets": {"eth": str(demo_root / "eth")},
        "extract": {"methods": ["posfeat", "posfeat_sift"], "eth": {**study["extract"]["eth"], "max_keypoints": 300}},
        "eval": {"hpatches": {"exclude": []}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    torch.manual_seed(0)
    weights = tmp_path / "models" / "posfeat.pt"
    weights.parent.mkdir()
    save_checkpoint(weights, build_model(TINY_MODEL))
    stage_main("eth", "posfeat", params, base_dir=tmp_path)
    stage_main("eth", "posfeat_sift", params, base_dir=tmp_path)
    common = [
        "extract",
        "--params",
        str(tmp_path / "params.yaml"),
        "--dataset",
        "eth",
        "--weights",
        str(weights),
        "--device",
        "cpu",
    ]
    assert (
        cli_main(
            [
                *common,
                "--method",
                "posfeat",
                "--out",
                str(tmp_path / "cli.h5"),
                "--posfeat-sift-out",
                str(tmp_path / "cli_sift.h5"),
            ]
        )
        == 0
    )
    assert cli_main([*common, "--method", "posfeat_sift", "--out", str(tmp_path / "cli_sift2.h5")]) == 0
    pairs = [("posfeat", "cli.h5"), ("posfeat_sift", "cli_sift.h5"), ("posfeat_sift", "cli_sift2.h5")]
    for method, name in pairs:
        with FeatureReader(tmp_path / "features" / method / "eth.h5") as a, FeatureReader(tmp_path / name) as b:
            assert a.names() == b.names() and len(a.names()) == len(list((demo_root / "eth").glob("*/images/*")))
            for n in a.names():
                for key in ("keypoints", "scores", "descriptors"):
                    np.testing.assert_array_equal(a[n][key], b[n][key], err_msg=f"{name} {n} {key}")
    assert feature_method_name(tmp_path / "cli_sift2.h5") == "posfeat_sift"
    # a flag given overrides the file's value
    assert cli_main([*common, "--method", "posfeat", "--max-keypoints", "50", "--out", str(tmp_path / "few.h5")]) == 0
    with FeatureReader(tmp_path / "few.h5") as r:
        assert max(len(r[n]["keypoints"]) for n in r.names()) == 50


def test_cli_params_without_the_dataset_root_is_an_error(tmp_path):
    import yaml

    from posfeat.cli import main as cli_main

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"extract": {"eth": {"max_keypoints": 10}}}))
    with pytest.raises(DataError, match="datasets.eth is missing"):
        cli_main(
            [
                "extract",
                "--method",
                "sift",
                "--params",
                str(tmp_path / "params.yaml"),
                "--dataset",
                "eth",
                "--out",
                str(tmp_path / "x.h5"),
                "--debug",
            ]
        )
