"""Switch rules: anything that decides, step by step, whether QUICK or DEEPTHINK acts.

A :class:`SwitchRule` reads the switch observation (the feature vector and the action mask)
and a :class:`~londi.switch.context.StepContext` (QUICK's answer, the text observation, the
accounting, the budget left), never the env, and returns ``0`` (QUICK) or ``1`` (DEEPTHINK).
The learned LONDI switch, the fixed ends of the curve and every baseline share this interface, so they are evaluated by the same loop on the same episodes.
"""
from __future__ import annotations

import abc
import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from londi.agents.base import TextPolicy
from londi.switch.accounting import DEEPTHINK, QUICK
from londi.switch.context import StepContext


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
    def choose(self, obs: dict[str, np.ndarray], ctx: StepContext) -> int:
        """``0`` for QUICK, ``1`` for DEEPTHINK."""

    def observe(self, info: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Called with the step's ``info`` after the env stepped (for rules with memory)."""

    def spawn(self) -> SwitchRule:
        """A copy that plays one of several episodes side by side (``--num-envs``).

        The default is a shallow copy: what :meth:`reset` rebinds (the per-episode state) is the
        copy's own, what the copies share (a trained model, calibration results, counters kept
        for analysis) stays one object. A rule that keeps per-episode state in an object it
        mutates without rebinding it in :meth:`reset`, or that wraps another rule, overrides this.
        """
        return copy.copy(self)


class AlwaysQuick(SwitchRule):
    """Never call DEEPTHINK: one end of the curve."""

    name = "always-quick"

    def choose(self, obs: dict[str, np.ndarray], ctx: StepContext) -> int:
        return QUICK


class AlwaysDeepthink(SwitchRule):
    """Always call DEEPTHINK (where the budget allows): the other end of the curve."""

    name = "always-deepthink"

    def choose(self, obs: dict[str, np.ndarray], ctx: StepContext) -> int:
        return DEEPTHINK if obs["action_mask"][DEEPTHINK] > 0.5 else QUICK


class LearnedSwitch(SwitchRule):
    """A trained :class:`~londi.learn.dqn.LondiDQN` (or :class:`~londi.learn.ensemble.SwitchEnsemble`),
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

    def choose(self, obs: dict[str, np.ndarray], ctx: StepContext) -> int:
        if self._greedy is not None:
            return self._greedy(obs)
        action, _ = self.model.predict(obs, deterministic=True)
        return int(action)

    def choose_batch(self, observations: Sequence[dict[str, np.ndarray]], contexts: Sequence[StepContext]) -> list[int]:
        """:meth:`choose` for several episodes' states in one pass of the network (the choice
        has no per-episode state)."""
        batched = getattr(self.model, "greedy_actions", None)
        if batched is not None:
            return [int(a) for a in batched(observations)]
        stacked = {k: np.stack([np.asarray(o[k], dtype=np.float32) for o in observations]) for k in observations[0]}
        actions, _ = self.model.predict(stacked, deterministic=True)
        return [int(a) for a in np.asarray(actions).reshape(-1)]


@dataclass
class Method:
    """A method to evaluate: a rule and the LM pair it switches between.

    Attributes:
        rule: the switch rule.
        quick, deepthink: the LM pair.
        budget: hard cap on DEEPTHINK calls per episode (``None``: none).
        kind: the registry name of the method that built it (``londi.evaluation.registry``),
            through which the evaluation reads the rule's ``info()``; ``None`` for a method
            made by hand, which is looked up by its rule's name.
    """

    rule: SwitchRule
    quick: TextPolicy
    deepthink: TextPolicy
    budget: int | None = None
    kind: str | None = None
