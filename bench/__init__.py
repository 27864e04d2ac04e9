"""Benchmarks: ``python -m bench [NAME ...]`` (``make bench``).

Not part of the test suite (pytest collects only ``tests/``): they take minutes, start
servers, and their figures depend on the machine.  Each benchmark prints a table of
figures with its targets; see ``docs/benchmarks.md``.
"""
