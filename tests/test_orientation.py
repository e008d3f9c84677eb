"""Images are read as stored, as COLMAP reads them: a JPEG's EXIF orientation tag does not turn its pixels.

The benchmarks' cameras (``database.db``, ground truth) and pycolmap describe the stored pixels; a reader that
turned a photo tagged "rotate 90°" upright would put its keypoints 90° off its camera.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from PIL import Image

from posfeat.datasets.images import image_size, read_image
from posfeat.extraction import ExtractConfig, extract_dataset
from posfeat.io import FeatureReader

ORIENTATIONS = (3, 6, 8)  # 180°, 90° clockwise, 90° anticlockwise


def _texture(h: int = 96, w: int = 160) -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), (0, 0), 1.5)


def _with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The same JPEG (the same compressed pixels) with an EXIF block whose orientation tag is ``orientation``."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    block = exif.tobytes()
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(block) + 2) + block + jpeg[2:]


@pytest.fixture()
def photos(tmp_path):
    """``plain/`` and ``tagged/`` with the same JPEGs, the tagged ones carrying orientations 3, 6 and 8."""
    jpeg = cv2.imencode(".jpg", _texture())[1].tobytes()
    for d in ("plain", "tagged"):
        (tmp_path / d).mkdir()
    for o in ORIENTATIONS:
        (tmp_path / "plain" / f"{o}.jpg").write_bytes(jpeg)
        (tmp_path / "tagged" / f"{o}.jpg").write_bytes(_with_orientation(jpeg, o))
    return tmp_path


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_the_stored_pixels_are_read_as_pycolmap_reads_them(photos, orientation):
    import pycolmap

    tagged, plain = photos / "tagged" / f"{orientation}.jpg", photos / "plain" / f"{orientation}.jpg"
    with Image.open(tagged) as im:
        assert im.getexif().get(0x0112) == orientation  # the tag is there ...
    if orientation != 3:
        assert cv2.imread(str(tagged)).shape[:2] == (160, 96)  # ... and OpenCV's default would act on it
    ours = read_image(tagged)
    np.testing.assert_array_equal(ours, read_image(plain))
    np.testing.assert_array_equal(read_image(tagged, grayscale=True), read_image(plain, grayscale=True))
    bitmap = pycolmap.Bitmap.read(str(tagged), True)
    assert (bitmap.width, bitmap.height) == image_size(tagged) == (ours.shape[1], ours.shape[0]) == (160, 96)


def test_features_of_tagged_photos_equal_those_of_the_stored_pixels(photos):
    names = [f"{o}.jpg" for o in ORIENTATIONS]
    cfg = ExtractConfig(max_keypoints=300)
    for d in ("plain", "tagged"):
        extract_dataset("sift", photos / d, names, photos / f"{d}.h5", config=cfg, progress=False)
    with FeatureReader(photos / "plain.h5") as a, FeatureReader(photos / "tagged.h5") as b:
        for n in names:
            fa, fb = a[n], b[n]
            assert len(fa["keypoints"]) > 20
            np.testing.assert_array_equal(fb["image_size"], [160, 96])
            for key in ("keypoints", "descriptors", "scores"):
                np.testing.assert_array_equal(fa[key], fb[key])
