"""Measurements of the study: speed and memory (:mod:`benchmarks.speed`) and experiments that choose or check
settings (:mod:`benchmarks.experiments`). Run each from the repository root as ``python -m benchmarks.<folder>.<name>``;
the figures are recorded in benchmarks/README.md."""
