"""Photometry of the demo images: the per-image change of exposure, colour, shading, blur and noise, and
the night style of night queries (:func:`stylize`)."""

from __future__ import annotations

import cv2
import numpy as np


def stylize(image: np.ndarray, rng: np.random.Generator, style: str = "day") -> np.ndarray:
    """Per-image photometric change → uint8 RGB.

    ``day``: exposure, gamma, colour cast, smooth shading, mild blur, sensor noise. ``strong``: the same with
    larger changes (HPatches illumination sequences). ``night``: dark, orange or blue cast, a few light pools,
    strong noise. Blurs are isotropic Gaussians, so the geometry does not move.
    """
    h, w = image.shape[:2]
    x = image.astype(np.float32) / 255.0
    shade_grid = rng.uniform(0.75, 1.25, size=(3, 4)).astype(np.float32)
    shade = cv2.resize(shade_grid, (w, h), interpolation=cv2.INTER_CUBIC)[:, :, None]
    if style == "night":
        gain = rng.uniform(0.2, 0.4)
        cast = np.array([1.35, 1.0, 0.55]) if rng.random() < 0.5 else np.array([0.7, 0.9, 1.35])
        lights = np.zeros((h, w), np.float32)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        for _ in range(int(rng.integers(1, 4))):
            lx, ly, sd = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.1, 0.3) * w
            lights += rng.uniform(1.0, 3.0) * np.exp(-((xx - lx) ** 2 + (yy - ly) ** 2) / (2 * sd * sd))
        x = x * shade * (gain * (1.0 + lights))[:, :, None] * cast.astype(np.float32)
        gamma, blur, noise = rng.uniform(1.0, 1.3), rng.uniform(0.4, 0.9), rng.uniform(2.0, 5.0)
    else:
        big = style == "strong"
        gain = float(np.exp(rng.normal(0, 0.45 if big else 0.2)))
        cast = np.exp(rng.normal(0, 0.15 if big else 0.05, size=3)).astype(np.float32)
        x = x * shade * gain * cast
        gamma = float(np.exp(rng.normal(0, 0.25 if big else 0.1)))
        blur = rng.uniform(0.3, 1.0) if rng.random() < 0.4 else 0.0
        noise = rng.uniform(0.5, 3.0)
    x = np.clip(x, 0, 1) ** gamma
    if blur > 0:
        x = cv2.GaussianBlur(x, (0, 0), blur)
    x = x * 255.0 + rng.normal(0, noise, size=x.shape).astype(np.float32)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)
