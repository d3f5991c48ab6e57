"""Keep a bare ``pytest`` run from the repository root to the test suite."""

collect_ignore = ["examples", "benchmarks", "noxfile.py"]
