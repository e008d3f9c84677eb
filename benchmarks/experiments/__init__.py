"""Experiments that measure a setting's effect or a result's spread over seeds
(``python -m benchmarks.experiments.<name>``)."""
