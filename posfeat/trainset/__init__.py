"""The training set: the pair index built from MegaDepth metadata (:mod:`.prepare`), the metadata manifest,
the seeded batch order and the pair dataset with its augmentation (:mod:`.pairs`)."""
