"""Your own photos as a training set: the settings (:mod:`.config`), one collection's reconstruction
(:mod:`.reconstruct`) and the MegaDepth layout written from it (:mod:`.build`)."""
