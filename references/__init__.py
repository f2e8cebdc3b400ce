"""In-process references: each pipeline run as its reference library runs
it, or as this repository's logic runs outside the server (the tests' and
benchmarks' baselines)."""
