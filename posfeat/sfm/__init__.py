"""Structure from motion through pycolmap.

The COLMAP database, cameras and models (:mod:`.colmap`), descriptor matching into a database (:mod:`.matching`),
two-view verification (:mod:`.verification`), the steps the evaluations share (:mod:`.steps`), retrieval pairs
(:mod:`.retrieval`), initial focal lengths from two-view geometry (:mod:`.two_view_focals`) and incremental mapping
with self-calibration (:mod:`.reconstruction`).
"""
