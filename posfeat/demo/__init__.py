"""The demo world: a rendered, piecewise-planar world with exact ground truth.

:func:`generate_demo` writes four datasets in exactly the real datasets' on-disk formats
(docs/paper-scale.md#dataset-layouts):

* ``megadepth/<scene_id>/dense0/aligned/{images/*.jpg, img_cam.txt, pairs.txt}`` (CAPS layout; some scene
  ids are IMC-banned ids, and one scene in four has cameras all around it, so some overlapping pairs have a
  relative rotation above 80°);
* ``hpatches/<i_|v_name>/{1..6}.ppm, H_1_k`` (``i_*``: one view, photometric changes, identity homography;
  ``v_*``: one textured plane seen by six cameras, exact plane-induced homographies);
* ``aachen/`` in the Aachen Day-Night v1.1 layout, plus ``queries/ground_truth_queries.txt``;
* ``eth/<Scene>/images/*.jpg`` and ``gt_cameras.txt``.

Pixel conventions. Everything we write in our own text formats (``img_cam.txt``, ``gt_cameras.txt``, the
``H_1_k`` files) uses the project's convention: the centre of the top-left pixel is ``(0, 0)``. The Aachen
files are COLMAP files (``database_intrinsics_v1_1.txt``, the query lists and the reference model), and
COLMAP puts that centre at ``(0.5, 0.5)``: their principal points are ours + 0.5, exactly as a feature
importer that adds 0.5 to our keypoints expects. Poses are world→camera everywhere.

The package, one concept a module
    :mod:`~posfeat.demo.textures`    photo pool (train / eval split), procedural layers, grain, sky
    :mod:`~posfeat.demo.world`       per-item random streams, world building, lighting, cameras, rendering
    :mod:`~posfeat.demo.photometry`  per-image photometric change and the night style
    :mod:`~posfeat.demo.files`       images and text lines that every writer writes alike
    :mod:`~posfeat.demo.megadepth`   the MegaDepth writer (mirrors :mod:`posfeat.datasets.megadepth`)
    :mod:`~posfeat.demo.hpatches`    the HPatches writer (mirrors :mod:`posfeat.datasets.hpatches`)
    :mod:`~posfeat.demo.eth`         the ETH writer (mirrors :mod:`posfeat.datasets.eth`)
    :mod:`~posfeat.demo.aachen`      the Aachen writer (mirrors :mod:`posfeat.datasets.aachen`)
    :mod:`~posfeat.demo.generate`    :func:`generate_demo`, :func:`tree_digest`, the command line

Every scene and sequence has its own random stream (:func:`~posfeat.demo.world.item_rng`), so the
files depend on the seed and the sizes only, not on the number of worker processes.
"""

from posfeat.demo.aachen import write_aachen
from posfeat.demo.eth import ETH_SCENE_NAMES, eth_scene_name, write_eth, write_eth_scene
from posfeat.demo.generate import DEFAULT_SIZES, generate_demo, tree_digest
from posfeat.demo.hpatches import write_hpatches, write_hpatches_i, write_hpatches_v
from posfeat.demo.megadepth import MEGADEPTH_SCENE_IDS, megadepth_scene_ids, write_megadepth, write_megadepth_scene
from posfeat.demo.photometry import stylize
from posfeat.demo.textures import (
    EVAL_PHOTOS,
    TRAIN_PHOTOS,
    apply_grain,
    make_texture,
    photo_pool,
    sky_texture,
    value_noise,
)
from posfeat.demo.world import World, build_world, orbit_camera

__all__ = [
    "DEFAULT_SIZES",
    "ETH_SCENE_NAMES",
    "EVAL_PHOTOS",
    "MEGADEPTH_SCENE_IDS",
    "TRAIN_PHOTOS",
    "World",
    "apply_grain",
    "build_world",
    "eth_scene_name",
    "generate_demo",
    "make_texture",
    "megadepth_scene_ids",
    "orbit_camera",
    "photo_pool",
    "sky_texture",
    "stylize",
    "tree_digest",
    "value_noise",
    "write_aachen",
    "write_eth",
    "write_eth_scene",
    "write_hpatches",
    "write_hpatches_i",
    "write_hpatches_v",
    "write_megadepth",
    "write_megadepth_scene",
]
