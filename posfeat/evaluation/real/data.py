"""The real-data folder and the test sets derived from its ``megadepth-strecha/<scene>`` photographs:
HPatches-layout viewpoint sequences (random camera turns and zooms), synthetic night versions of the images, and
the scenes in the ETH layout. Each is written to a temporary folder renamed into place when complete, and an
existing one is reused.

The real-data folder, assembled from public releases (none of it is training data)::

    hpatches-oxford/v_boat/{1..6}.ppm, H_1_2 .. H_1_6
        the sequence ``v_boat`` of the HPatches sequences release (hpatches-sequences-release.tar.gz of
        github.com/hpatches/hpatches-dataset), unchanged; any other HPatches sequence folder is measured too.
    megadepth-strecha/strecha_castle/dense0/aligned/{images/NNNN.jpg, img_cam.txt, pairs.txt}
    megadepth-strecha/strecha_entry/dense0/aligned/...
        Strecha et al.'s dense multi-view scenes castle-P19 and entry-P10 (the EPFL CVLab "multi-view
        evaluation" release: JPEG images and one ``.camera`` file per image), in the MegaDepth layout that
        ``prepare_megadepth`` reads: images downscaled to 768 px wide and renamed 0000.jpg, ...; ``img_cam.txt``
        one line per image ``name w h fx fy cx cy R(3x3 row-major, world->camera) t`` with K scaled to the
        new width, R = Rc^T and t = -Rc^T C from the ``.camera`` file's camera-to-world rotation Rc and centre C;
        ``pairs.txt`` one ``nameA nameB`` line per pair (here: every pair of the scene).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from posfeat.datasets.images import list_images, read_image
from posfeat.demo.files import write_image
from posfeat.demo.photometry import stylize
from posfeat.io import DataError

STRECHA = "megadepth-strecha"
"""The folder of the real-data folder holding the Strecha scenes in the MegaDepth layout."""


def strecha_scenes(data: Path) -> list[Path]:
    """The scene folders of ``<data>/megadepth-strecha``, sorted by name."""
    root = Path(data) / STRECHA
    if not root.is_dir():
        raise DataError(f"{root}: Strecha scene folder not found (expected <scene>/dense0/aligned/ there)")
    return sorted(p for p in root.iterdir() if p.is_dir())


def aligned_dir(megadepth_scene: Path) -> Path:
    """The first ``dense*/aligned`` folder of a MegaDepth-layout scene (``images/``, ``img_cam.txt``)."""
    found = next(Path(megadepth_scene).glob("dense*/aligned"), None)
    if found is None:
        raise DataError(f"{megadepth_scene}: expected a dense*/aligned folder (images/, img_cam.txt), found none")
    return found


def viewpoint_homography(
    w: int,
    h: int,
    rng: np.random.Generator,
    max_tilt: float = 35.0,
    max_roll: float = 10.0,
    zoom: tuple[float, float] = (1.0, 1.8),
    tries: int = 1000,
) -> np.ndarray:
    """A random HPatches-viewpoint-like homography ``H`` (reference pixels → target pixels) of a ``w×h`` image,
    normalised to ``H[2, 2] = 1``: the camera turned about its centre (pan and tilt up to ``max_tilt``°, roll up to
    ``max_roll``°; f = max(w, h)) and zoomed in (``zoom``, log-uniform), resampled until the whole target lies
    inside the reference."""
    f = float(max(w, h))
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], np.float64).T
    for _ in range(tries):
        pan, tilt = rng.uniform(-max_tilt, max_tilt, 2)
        roll = rng.uniform(-max_roll, max_roll)
        z = float(np.exp(rng.uniform(*np.log(zoom))))
        R = cv2.Rodrigues(np.deg2rad([tilt, pan, roll]))[0]
        Kz = K.copy()
        Kz[0, 0] = Kz[1, 1] = f * z
        H = Kz @ R @ np.linalg.inv(K)
        back = np.linalg.inv(H) @ corners  # the target's corners in the reference
        if (back[2] > 0).all():
            xy = back[:2] / back[2]
            if (xy[0] >= 0).all() and (xy[0] <= w - 1).all() and (xy[1] >= 0).all() and (xy[1] <= h - 1).all():
                return H / H[2, 2]
    raise RuntimeError(f"no homography of a {w}x{h} image kept the target inside in {tries} tries")


def _write_warped_sequence(ref: np.ndarray, seq: Path, rng: np.random.Generator) -> None:
    """``seq/1.png`` = ``ref``, then targets ``2..6.png`` through :func:`viewpoint_homography` with a gain and a
    gamma each in 0.8-1.25, and their ``H_1_k``."""
    h, w = ref.shape[:2]
    write_image(seq / "1.png", ref, 95)
    for k in range(2, 7):
        H = viewpoint_homography(w, h, rng)
        im = cv2.warpPerspective(ref, H, (w, h), flags=cv2.INTER_LINEAR).astype(np.float64) / 255.0
        im = np.clip(rng.uniform(0.8, 1.25) * im ** rng.uniform(0.8, 1.25), 0, 1)
        write_image(seq / f"{k}.png", (im * 255.0 + 0.5).astype(np.uint8), 95)
        np.savetxt(seq / f"H_1_{k}", H)


def warped_sequences(data: Path, out: Path, per_scene: int = 2, seed: int = 0) -> Path:
    """HPatches-layout viewpoint sequences made of real photographs, in ``out`` (reused when present): for
    ``per_scene`` evenly spaced images of every ``megadepth-strecha`` scene, a sequence
    ``v_<scene>_<image stem>`` of the image and 5 targets through :func:`viewpoint_homography` with a mild
    photometric change (gain 0.8-1.25, gamma 0.8-1.25), seeded by ``[seed, image index, len(scene name)]``.
    A proxy for HPatches ``v_*`` with moderate rotation (``v_boat`` is the rotated extreme); synthetic warps,
    not real viewpoint changes."""
    out = Path(out)
    if out.is_dir():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for md_scene in strecha_scenes(data):
        images = aligned_dir(md_scene) / "images"
        names = list_images(images)
        for j, name in enumerate(names[:: max(1, len(names) // per_scene)][:per_scene]):
            rng = np.random.default_rng([seed, j, len(md_scene.name)])
            _write_warped_sequence(read_image(images / name), tmp / f"v_{md_scene.name}_{Path(name).stem}", rng)
    if not tmp.is_dir():
        raise DataError(f"{Path(data) / STRECHA}: expected scenes with images to warp, found none")
    tmp.rename(out)
    return out


def night_images(src: Path, names: list[str], out: Path, seed: int = 0) -> Path:
    """A night version of every image ``src/<name>`` in ``out/<name>`` (reused when present): the demo world's
    night style (:func:`~posfeat.demo.photometry.stylize`) seeded by ``[seed, index of the name]``, a synthetic
    stand-in for night photographs, which the real-data folder does not have."""
    out = Path(out)
    if not out.is_dir():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for i, name in enumerate(names):
            write_image(
                tmp / name, stylize(read_image(Path(src) / name), np.random.default_rng([seed, i]), "night"), 92
            )
        tmp.rename(out)
    return out


def write_eth_scene(megadepth_scene: Path, out: Path) -> Path:
    """A MegaDepth-layout scene (``dense*/aligned/{images, img_cam.txt}``) as an ETH-layout scene in ``out``
    (``images/`` and ``gt_cameras.txt``, the ``img_cam.txt`` lines); reused when ``out/images`` exists."""
    aligned = aligned_dir(megadepth_scene)
    out = Path(out)
    if not (out / "images").is_dir():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(aligned / "images", tmp / "images")
        shutil.copy(aligned / "img_cam.txt", tmp / "gt_cameras.txt")
        tmp.rename(out)
    return out
