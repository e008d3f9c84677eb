"""The DAISY encoder (``model.encoder: daisy``): against an independent SciPy computation, its invariances,
its contract with the rest of PoSFeat, and its errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from posfeat.models import build_model, load_checkpoint, save_checkpoint
from posfeat.models.daisy import LUMA, DaisyEncoder, gaussian_blur, gaussian_kernel1d

DAISY_MODEL = {"encoder": "daisy", "desc_dim": 200, "det_conv1": 8, "det_img": 4, "det_mid": 8}


def _image(h=96, w=128, seed=0) -> np.ndarray:
    """A smooth random 3×h×w image in [0, 1]."""
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random((3, h, w)), (0, 1.5, 1.5))


def _scipy_daisy(img: np.ndarray, radius=15.0, rings=3, hists=8, oris=8) -> np.ndarray:
    """Hellinger-normalised dense DAISY at the cell centres ``4i + 1.5``, written with SciPy from the definition
    (full-resolution Gaussians, one blur per width, bilinear reads): ``(rings·hists + 1)·oris × H/4 × W/4``."""
    gray = sum(g * img[c] for c, g in enumerate(LUMA))
    p = np.pad(gray, 1, mode="edge")
    gx, gy = (p[1:-1, 2:] - p[1:-1, :-2]) / 2, (p[2:, 1:-1] - p[:-2, 1:-1]) / 2
    mag, theta = np.sqrt(gx**2 + gy**2 + 1e-12), np.arctan2(gy, gx)
    hist = np.stack(
        [mag * np.exp(oris / math.pi * np.cos(theta - (2 * math.pi * o / oris - math.pi))) for o in range(oris)]
    )
    sigmas = [radius * (i + 1) / (2 * rings) for i in range(rings)]
    h, w = gray.shape
    cy, cx = np.meshgrid(np.arange(h // 4) * 4 + 1.5, np.arange(w // 4) * 4 + 1.5, indexing="ij")
    parts = []
    for level, sigma in enumerate([sigmas[0]] + sigmas):
        smooth = [ndimage.gaussian_filter(c, sigma, mode="reflect") for c in hist]
        r = radius * level / rings
        points = (
            [(0.0, 0.0)]
            if level == 0
            else [(r * math.cos(2 * math.pi * j / hists), r * math.sin(2 * math.pi * j / hists)) for j in range(hists)]
        )
        for dx, dy in points:
            parts += [ndimage.map_coordinates(c, [cy + dy, cx + dx], order=1, mode="nearest") for c in smooth]
    d = np.stack(parts)
    return np.sqrt(d / (d.sum(0, keepdims=True) + 1e-10) + 1e-12)


def _ours(img: np.ndarray, encoder: DaisyEncoder | None = None) -> np.ndarray:
    enc = encoder or DaisyEncoder()
    with torch.no_grad():
        return enc(torch.from_numpy(img[None]).float())["local_map"][0].double().numpy()


def test_gaussian_blur_matches_scipy():
    x = np.random.default_rng(1).random((2, 30, 41))
    ours = gaussian_blur(torch.from_numpy(x[None]).float(), gaussian_kernel1d(2.2))[0].numpy()
    ref = np.stack([ndimage.gaussian_filter(c, 2.2, mode="reflect") for c in x])
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_initial_encoder_is_dense_daisy():
    """At initialisation (identity projection) the descriptor map is the SciPy DAISY of the same definition,
    up to the half-resolution pooling (cosine > 0.999 at every cell, values within 0.01)."""
    img = _image()
    ours, ref = _ours(img), _scipy_daisy(img)
    assert ours.shape == ref.shape == (200, 24, 32)
    cos = (ours * ref).sum(0) / np.linalg.norm(ours, axis=0) / np.linalg.norm(ref, axis=0)
    assert cos.min() > 0.999
    assert np.abs(ours - ref).max() < 0.01
    np.testing.assert_allclose(np.linalg.norm(ours, axis=0), 1.0, atol=1e-4)  # Hellinger: unit L2 norm


def test_descriptor_blind_to_gain_and_offset_and_shifts_with_the_image():
    img = _image(128, 160, seed=2)
    base = _ours(img)
    np.testing.assert_allclose(_ours(0.3 * img + 0.2), base, atol=1e-4)
    shifted = _ours(np.roll(img, (8, 4), axis=(1, 2)))  # 8 rows, 4 columns: 2 cells down, 1 right
    # cells 12 or more from every edge: the wrapped border lies beyond the rings (15 px) and the blurs (4σ = 30 px)
    np.testing.assert_allclose(shifted[:, 14:-10, 13:-11], base[:, 12:-12, 12:-12], atol=1e-4)


def test_projection_is_the_only_parameter_and_learns():
    enc = DaisyEncoder()
    assert [n for n, _ in enc.named_parameters()] == ["project.weight"]
    x = torch.from_numpy(_image()[None]).float()
    enc(x)["local_map"].square().sum().backward()
    assert enc.project.weight.grad is not None and enc.project.weight.grad.abs().sum() > 0
    small = DaisyEncoder(desc_dim=64)  # a smaller descriptor: an orthonormal projection of DAISY
    w = small.project.weight.view(64, 200)
    torch.testing.assert_close(w @ w.T, torch.eye(64), atol=1e-5, rtol=0)


def test_model_contract_and_checkpoint_round_trip(tmp_path):
    model = build_model(DAISY_MODEL).eval()
    x = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        out = model(x)
    assert out["local_map"].shape == (2, 200, 16, 20) and out["local_map_small"].shape == (2, 8, 16, 20)
    assert out["score"].shape == (2, 1, 64, 80) and bool((out["score"] >= 0).all())
    with torch.no_grad():
        model.backbone.project.weight.mul_(0.5).add_(0.01)
    save_checkpoint(tmp_path / "d.pt", model)
    loaded, _ = load_checkpoint(tmp_path / "d.pt")
    with torch.no_grad():
        again = loaded.eval()(x)
        out = model(x)
    torch.testing.assert_close(again["local_map"], out["local_map"])
    torch.testing.assert_close(again["score"], out["score"])


def test_bad_configs_and_inputs_are_refused():
    with pytest.raises(ValueError, match="decoder"):
        build_model({**DAISY_MODEL, "decoder": [64, 32]})
    with pytest.raises(ValueError, match="pretrained"):
        build_model({**DAISY_MODEL, "pretrained": True})
    with pytest.raises(ValueError, match="multiples of 4"):
        DaisyEncoder()(torch.rand(1, 3, 30, 40))
    with pytest.raises(ValueError, match="B×3×H×W"):
        DaisyEncoder()(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="radius"):
        DaisyEncoder(radius=0)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_kernel1d(0.0)
