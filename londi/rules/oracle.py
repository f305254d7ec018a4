"""``oracle``: the hindsight oracle, the lower bound on the calls the expert-level result needs.

It calls DEEPTHINK exactly where QUICK's action differs from the expert's, which no deployable
switch can know: it reads the expert's label (``TextObservation.oracle_action``). Results mark
it as an oracle (``"oracle": true``), and the oracle ratio of a method is its calls over this
rule's at the same success.
"""
from __future__ import annotations

import logging

import numpy as np

from londi.rules.base import SwitchRule
from londi.rules.offline import can_call
from londi.switch.accounting import DEEPTHINK, QUICK
from londi.switch.context import StepContext

logger = logging.getLogger(__name__)


class HindsightOracle(SwitchRule):
    """The hindsight **oracle**: call DEEPTHINK exactly where QUICK's action differs from the
    expert's (or QUICK gave no valid action). It reads the expert's label
    (``TextObservation.oracle_action``), which no deployable switch can: it is a lower bound on
    the calls needed for the expert-level result, not a method. Where the expert gives no label
    it keeps QUICK."""

    features = "quick"
    is_oracle = True

    def __init__(self) -> None:
        self.name = "oracle"
        self._warned = False

    def choose(self, obs: dict[str, np.ndarray], ctx: StepContext) -> int:
        expert = ctx.text_obs.oracle_action
        if expert is None:
            if not self._warned and ctx.accounting.steps == 0:
                logger.warning("the hindsight oracle needs an env with an expert; this state has no expert label")
                self._warned = True
            return QUICK
        decision = ctx.quick_decision
        wrong = decision is None or decision.action != expert
        return DEEPTHINK if wrong and can_call(obs) else QUICK


__all__ = ["HindsightOracle"]
