"""Switch rules: anything that decides, step by step, whether QUICK or DEEPTHINK acts.

A :class:`SwitchRule` reads the :class:`~londi.switch_env.SwitchEnv` observation (and, if it
wants, the env itself: QUICK's answer, the text observation, the accounting) and returns ``0``
(QUICK) or ``1`` (DEEPTHINK). The learned LONDI switch, the fixed ends of the curve and every
baseline share this interface, so they are evaluated by the same loop on the same episodes.
"""
from __future__ import annotations

import abc
from typing import Any

import numpy as np

from londi.switch_env import DEEPTHINK, QUICK, SwitchEnv


class SwitchRule(abc.ABC):
    """A switching policy.

    Attributes:
        name: the method's name in results and plots.
        features: the feature encoder the rule needs in the ``SwitchEnv`` (``None`` when it needs
            none, in which case QUICK is called only when chosen).
    """

    name: str = "rule"
    features: str | None = None

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Start of an episode."""

    @abc.abstractmethod
    def choose(self, obs: dict[str, np.ndarray], env: SwitchEnv) -> int:
        """``0`` for QUICK, ``1`` for DEEPTHINK."""

    def observe(self, info: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Called with the step's ``info`` after the env stepped (for rules with memory)."""


class AlwaysQuick(SwitchRule):
    """Never call DEEPTHINK: one end of the curve."""

    name = "always-quick"

    def choose(self, obs: dict[str, np.ndarray], env: SwitchEnv) -> int:
        return QUICK


class AlwaysDeepthink(SwitchRule):
    """Always call DEEPTHINK (where the budget allows): the other end of the curve."""

    name = "always-deepthink"

    def choose(self, obs: dict[str, np.ndarray], env: SwitchEnv) -> int:
        return DEEPTHINK if obs["action_mask"][DEEPTHINK] > 0.5 else QUICK


class LearnedSwitch(SwitchRule):
    """A trained :class:`~londi.learner.LondiDQN` (or :class:`~londi.ensemble.SwitchEnsemble`),
    acting greedily.

    Args:
        model: the trained learner.
        features: the encoder it was trained with.
        name: the method's name (default ``"londi"``).
    """

    def __init__(self, model: Any, *, features: str, name: str = "londi") -> None:
        self.model = model
        self.features = features
        self.name = name
        # the learner's direct greedy path where it has one (LondiDQN); SB3's predict otherwise
        self._greedy = getattr(model, "greedy_action", None)

    def choose(self, obs: dict[str, np.ndarray], env: SwitchEnv) -> int:
        if self._greedy is not None:
            return self._greedy(obs)
        action, _ = self.model.predict(obs, deterministic=True)
        return int(action)
