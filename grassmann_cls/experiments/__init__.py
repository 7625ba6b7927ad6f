"""Experiments built on :mod:`grassmann_cls.training`: the demo, the sweep, studies and their reports.

Each experiment is a plain function that the ``grassmann-cls`` command calls
(``demo``, ``sweep``, ``transfer``, ...); the runs of one experiment share one
process-pool runner (:mod:`grassmann_cls.experiments.runner`).
"""
