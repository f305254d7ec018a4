"""Several switches trained alike with different seeds, acting on their averaged values.

One DQN run's greedy switch depends a lot on its seed. The decision
``Q_r(s, D) - Q_r(s, Q) > w (Q_c(s, D) - Q_c(s, Q))`` compares gaps of a few hundredths, so each
member's value errors flip it in many states; averaging the members' ``Q_r`` and ``Q_c`` before
the choice is the standard way to average such errors out. Whether it pays is measured in
docs/benchmarks.md ("Validation runs"); it is an option, not the default.

Use ``londi eval --method londi --switch RUN1,RUN2,RUN3`` (folders written by ``londi train``
with the same settings and different ``--seed``), :func:`londi.learn.train.load_switches`, or build
one from loaded learners. It is a drop-in for a :class:`~londi.learn.dqn.LondiDQN` wherever a
trained switch acts: :class:`~londi.rules.LearnedSwitch` (greedy),
:class:`~londi.rules.calibrated.CostCalibratedSwitch` (a calibrated weight) and
:class:`~londi.agent.LondiAgent`. It acts only; each member is trained on its own.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from londi.core.errors import ConfigError
from londi.learn.dqn import MASK_KEY, LondiDQN, masked_score


class SwitchEnsemble:
    """Greedy on ``mean_k Q_r - w * mean_k Q_c`` among the allowed actions.

    Args:
        members: trained switches with the same observation and action spaces.

    The weight ``w`` is the members' mean ``c + lambda`` (one number when they were trained with
    the same cost and no limit); :meth:`set_call_cost` sets every member's ``c``.
    """

    def __init__(self, members: Sequence[LondiDQN]) -> None:
        members = list(members)
        if not members:
            raise ConfigError("a switch ensemble needs at least one member")
        first = members[0]
        for i, m in enumerate(members[1:], start=1):
            if m.observation_space != first.observation_space or m.action_space != first.action_space:
                raise ConfigError(f"ensemble member {i} has other observation or action spaces than member 0 "
                                  "(train every member with the same env, features and budget)")
        self.members = members
        self.action_space = first.action_space
        self.observation_space = first.observation_space

    def __len__(self) -> int:
        return len(self.members)

    @property
    def cost_weight(self) -> float:
        """The mean of the members' ``c + lambda``."""
        return float(np.mean([m.cost_weight for m in self.members]))

    def set_call_cost(self, call_cost: float) -> None:
        """Act at another per-call cost ``c`` (every member; a Lagrangian member keeps its lambda)."""
        for m in self.members:
            m.set_call_cost(call_cost)

    def values(self, observation: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The members' mean ``Q_r(s, .)`` and mean ``Q_c(s, .)`` for one observation."""
        pairs = [m.values(observation) for m in self.members]
        return np.mean([r for r, _ in pairs], axis=0), np.mean([c for _, c in pairs], axis=0)

    def predict(self, observation: dict[str, np.ndarray], state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """The greedy action for one observation (an ensemble does not explore)."""
        if not deterministic:
            raise ValueError("a SwitchEnsemble acts greedily only (deterministic=True)")
        q_r, q_c = self.values(observation)
        return np.asarray(int(np.argmax(masked_score(q_r, q_c, self.cost_weight, observation.get(MASK_KEY))))), state


__all__ = ["SwitchEnsemble"]
