"""A trained PoSFeat model against SIFT on real photographs with ground truth, images the study never trains on:
the HPatches ``v_*`` sequences of a real-data folder, viewpoint sequences warped from the Strecha photographs, the
epipolar precision of the Strecha pairs by day and against a synthetic night, and the Strecha scenes reconstructed
as ETH-layout scenes; the derived test sets in :mod:`.data`, the measurement in :mod:`.run`."""

PARTS = ("hpatches", "warped", "epipolar", "epipolar_night", "eth")
"""The parts of the measurement, in the order they run (the CLI's ``--only`` choices; this module imports nothing)."""
