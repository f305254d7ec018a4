"""A trained switch acting at a calibrated cost weight: a target call rate or calls per episode.

The learned switch (:class:`~londi.learn.dqn.LondiDQN`) calls DEEPTHINK where

    Q_r(s, DEEPTHINK) - w Q_c(s, DEEPTHINK) > Q_r(s, QUICK) - w Q_c(s, QUICK),

with ``w = c + lambda``. Because the reward and cost values are learned separately, ``w`` can be
changed after training without relearning. Where a call adds expected cost
(``dQ_c = Q_c(s, D) - Q_c(s, Q) > 0``) the inequality reads ``w < dQ_r / dQ_c``: each state has a
*break-even weight*, and the greedy switch at weight ``w`` is "escalate where the break-even
weight exceeds ``w``". :class:`CostCalibratedSwitch` is that rule with ``w`` as its threshold, so
:func:`~londi.rules.threshold.calibrate_rule` finds the ``w`` that meets a target on calibration
episodes (seeds from :func:`~londi.core.seeds.training_seeds`, never the held-out ones), and a tie
coin at the last step of the search mixes the two neighbouring greedy policies, as the solution
of a constrained MDP may need to.

Uses:

* the Lagrangian switch (``londi train --cost-limit L``): dual ascent during training gives the
  values, and the learned ``lambda`` swings while the value gaps are small (a greedy switch flips
  from "call everywhere" to "call nowhere" within a narrow band of ``w``); calibrating ``w`` to
  ``L`` calls per episode after training keeps the held-out calls near the limit. Both the
  trained ``w`` and the calibrated one are reported.
* ``londi eval --method londi --rate R``: the same switch at a target call rate, for curves that
  compare it with threshold baselines at equal rates.

States where a call does not add expected cost (``dQ_c <= 0``) escalate at every weight if the
call adds reward (``dQ_r > 0``) and never otherwise.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from londi.core.errors import ConfigError
from londi.core.seeds import training_seeds
from londi.rules.base import LearnedSwitch
from londi.rules.offline import DEFAULT_CALIBRATION_EPISODES, offline_pair
from londi.rules.threshold import ThresholdSwitch, calibrate_rule
from londi.switch.accounting import DEEPTHINK, QUICK
from londi.switch.context import StepContext
from londi.switch.rollout import build_switch_env

logger = logging.getLogger(__name__)

#: Relative tolerance on a calls-per-episode target during calibration.
CALLS_TOLERANCE = 0.05
#: Calibration episodes for a calls-per-episode target. Calls per episode vary far more between
#: episodes than a call fraction does, so the mean over n episodes is uncertain by about
#: sd / sqrt(n) calls and a limit needs many more episodes than a rate (the spread measured on
#: the first pair is in docs/benchmarks.md). The LM call cache keeps these episodes cheap.
DEFAULT_LIMIT_CALIBRATION_EPISODES = 96
#: Calibration rounds (thresholds measured) for a calls-per-episode target.
LIMIT_CALIBRATION_ROUNDS = 8


class CostCalibratedSwitch(ThresholdSwitch):
    """A trained :class:`~londi.learn.dqn.LondiDQN` (or :class:`~londi.learn.ensemble.SwitchEnsemble`)
    that escalates where a state's break-even cost weight ``dQ_r / dQ_c`` exceeds the threshold
    ``w`` (see the module docstring).

    Args:
        model: the trained learner.
        features: the encoder it was trained with.
        threshold: the weight ``w`` on ``Q_c`` (default: the model's trained ``c + lambda``).
        tie_prob, seed: see :class:`~londi.rules.threshold.ThresholdSwitch`.
        name: the method's name.
    """

    def __init__(self, model: Any, *, features: str, threshold: float | None = None, tie_prob: float = 0.0,
                 seed: int = 0, name: str = "londi") -> None:
        super().__init__(threshold=model.cost_weight if threshold is None else threshold, tie_prob=tie_prob,
                         seed=seed)
        self.model = model
        self.features = features
        self.name = name
        self.trained_weight = float(model.cost_weight)

    def break_even_weight(self, obs: dict[str, np.ndarray]) -> float:
        """``dQ_r / dQ_c`` of this state (``+inf``/``-inf`` where a call adds no expected cost)."""
        q_r, q_c = self.model.values(obs)
        d_r = float(q_r[DEEPTHINK] - q_r[QUICK])
        d_c = float(q_c[DEEPTHINK] - q_c[QUICK])
        if d_c > 1e-9:
            return d_r / d_c
        return math.inf if d_r > 0 else -math.inf

    def score(self, obs: dict[str, np.ndarray], ctx: StepContext) -> float:
        return self.break_even_weight(obs)


def calibrate_switch(
    model: Any,
    *,
    features: str,
    quick: Any,
    deepthink: Any,
    env_id: str,
    seed: int = 0,
    rate: float | None = None,
    calls_per_episode: float | None = None,
    calibration_episodes: int | None = None,
    budget: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    name: str = "londi",
    progress: bool = False,
) -> CostCalibratedSwitch:
    """A :class:`CostCalibratedSwitch` whose weight meets ``rate`` (DEEPTHINK calls / steps) or
    ``calls_per_episode`` on calibration episodes of ``env_id`` (exactly one of the two).

    The calibration episodes are played with the LM pair behind a call cache
    (:func:`~londi.rules.offline.offline_pair`) and metered into the rule's ``offline_cost``;
    ``rule.calibration`` records the target, what was reached, the weight and the trained weight.
    """
    if (rate is None) == (calls_per_episode is None):
        raise ConfigError("calibrate_switch needs exactly one of rate and calls_per_episode")
    per_episode = calls_per_episode is not None
    default = DEFAULT_LIMIT_CALIBRATION_EPISODES if per_episode else DEFAULT_CALIBRATION_EPISODES
    n_cal = int(default if calibration_episodes is None else calibration_episodes)
    if n_cal <= 0:
        raise ConfigError(f"calibration_episodes must be positive, got {n_cal}")
    rule = CostCalibratedSwitch(model, features=features, seed=seed, name=name)
    offline_quick, offline_deepthink = offline_pair(quick, deepthink)
    env = build_switch_env(env_id, offline_quick, offline_deepthink, features=features, budget=budget,
                           env_kwargs=env_kwargs)
    target = float(calls_per_episode if per_episode else rate)  # type: ignore[arg-type]
    # a rate uses calibrate_rule's own defaults, as the threshold baselines do
    search = {"tolerance": CALLS_TOLERANCE, "max_rounds": LIMIT_CALIBRATION_ROUNDS} if per_episode else {}
    try:
        calibrate_rule(rule, env, training_seeds(seed, n_cal, f"{name}-calibration"), target,
                       per_episode=per_episode, purpose=f"{name} calibration", progress=progress, **search)
    finally:
        env.close()
    assert rule.calibration is not None
    rule.calibration["trained_weight"] = rule.trained_weight
    logger.info("%s calibrated to %s %.3f: weight %.4g (trained %.4g), tie probability %.3f", name,
                "calls per episode" if per_episode else "call rate", target, rule.threshold,
                rule.trained_weight, rule.tie_prob)
    return rule


def learned_switch_rule(
    model: Any,
    config: Any,
    *,
    quick: Any,
    deepthink: Any,
    env_id: str,
    seed: int = 0,
    budget: int | None = None,
    rate: float | None = None,
    calibrate_limit: bool = True,
    calibration_episodes: int | None = None,
    name: str = "londi",
    progress: bool = False,
) -> Any:
    """The rule that evaluates a trained switch (``config`` is its :class:`~londi.learn.train.TrainConfig`).

    * with ``rate``: a :class:`CostCalibratedSwitch` calibrated to that call rate;
    * a Lagrangian switch (``config.cost_limit`` set) with ``calibrate_limit``: calibrated to
      ``cost_limit`` calls per episode;
    * otherwise the plain greedy :class:`~londi.rules.LearnedSwitch` at its trained weight.
    """

    if rate is None and (config.cost_limit is None or not calibrate_limit):
        return LearnedSwitch(model, features=config.features, name=name)
    return calibrate_switch(
        model, features=config.features, quick=quick, deepthink=deepthink, env_id=env_id, seed=seed,
        rate=rate, calls_per_episode=None if rate is not None else config.cost_limit,
        calibration_episodes=calibration_episodes, budget=budget, name=name, progress=progress,
    )
