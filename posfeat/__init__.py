"""PoSFeat (CVPR 2022) reimplemented as a reproducible study.

The library never reads ``params.yaml``; the DVC stages in ``stages/`` do, and call into it.
"""

__version__ = "0.1.0"
