"""Token and cost accounting: the ``Usage`` value, SDK response shapes, prices and ledgers.

A primitive layer: it reads response objects and records, does no I/O of its
own, and imports nothing above the primitives.
"""
