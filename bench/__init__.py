"""Benchmarks that measure qmsflow against its peers side by side, in one run, and print ratios.

``python -m bench`` runs every benchmark, prints one table and writes it to ``bench/RESULTS.md`` with
the machine's description and the date. Each ratio is against a baseline measured in the same run,
never against an absolute number, so a slower or busier machine moves both sides. Every peer ends in
the same final states as qmsflow, and the run checks that instead of assuming it.

Benchmarks are not tests: CI runs ``--smoke`` (tiny sizes, seconds) only to keep them alive.
"""

from __future__ import annotations
