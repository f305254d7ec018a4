"""``StepContext``: what a switch rule may read at a step besides the switch observation.

A rule decides from the observation vector and this context, never from the env: the switch
(:class:`~londi.switch.env.SwitchEnv`, :class:`~londi.agent.LondiAgent`) builds it at each step,
so the same rule runs inside a gymnasium loop, a user's own game loop, or offline calibration.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from londi.agents.base import Decision
from londi.envs.base import TextObservation
from londi.switch.accounting import EpisodeAccounting


@dataclass(frozen=True)
class StepContext:
    """The current step, as a rule sees it.

    Attributes:
        text_obs: the text observation of the current state.
        quick_decision: QUICK's answer for this state, or ``None`` when QUICK is consulted only
            when chosen (rules without features).
        accounting: the episode's accounting so far (read only).
        budget_left: DEEPTHINK calls left in the episode (``inf`` without a hard budget).
        consults_quick: whether QUICK is consulted at every step (the features need it).
        episode_seed: the env seed the episode was reset with (``None`` without one): rules that
            draw at random seed their draws from it, so an episode gets the same draws in any
            process and order.
        task: the episode's task or level (a column of the task router's matrix; ``"default"``
            for an env with one task).
    """

    text_obs: TextObservation
    quick_decision: Decision | None
    accounting: EpisodeAccounting
    budget_left: float
    consults_quick: bool
    episode_seed: int | None = None
    task: str = "default"


def episode_task(base_env: Any) -> str:
    """The task of ``base_env``'s current episode (the unwrapped env).

    BabyAI's ``current_level`` (the ``info["level"]`` of its steps; one level for a single-level
    env), else a ``task``, ``task_name`` or ``game_file`` attribute, else ``"default"``.
    """
    for attr in ("current_level", "task", "task_name", "game_file"):
        try:
            value = getattr(base_env, attr, None)
        except (AttributeError, RuntimeError, ValueError):  # a property that needs state the env has not got yet
            value = None
        if isinstance(value, str) and value:
            return value
    return "default"


__all__ = ["StepContext", "episode_task"]
