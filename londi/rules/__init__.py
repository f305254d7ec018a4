"""Switch rules: what decides, step by step, whether QUICK or DEEPTHINK acts.

One family per module: :mod:`~londi.rules.base` (the interface, the fixed ends of the curve and
the greedy learned switch), :mod:`~londi.rules.simple` (random, periodic, first-B),
:mod:`~londi.rules.heuristic` (SwiftSage-style hand rules), :mod:`~londi.rules.threshold`
(score thresholds and their calibration to a call rate; the uncertainty rule),
:mod:`~londi.rules.router` (a step-level router), :mod:`~londi.rules.task_router` (a per-episode
router), :mod:`~londi.rules.oracle` (the hindsight oracle) and :mod:`~londi.rules.calibrated` (a
trained switch at a calibrated cost weight). :mod:`~londi.rules.offline` holds what the rules
that play offline episodes share. Each method's name, options and builder are in
:mod:`londi.evaluation.registry`.
"""
from londi.rules.base import AlwaysDeepthink, AlwaysQuick, LearnedSwitch, Method, SwitchRule

__all__ = ["AlwaysDeepthink", "AlwaysQuick", "LearnedSwitch", "Method", "SwitchRule"]
