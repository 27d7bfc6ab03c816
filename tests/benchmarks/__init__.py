"""Benchmarks run by ``make bench`` (``python -m tests.benchmarks``); not collected by pytest.

Each ``bench_*.py`` module defines ``run(report)`` and records its figures on the ``Report``
(see ``common.py``). Every speed figure is a ratio against a peer measured in the same run.
"""
