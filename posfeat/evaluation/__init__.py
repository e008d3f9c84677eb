"""The benchmarks' evaluations: HPatches MMA, Aachen localization, ETH reconstruction, their metrics."""
