"""Benchmarks of sparsescale against naive code, scikit-learn and the machine's DGEMM rate.

Not part of the product and not run in CI: ``python -m bench`` (or ``make bench``)
prints a table and writes ``results/bench/latest.json``. The naive reference
implementation lives in :mod:`bench.reference`, apart from the product code.
"""
