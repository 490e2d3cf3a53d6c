"""The comparison benchmark suite (issue 8): scenarios against the simulator, the
competitors they run, the worker processes that run them, and the results page.

``benchmarks/run.py`` is the command; this package is its parts.
"""
