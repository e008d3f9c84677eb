"""The benchmarks' and MegaDepth's readers.

Images (:mod:`.images`), HPatches, ETH, Aachen Day-Night (and its release layouts), MegaDepth in the CAPS
layout, the images each benchmark's evaluation needs (:mod:`.benchmarks`), and internet-style test collections
cut from a calibrated scene (:mod:`.internet`).
"""
