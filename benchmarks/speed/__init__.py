"""Speed, memory and growth measurements (each a ``python -m benchmarks.speed.<name>`` script), and the GPU check."""
