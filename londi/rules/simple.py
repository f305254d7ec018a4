"""Rules that read no state: random, periodic and first-``B`` switching.

They set the reference points for the learned switch at a matched call rate or budget: any
state cue a learned or hand-made rule reads must beat spending the same calls blindly. None of
them needs QUICK's answer in advance (no features), so QUICK is called only when chosen.

``random``
    :class:`RandomSwitch`: DEEPTHINK with probability ``rate`` at every step.
``periodic``
    :class:`PeriodicSwitch`: DEEPTHINK at evenly spaced steps, ``rate`` of them, the first step
    included; the deterministic twin of ``random``.
``first-b``
    :class:`FirstBSwitch`: DEEPTHINK for the first ``B`` steps, then QUICK: the naive way to
    spend a hard budget, for LONDI-B's budget sweep.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from londi.core.errors import ConfigError
from londi.rules.base import SwitchRule
from londi.rules.offline import DEFAULT_RATE, can_call, check_rate, episode_rng
from londi.switch.accounting import DEEPTHINK, QUICK
from londi.switch.context import StepContext


class RandomSwitch(SwitchRule):
    """Call DEEPTHINK with probability ``rate`` at each step (QUICK is called only when chosen).

    Args:
        rate: the call probability in [0, 1].
        seed: the run seed; each episode's coin flips are seeded by it and the episode's env seed.
    """

    features = None

    def __init__(self, *, rate: float = DEFAULT_RATE, seed: int = 0) -> None:
        checked = check_rate(rate)
        if checked is None:
            raise ConfigError("random needs a rate in [0, 1]")
        self.rate = checked
        self.seed = int(seed)
        self.name = "random"
        self._rng: np.random.Generator | None = None
        self._seen: Counter = Counter()

    def reset(self) -> None:
        self._rng = None

    def choose(self, obs: dict[str, np.ndarray], ctx: StepContext) -> int:
        if self._rng is None:
            self._rng = episode_rng(self.seed, ctx, self._seen)
        flip = self._rng.random() < self.rate  # always drawn, so the mask does not shift later flips
        return DEEPTHINK if flip and can_call(obs) else QUICK


class PeriodicSwitch(SwitchRule):
    """Call DEEPTHINK at evenly spaced steps: a share ``rate`` of them, the first step included.

    A running credit grows by ``rate`` each step and a call spends 1, so the calls fall every
    ``1 / rate`` steps (steps 0, 2, 4, ... at 0.5; 0, 4, 8, ... at 0.25) and non-integer periods
    alternate between the two nearest. A step where DEEPTHINK is masked (spent budget) is given
    to QUICK and the call moves to the next step.

    Args:
        rate: the share of steps in [0, 1].
    """

    features = None

    def __init__(self, *, rate: float = DEFAULT_RATE) -> None:
        checked = check_rate(rate)
        if checked is None:
            raise ConfigError("periodic needs a rate in [0, 1]")
        self.rate = checked
        self.name = "periodic"
        self._credit = 0.0

    def reset(self) -> None:
        self._credit = 1.0 - self.rate if self.rate > 0 else 0.0

    def choose(self, obs: dict[str, np.ndarray], ctx: StepContext) -> int:
        if ctx.accounting.steps == 0:
            self.reset()  # also right when a caller forgets reset()
        self._credit += self.rate
        if self._credit >= 1.0 - 1e-9 and can_call(obs):
            self._credit -= 1.0
            return DEEPTHINK
        return QUICK


class FirstBSwitch(SwitchRule):
    """DEEPTHINK for the first ``budget`` steps of an episode, then QUICK.

    Args:
        budget: ``B`` >= 0, the number of leading steps given to DEEPTHINK.
    """

    features = None

    def __init__(self, *, budget: int) -> None:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise ConfigError(f"first-b needs a budget B (a non-negative integer), got {budget!r}")
        self.budget = budget
        self.name = "first-b"

    def choose(self, obs: dict[str, np.ndarray], ctx: StepContext) -> int:
        return DEEPTHINK if ctx.accounting.steps < self.budget and can_call(obs) else QUICK


__all__ = ["FirstBSwitch", "PeriodicSwitch", "RandomSwitch"]
