"""Training pairs over the prepared MegaDepth index (docs/method.md#conventions), reproducible and crash-free.

The index (written by the ``prepare_megadepth`` stage) is a JSON object::

    {"root": "<dataset root>",
     "images": {"<scene>/<dense>/aligned/images/<name>": {"width", "height", "K" 3x3, "R" 3x3, "t" [3]}},
     "train": [[keyA, keyB], ...], "val": [[keyA, keyB], ...]}

with image keys relative to ``root`` and world→camera poses.

Differences from the original ``MegaDepth_SIFT`` (on purpose):

* a sample never comes back as ``None``: an unreadable image (or a degenerate pose) is logged, counted
  and replaced by another pair chosen deterministically from the sample's seed;
* no per-sample SIFT (the stage-1 loss makes its own grid points, §7.4.12);
* images are resized to a fixed training size and the intrinsics follow the resize exactly;
* colour jitter draws its factors from an explicit per-sample generator, so the data of step ``s`` is a
  function of ``(seed, s)`` only — that is what makes resumed training bit-identical on CPU;
* optional *exact* view augmentation of the second image (:func:`view_augmentation`): an in-plane camera
  rotation and a zoom, applied as the homography they induce, with the camera (``K2``, ``R2``, ``t2``) and
  so the fundamental matrices updated to match. Real photographs rotate and change scale between views far
  more than the demo world's orbit cameras do (HPatches ``v_*``, internet photos).
"""

from __future__ import annotations

import os
from collections import abc
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset

from posfeat.datasets.camera import is_rotation
from posfeat.datasets.images import read_image
from posfeat.geometry import fundamental_from_poses, relative_pose
from posfeat.io import DataError, read_json
from posfeat.trainset.batch_order import derive_seed
from posfeat.utils import get_logger

logger = get_logger(__name__)

MAX_REPLACEMENTS = 20


# -------------------------------------------------------------------------------------- geometry
def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics of an image resized by ``(sx, sy)`` under the pixel-centre convention.

    With the centre of the top-left pixel at ``(0, 0)``, pixel ``i`` covers ``[i − 0.5, i + 0.5]``; the
    image's outer edge ``−0.5`` stays fixed by a resize, so ``x' = (x + 0.5)·s − 0.5`` (this is also the
    mapping ``cv2.resize`` uses). Folding that into ``K``::

        K' = [[sx, 0, (sx − 1)/2], [0, sy, (sy − 1)/2], [0, 0, 1]] @ K

    i.e. ``fx' = sx·fx``, ``cx' = sx·(cx + 0.5) − 0.5`` (and the skew scales with ``sx``).
    """
    S = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    return S @ np.asarray(K, dtype=np.float64)


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``H×W×3`` uint8 to ``size = (W, H)``: area averaging when shrinking, bilinear otherwise."""
    w, h = size
    if img.shape[1] == w and img.shape[0] == h:
        return img
    shrink = w < img.shape[1] or h < img.shape[0]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


# ------------------------------------------------------------------------------ view augmentation
def view_augmentation(
    K: np.ndarray, size: tuple[int, int], angle_deg: float, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact image warp of rotating a camera about its optical axis and zooming about the image centre.

    A camera ``P = K [R | t]`` rotated by ``Rz(angle)`` about its optical axis and zoomed by ``scale``
    (a similarity ``A`` about the image centre ``((W−1)/2, (H−1)/2)``) becomes ``P' = A K Rz [R | t]``: its
    image is the old one warped by ``Hw = A K Rz K⁻¹`` whatever the scene's depth, and its camera is
    ``K' = A K``, ``R' = Rz R``, ``t' = Rz t``. Positive angles turn the image content clockwise on screen.

    Returns:
        ``(Hw, K', Rz)``: 3×3 pixel homography (old → new pixel), new intrinsics, the camera rotation.
    """
    W, H = size
    a = np.deg2rad(float(angle_deg))
    Rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    cx, cy = (W - 1) / 2.0, (H - 1) / 2.0
    A = np.array([[scale, 0.0, cx - scale * cx], [0.0, scale, cy - scale * cy], [0.0, 0.0, 1.0]])
    K = np.asarray(K, np.float64)
    Hw = A @ K @ Rz @ np.linalg.inv(K)
    return Hw / Hw[2, 2], A @ K, Rz


def warp_image(img: np.ndarray, Hw: np.ndarray) -> np.ndarray:
    """``img`` (H×W×3 uint8) warped by the pixel homography ``Hw`` (old → new), same size, black outside."""
    h, w = img.shape[:2]
    return cv2.warpPerspective(
        img, Hw, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0)
    )


# ----------------------------------------------------------------------------------- colour jitter
def color_jitter(
    img: torch.Tensor,
    strength: Sequence[float],
    generator: torch.Generator,
) -> torch.Tensor:
    """``ColorJitter(brightness, contrast, saturation, hue)`` with factors drawn from ``generator``.

    Same distribution as ``torchvision.transforms.v2.ColorJitter``: brightness/contrast/saturation
    factors uniform in ``[max(0, 1 − v), 1 + v]``, hue in ``[−h, h]``, the four ops in a random order.
    ``img``: ``3×H×W`` float in ``[0, 1]``.
    """
    b, c, s, h = (float(v) for v in strength)
    if not 0.0 <= h <= 0.5:
        raise ValueError(f"hue jitter must lie in [0, 0.5], got {h}")
    order = torch.randperm(4, generator=generator).tolist()
    u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    factors = [
        max(0.0, 1 - b) + u[0] * (1 + b - max(0.0, 1 - b)),
        max(0.0, 1 - c) + u[1] * (1 + c - max(0.0, 1 - c)),
        max(0.0, 1 - s) + u[2] * (1 + s - max(0.0, 1 - s)),
        -h + u[3] * 2 * h,
    ]
    for op in order:
        if op == 0 and b > 0:
            img = TF.adjust_brightness(img, factors[0])
        elif op == 1 and c > 0:
            img = TF.adjust_contrast(img, factors[1])
        elif op == 2 and s > 0:
            img = TF.adjust_saturation(img, factors[2])
        elif op == 3 and h > 0:
            img = TF.adjust_hue(img, factors[3])
    return img.clamp_(0.0, 1.0)


def night_look(img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A night-like version of a ``3×H×W`` image in ``[0, 1]`` (a photometric change only: no pixel moves).

    In linear light (gamma 2.2) the image is dimmed by a gain log-uniform in ``[0.03, 0.3]``, lit by a smooth
    random field (street-light pools, 0.3–1.7× from a 3×4 grid), tinted sodium-orange or cold blue; back
    in sRGB it gets sensor noise (σ uniform in ``[0.01, 0.04]``) and is clipped to ``[0, 1]``.
    """
    _, h, w = img.shape
    u = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
    gain = float(np.exp(np.log(0.03) + u[0] * (np.log(0.3) - np.log(0.03))))
    cast = torch.tensor([1.3, 1.0, 0.6] if u[1] < 0.6 else [0.75, 0.9, 1.3], dtype=img.dtype).view(3, 1, 1)
    grid = 0.3 + 1.4 * torch.rand(1, 1, 3, 4, generator=generator, dtype=img.dtype)
    light = torch.nn.functional.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)[0].clamp_min(0.05)
    x = (img.clamp(0, 1) ** 2.2) * (gain * light * cast)
    x = x.clamp(0, 1) ** (1 / 2.2)
    sigma = 0.01 + 0.03 * u[2]
    x = x + sigma * torch.randn(img.shape, generator=generator, dtype=img.dtype)
    return x.clamp_(0.0, 1.0)


# ------------------------------------------------------------------------------------------ index
def read_index(index: str | os.PathLike | dict, root_base: str | os.PathLike | None = None) -> tuple[dict, Path]:
    """Read and check a pair index written by :func:`prepare_megadepth` (a path, or the dict itself).

    Checks the keys (``root``, ``images``, ``train``; ``val`` optional), that every image has a width, height,
    3×3 ``K``, rotation ``R`` and 3-vector ``t``, and that every pair names two listed images; a violation is a
    :class:`~posfeat.io.DataError` naming the file and the entry.

    Returns ``(index, root)``: the index as written, and its dataset root resolved. A relative ``root`` is
    taken relative to ``root_base`` when given (a DVC stage's repository); else relative to the working
    directory, or, if nothing is there, to the index file's folder.
    """
    where, base = "<index dict>", None
    if not isinstance(index, dict):
        where, base = str(index), Path(index).resolve().parent
        index = read_json(index)
    for key in ("root", "images", "train"):
        if key not in index:
            raise DataError(f"{where}: expected key {key!r} in the MegaDepth pair index, found {sorted(index)}")
    for name, cam in index["images"].items():
        try:
            K, R, t = np.asarray(cam["K"], float), np.asarray(cam["R"], float), np.asarray(cam["t"], float)
            ok = K.shape == (3, 3) and t.shape == (3,) and int(cam["width"]) > 0 and int(cam["height"]) > 0
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok or not is_rotation(R):
            raise DataError(f"{where}: expected width, height, K (3x3), R (rotation) and t (3) for image {name!r}")
    for split in ("train", "val"):
        for i, pair in enumerate(index.get(split, [])):
            if len(pair) != 2 or any(n not in index["images"] for n in pair):
                raise DataError(f"{where}: {split}[{i}] = {pair!r}: expected two image keys listed under 'images'")
    root = Path(str(index["root"]))
    if not root.is_absolute():
        if root_base is not None:
            root = Path(root_base) / root
        elif not root.exists() and base is not None and (base / root).exists():
            root = base / root
    return index, root


class PairKeys(abc.Sequence):
    """``(key1, key2)`` of each pair, read from a dataset's key table and pair rows."""

    def __init__(self, keys: np.ndarray, rows: np.ndarray):
        self._keys, self._rows = keys, rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> tuple[str, str]:
        a, b = self._rows[i]
        return str(self._keys[a]), str(self._keys[b])


class PairDataset(Dataset):
    """Image pairs with their epipolar geometry, resized to a fixed training size.

    Items are either an ``int`` (pair index; the jitter seed is derived from ``(seed, index)``) or a
    ``(pair_index, sample_seed)`` tuple as produced by :class:`StepBatchSampler`.

    Each sample is a dict: ``image1``, ``image2`` (``3×H×W`` float in ``[0, 1]``), ``F12``, ``F21``,
    ``K1``, ``K2`` (``3×3`` float32, for the resized images), ``R``, ``t`` (relative pose,
    ``X_cam2 = R X_cam1 + t``), ``name1``, ``name2``, ``pair_index`` (the pair actually used) and
    ``skipped`` (how many unusable pairs were replaced to produce this sample).

    Args:
        index: path of the index JSON, or the index dict.
        split: ``"train"`` or ``"val"``.
        image_size: training size ``(W, H)``.
        color_jitter: ``(brightness, contrast, saturation, hue)`` or ``None``; applied independently
            to each image of a pair.
        seed: base seed.
        rotation: the second image's camera turns about its optical axis by an angle uniform in
            ``[−rotation, rotation]`` degrees (:func:`view_augmentation`); 0 disables it.
        scale: ``(min, max)`` zoom of the second image, log-uniform; ``(1, 1)`` disables it.
        grayscale: probability that an image (each independently, after the colour jitter) is turned into
            grey (ITU-R 601 luma in all three channels); 0 disables it.
        night: probability that an image (each independently, after the jitter) gets :func:`night_look`;
            0 disables it.
    """

    def __init__(
        self,
        index: str | os.PathLike | dict,
        split: str = "train",
        image_size: tuple[int, int] = (640, 480),
        color_jitter: Sequence[float] | None = None,
        seed: int = 0,
        rotation: float = 0.0,
        scale: Sequence[float] = (1.0, 1.0),
        grayscale: float = 0.0,
        night: float = 0.0,
        crop: Sequence[float] = (1.0, 1.0),
    ):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        index, self.root = read_index(index)
        self.split = split
        self._set_tables(index)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.color_jitter = None if color_jitter is None else tuple(float(v) for v in color_jitter)
        self.seed = int(seed)
        self.rotation = float(rotation)
        self.grayscale = float(grayscale)
        if not 0.0 <= self.grayscale <= 1.0:
            raise ValueError(f"grayscale must be a probability in [0, 1], got {grayscale}")
        self.night = float(night)
        if not 0.0 <= self.night <= 1.0:
            raise ValueError(f"night must be a probability in [0, 1], got {night}")
        self.scale = (float(scale[0]), float(scale[1]))
        if self.rotation < 0 or not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"need rotation >= 0 and 0 < scale[0] <= scale[1], got {rotation}, {tuple(scale)}")
        self.crop = (float(crop[0]), float(crop[1]))
        if not 1.0 <= self.crop[0] <= self.crop[1]:
            raise ValueError(f"crop must be a resolution range 1 <= min <= max, got {tuple(crop)}")
        self.num_skipped = 0  # in this process (workers keep their own count; use the 'skipped' field)

    def _set_tables(self, index: dict) -> None:
        """The index as flat arrays: image keys (fixed-width strings), sizes and cameras per image row, and each
        pair as two rows. No Python object per pair or image is kept, so the data loader's worker processes,
        which only read these, share the pages they inherit instead of copying them as reference counts change
        (a pair list of Python strings grows every worker's memory with the number of pairs)."""
        images = index["images"]
        keys = sorted(images)
        row = {k: i for i, k in enumerate(keys)}
        self.keys = np.array(keys, dtype=str)
        self.sizes = np.array([[int(images[k]["width"]), int(images[k]["height"])] for k in keys], np.int64)
        self.K = np.array([images[k]["K"] for k in keys], np.float64).reshape(-1, 3, 3)
        self.R = np.array([images[k]["R"] for k in keys], np.float64).reshape(-1, 3, 3)
        self.t = np.array([images[k]["t"] for k in keys], np.float64).reshape(-1, 3)
        self.pair_rows = np.array([[row[a], row[b]] for a, b in index.get(self.split, [])], np.int64).reshape(-1, 2)

    @property
    def pairs(self) -> "PairKeys":
        """The pairs as ``(key1, key2)`` tuples (a read-only sequence over the arrays)."""
        return PairKeys(self.keys, self.pair_rows)

    def __len__(self) -> int:
        return len(self.pair_rows)

    # ------------------------------------------------------------------------------------------
    def _load(
        self, r: int, factor: float = 1.0, where: tuple[float, float] = (0.5, 0.5)
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Image of row ``r`` at the training size with its camera. ``factor > 1``: the image is resized to
        ``factor ×`` the training size (at most its own resolution) and the training-size window at relative
        position ``where`` (0 = left/top, 1 = right/bottom) is cut out; ``K`` follows the resize and the cut."""
        path = self.root / str(self.keys[r])
        img = read_image(path)
        w, h = int(self.sizes[r, 0]), int(self.sizes[r, 1])
        if img.shape[1] != w or img.shape[0] != h:
            raise DataError(f"{path}: image is {img.shape[1]}x{img.shape[0]} but the index says {w}x{h}")
        W, H = self.image_size
        factor = min(factor, max(1.0, min(w / W, h / H)))
        Ws, Hs = (W, H) if factor == 1.0 else (max(W, int(round(W * factor))), max(H, int(round(H * factor))))
        K = scale_intrinsics(self.K[r].copy(), Ws / w, Hs / h)
        R = self.R[r].copy()
        t = self.t[r].copy()
        img = resize_image(img, (Ws, Hs))
        if (Ws, Hs) != (W, H):
            x0, y0 = int(round(where[0] * (Ws - W))), int(round(where[1] * (Hs - H)))
            img = np.ascontiguousarray(img[y0 : y0 + H, x0 : x0 + W])
            K = K.copy()
            K[0, 2] -= x0
            K[1, 2] -= y0
        return img, K, R, t

    def _make(self, idx: int, gen: torch.Generator) -> dict:
        r1, r2 = (int(v) for v in self.pair_rows[idx])
        k1, k2 = str(self.keys[r1]), str(self.keys[r2])
        factor, where = 1.0, (0.5, 0.5)
        if self.crop != (1.0, 1.0):  # one resolution and one window position for both images of the pair
            u = torch.rand(3, generator=gen, dtype=torch.float64).tolist()
            factor = float(np.exp(np.log(self.crop[0]) + u[0] * (np.log(self.crop[1]) - np.log(self.crop[0]))))
            where = (u[1], u[2])
        img1, K1, R1, t1 = self._load(r1, factor, where)
        img2, K2, R2, t2 = self._load(r2, factor, where)
        if self.rotation > 0 or self.scale != (1.0, 1.0):
            u = torch.rand(2, generator=gen, dtype=torch.float64).tolist()
            angle = (2 * u[0] - 1) * self.rotation
            zoom = float(np.exp(np.log(self.scale[0]) + u[1] * (np.log(self.scale[1]) - np.log(self.scale[0]))))
            Hw, K2, Rz = view_augmentation(K2, self.image_size, angle, zoom)
            img2, R2, t2 = warp_image(img2, Hw), Rz @ R2, Rz @ t2
        R, t = relative_pose(R1, t1, R2, t2)
        if np.linalg.norm(t) < 1e-9 * max(1.0, np.linalg.norm(t1), np.linalg.norm(t2)):
            raise DataError(f"pair ({k1}, {k2}): no baseline, the epipolar geometry is undefined")
        F12 = fundamental_from_poses(K1, R1, t1, K2, R2, t2)
        F21 = fundamental_from_poses(K2, R2, t2, K1, R1, t1)
        ims = []
        for img in (img1, img2):
            x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
            if self.color_jitter is not None:
                x = color_jitter(x, self.color_jitter, gen)
            if self.grayscale > 0 and float(torch.rand(1, generator=gen, dtype=torch.float64)) < self.grayscale:
                x = TF.rgb_to_grayscale(x, num_output_channels=3)
            if self.night > 0 and float(torch.rand(1, generator=gen, dtype=torch.float64)) < self.night:
                x = night_look(x, gen)
            ims.append(x)
        f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        return {
            "image1": ims[0],
            "image2": ims[1],
            "F12": f32(F12),
            "F21": f32(F21),
            "K1": f32(K1),
            "K2": f32(K2),
            "R": f32(R),
            "t": f32(t),
            "name1": k1,
            "name2": k2,
            "pair_index": idx,
        }

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        if isinstance(item, (tuple, list)):
            idx, sample_seed = int(item[0]), int(item[1])
        else:
            idx, sample_seed = int(item), derive_seed(self.seed, int(item), 0x5EED)
        if not 0 <= idx < len(self):
            raise IndexError(f"pair index {idx} out of range for {len(self)} {self.split} pairs")
        skipped = 0
        for attempt in range(MAX_REPLACEMENTS + 1):
            gen = torch.Generator().manual_seed(derive_seed(sample_seed, attempt))
            try:
                sample = self._make(idx, gen)
            except DataError as e:
                skipped += 1
                self.num_skipped += 1
                new = int(np.random.default_rng(derive_seed(sample_seed, attempt, 0xBAD)).integers(len(self)))
                logger.warning(
                    "skipping %s pair %d (%s); using pair %d instead [%d skipped so far here]",
                    self.split,
                    idx,
                    e,
                    new,
                    self.num_skipped,
                )
                idx = new
                continue
            sample["skipped"] = skipped
            return sample
        raise DataError(
            f"{MAX_REPLACEMENTS + 1} unusable {self.split} pairs in a row under {self.root}: "
            "check the dataset root and the prepared index"
        )
