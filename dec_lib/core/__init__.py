"""The algorithm's drivers.

The phases as plain functions, and the ``DEC`` estimator that chains them.
"""
