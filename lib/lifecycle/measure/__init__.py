"""How the course measures: timing, stand-in models, and what the benchmarks and lessons share."""
