"""Threshold rules: escalate when a per-step score exceeds a threshold calibrated to a call rate.

:class:`ThresholdSwitch` is the family: a subclass scores each state (higher = more reason to
call DEEPTHINK) and the rule escalates above a threshold, breaking ties with a seeded coin.
:func:`calibrate_rule` sets the threshold so that the rule calls DEEPTHINK at a target rate (or
a target number of calls per episode) on calibration episodes, which is how baselines are
compared with the learned switch at equal call rates. ``uncertainty``
(:class:`UncertaintySwitch`, QUICK's flatness), ``router``
(:class:`~londi.rules.router.RouterSwitch`, a classifier's probability that QUICK is wrong) and
the calibrated learned switch (:class:`~londi.rules.calibrated.CostCalibratedSwitch`, a state's
break-even cost weight) are its members.
"""
from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from londi.core.errors import ConfigError, UnknownChoiceError
from londi.rules.offline import OfflineCost, OfflineRule, can_call, check_rate, episode_rng, offline_run
from londi.switch.accounting import DEEPTHINK, QUICK
from londi.switch.context import StepContext
from londi.switch.env import SwitchEnv

logger = logging.getLogger(__name__)


def calibrate_threshold(scores: Sequence[float], rate: float) -> tuple[float, float]:
    """The threshold ``t`` and tie probability ``q`` that escalate a fraction ``rate`` of ``scores``.

    A score escalates when it is above ``t``, and with probability ``q`` when it equals ``t``.
    Randomising the ties (as a Neyman-Pearson test does) lets a rule reach any rate even when
    the scores take few values (e.g. an LM that is either sure or unsure). ``inf`` scores (QUICK
    gave no answer) always escalate unless ``rate`` is 0.
    """
    rate = check_rate(rate)
    s = np.sort(np.asarray(list(scores), dtype=float))[::-1]
    if rate is None or len(s) == 0:
        raise ValueError("calibrate_threshold needs a rate and at least one score")
    if rate <= 0.0:
        return math.inf, 0.0
    if rate >= 1.0:
        return -math.inf, 1.0
    k = rate * len(s)
    t = float(s[min(int(math.floor(k)), len(s) - 1)])
    above = int(np.sum(s > t))
    equal = int(np.sum(s == t))
    q = (k - above) / equal if equal else 0.0
    return t, float(min(max(q, 0.0), 1.0))


class ThresholdSwitch(OfflineRule):
    """Escalate when a per-step score exceeds a threshold (ties broken at random).

    Subclasses define :meth:`score` (higher = more reason to call DEEPTHINK). The tie coin is
    seeded by the run seed and the episode's env seed, like :class:`RandomSwitch`.

    Args:
        threshold: escalate when ``score > threshold``.
        tie_prob: probability of escalating when ``score == threshold``.
        seed: the run seed.
    """

    features = "quick"

    def __init__(self, *, threshold: float = 0.5, tie_prob: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(threshold, (int, float)) or math.isnan(threshold):
            raise ConfigError(f"threshold must be a number, got {threshold!r}")
        if not 0.0 <= tie_prob <= 1.0:
            raise ConfigError(f"tie_prob must be in [0, 1], got {tie_prob!r}")
        self.threshold = float(threshold)
        self.tie_prob = float(tie_prob)
        self.seed = int(seed)
        #: Set by :func:`calibrate_rule`: target rate, achieved rate on the calibration episodes.
        self.calibration: dict[str, Any] | None = None
        self._rng: np.random.Generator | None = None
        self._seen: Counter = Counter()
        self._record: list[float] | None = None

    def score(self, obs: dict[str, np.ndarray], ctx: StepContext) -> float:
        raise NotImplementedError

    def reset(self) -> None:
        self._rng = None

    def choose(self, obs: dict[str, np.ndarray], ctx: StepContext) -> int:
        if self._rng is None:
            self._rng = episode_rng(self.seed, ctx, self._seen)
        coin = self._rng.random()  # drawn every step, so that draws do not depend on the scores
        if not can_call(obs):
            return QUICK
        s = self.score(obs, ctx)
        if self._record is not None:
            self._record.append(s)
        if s > self.threshold or (s == self.threshold and coin < self.tie_prob):
            return DEEPTHINK
        return QUICK


def calibrate_rule(
    rule: ThresholdSwitch,
    env: SwitchEnv,
    seeds: Sequence[int],
    rate: float,
    *,
    max_rounds: int = 6,
    tolerance: float = 0.01,
    per_episode: bool = False,
    purpose: str = "calibration",
    progress: bool = False,
) -> ThresholdSwitch:
    """Set ``rule.threshold``/``rule.tie_prob`` so that it calls DEEPTHINK at ``rate`` on ``seeds``.

    ``rate`` is a call fraction (DEEPTHINK calls / steps where a call was allowed), or, with
    ``per_episode=True``, a number of DEEPTHINK calls per episode (any value >= 0; ``tolerance``
    is then relative to it), as a Lagrangian limit on expected calls is stated.

    The states a rule visits depend on its own calls (a call usually gets the agent out of the
    state that caused it), so the ``1 - rate`` quantile of the scores of QUICK-only episodes
    does not give the rate. Instead:

    1. a reference run plays the episodes without calling DEEPTHINK and keeps the scores of the
       states visited;
    2. a threshold is indexed by a level ``z`` in [0, 1]: :func:`calibrate_threshold` of the
       reference scores at rate ``z`` (so ``z`` moves the threshold monotonically, ties included);
    3. starting from ``z = rate``, each round plays the episodes with the threshold of ``z``,
       measures the call fraction (DEEPTHINK calls / steps where a call was allowed) and updates
       ``z`` by regula falsi on the bracket of measured levels (the measured rate grows with ``z``),
       until it is within ``tolerance`` of ``rate`` or ``max_rounds`` thresholds were measured.

    The measured threshold closest to the target is kept; ``rule.calibration`` records the
    target, the rate it achieved on these episodes and the rounds. Every episode (the reference
    run included) is metered into ``rule.offline_cost``.
    """
    if per_episode:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) < math.inf:
            raise ConfigError(f"calls per episode must be a finite number >= 0, got {rate!r}")
        rate = float(rate)
    else:
        rate = check_rate(rate)
    if rate is None:
        raise ValueError("calibrate_rule needs a rate")
    if max_rounds < 1:
        raise ConfigError(f"max_rounds must be >= 1, got {max_rounds}")
    if not 0 <= tolerance < 1:
        raise ConfigError(f"tolerance must be in [0, 1), got {tolerance}")
    t0 = time.perf_counter()
    cost = OfflineCost(purpose=purpose)
    if per_episode:
        tolerance = tolerance * rate

    def play(threshold: float, tie_prob: float, label: str) -> tuple[list[float], float]:
        rule.threshold, rule.tie_prob = threshold, tie_prob
        rule._seen.clear()  # the same coins in every round (common random numbers)
        rule._record = []
        try:
            eps = offline_run(rule, env, seeds, cost, progress=progress, desc=f"{purpose}: {label}")
        finally:
            scores, rule._record = rule._record, None
        calls = sum(e.deepthink_calls for e in eps)
        if per_episode:
            return scores, calls / max(len(eps), 1)
        return scores, (calls / len(scores) if scores else 0.0)

    measured: list[tuple[float, float, float, float]] = []  # (z, achieved rate, threshold, tie_prob)
    reference: list[float] = []
    if rate > 0.0 and (per_episode or rate < 1.0):
        reference, _ = play(math.inf, 0.0, "reference")
    if not reference:  # rate 0 or 1, or no step allowed a call (e.g. a zero budget)
        threshold, tie = calibrate_threshold([0.0], min(rate, 1.0))
        measured.append((min(rate, 1.0), math.nan, threshold, tie))
    else:
        lo, r_lo, hi, r_hi = 0.0, 0.0, 1.0, math.nan
        # the level is a share of the reference run's states; a limit per episode starts at its share of them
        z = min(1.0, rate * len(seeds) / len(reference)) if per_episode else rate
        for round_ in range(1, max_rounds + 1):
            threshold, tie = calibrate_threshold(reference, z)
            _, achieved = play(threshold, tie, f"round {round_}")
            measured.append((z, achieved, threshold, tie))
            logger.info("%s round %d: level %.3f -> threshold %.4g (tie %.2f) gives rate %.3f (target %.3f)",
                        purpose, round_, z, threshold, tie, achieved, rate)
            if abs(achieved - rate) <= tolerance:
                break
            if achieved < rate:
                lo, r_lo = z, achieved
            else:
                hi, r_hi = z, achieved
            if math.isnan(r_hi):  # no level above the target measured yet: scale up
                nxt = min(1.0, z * rate / achieved) if achieved > 0 else min(1.0, 2 * z)
                if nxt <= z:
                    nxt = (z + 1.0) / 2
            elif r_hi > r_lo:
                nxt = lo + (rate - r_lo) * (hi - lo) / (r_hi - r_lo)
            else:
                nxt = (lo + hi) / 2
            # stay strictly inside the bracket so that every round brings new information
            margin = 0.05 * (hi - lo)
            nxt = min(max(nxt, lo + margin), hi - margin) if hi > lo else lo
            if abs(nxt - z) < 1e-6:
                break
            z = nxt
        if abs(measured[-1][1] - rate) > tolerance:
            logger.warning("%s: the closest rate reached in %d rounds is %.3f (target %.3f)", purpose,
                           len(measured), min(measured, key=lambda m: abs(m[1] - rate))[1], rate)
    z, achieved, rule.threshold, rule.tie_prob = min(
        measured, key=lambda m: abs(m[1] - rate) if not math.isnan(m[1]) else 0.0)
    rule._seen.clear()
    cost.wall_seconds = time.perf_counter() - t0
    if cost.episodes:
        rule.offline_cost.append(cost)
    rule.calibration = {
        ("target_calls_per_episode" if per_episode else "target_rate"): rate,
        ("achieved_calls_per_episode" if per_episode else "achieved_rate"): None if math.isnan(achieved) else achieved,
        "level": z,
        "threshold": rule.threshold,
        "tie_prob": rule.tie_prob,
        "rounds": len(measured),
        "episodes_per_round": len(seeds),
    }
    return rule


class UncertaintySwitch(ThresholdSwitch):
    """Escalate when QUICK is unsure: its distribution over the admissible actions is flat.

    Scores (in [0, 1], higher = flatter): ``"entropy"``: entropy / log(number of admissible
    actions); ``"margin"``: 1 - (top-1 - top-2 probability). A step where QUICK gave no valid
    answer scores ``inf`` (always escalates); a QUICK without a distribution scores 0.

    Args:
        measure: ``"entropy"`` or ``"margin"``.
        threshold, tie_prob, seed: see :class:`ThresholdSwitch` (default threshold 0.5).
    """

    MEASURES = ("entropy", "margin")

    def __init__(self, *, measure: str = "entropy", threshold: float = 0.5, tie_prob: float = 0.0,
                 seed: int = 0) -> None:
        super().__init__(threshold=threshold, tie_prob=tie_prob, seed=seed)
        if measure not in self.MEASURES:
            raise UnknownChoiceError("uncertainty measure", str(measure), self.MEASURES)
        self.measure = measure
        self.name = "uncertainty"
        self._warned = False

    def score(self, obs: dict[str, np.ndarray], ctx: StepContext) -> float:
        decision = ctx.quick_decision
        if decision is None:
            return math.inf
        if decision.probs is None or len(decision.probs) < 2:
            if not self._warned:
                logger.warning("QUICK gives no distribution over actions: the uncertainty rule never escalates")
                self._warned = True
            return 0.0
        if self.measure == "entropy":
            return float(decision.entropy / math.log(len(decision.probs)))
        return float(1.0 - decision.margin)


__all__ = ["ThresholdSwitch", "UncertaintySwitch", "calibrate_rule", "calibrate_threshold"]
