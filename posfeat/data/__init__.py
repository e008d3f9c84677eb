"""Datasets: the benchmarks' readers, the training pairs, own photos and the demo world."""
