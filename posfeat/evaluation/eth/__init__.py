"""The ETH local feature benchmark: settings, a scene's COLMAP database and image pairs, the reconstruction
run (:mod:`.evaluate`) and its results."""
