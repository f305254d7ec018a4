"""Evaluation: methods on the same held-out episodes (:mod:`londi.evaluation.loop`), metrics
with confidence intervals, the report with plots, and resumable sweeps."""
