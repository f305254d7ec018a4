"""``LondiAgent``: a trained switch dropped into your own text-game loop, without gymnasium.

    agent = LondiAgent.from_pretrained("runs/c005", quick=my_small_lm, deepthink=my_served_llm)
    agent.reset(seed=episode_seed)
    while not done:
        step = agent.act(text_observation)       # a londi.envs.TextObservation
        text_observation, reward, done = my_game.step(step.action)
        agent.feedback(reward)                   # optional: keeps the episode's return

Each :meth:`LondiAgent.act` consults QUICK (when the switch's features need it), asks the switch,
calls DEEPTHINK only if chosen (never beyond the hard budget), and returns the action with the
step's accounting. It drives the same :class:`~londi.switch.switcher.Switcher` that
:class:`~londi.switch.env.SwitchEnv` wraps, and ``reset(seed=s)`` reseeds the policies as
``SwitchEnv.reset(seed=s)`` does, so an episode played
here makes the same choices and actions as the same episode in ``londi eval``.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from londi.agents.base import TextPolicy
from londi.core.meter import CallRecord, device_timer
from londi.envs import make_env
from londi.envs.base import TextObservation
from londi.learn.train import load_switches
from londi.rules import LearnedSwitch, SwitchRule
from londi.switch.accounting import DEEPTHINK, EpisodeAccounting
from londi.switch.card import read_description
from londi.switch.switcher import DEFAULT_MAX_STEPS, Switcher

logger = logging.getLogger(__name__)


@dataclass
class AgentStep:
    """The result of one :meth:`LondiAgent.act`.

    Attributes:
        action: the game action to execute (admissible).
        choice: ``"quick"`` or ``"deepthink"``: who chose it.
        accounting: the episode's accounting so far (calls, device-seconds, tokens per role).
        budget_left: DEEPTHINK calls left in the episode (``inf`` without a budget).
    """

    action: str
    choice: str
    accounting: EpisodeAccounting
    budget_left: float


def _env_step_limit(env_id: str) -> int | None:
    """The step limit of one episode of ``env_id``, for a run saved before switches described
    themselves (a level sets its limit at the reset)."""
    env = make_env(env_id, disable_env_checker=True)
    try:
        env.reset(seed=0)
        steps = getattr(env.unwrapped, "max_steps", None)
        return int(steps) if steps else None
    finally:
        env.close()


class LondiAgent:
    """A switch between QUICK and DEEPTHINK for use in any agent loop.

    Args:
        quick: the cheap text policy.
        deepthink: the expensive text policy.
        switch: a :class:`~londi.rules.SwitchRule` (a trained switch is wrapped by
            :meth:`from_pretrained`).
        budget: hard cap on DEEPTHINK calls per episode (``None``: no cap).
        max_steps: the episode step limit that normalises the step feature; a trained switch
            must get the one it was trained with (:meth:`from_pretrained` reads it from the
            run's ``switch.json``). ``None``: 100, as a :class:`SwitchEnv` over an env without
            one. Where the limit changes from episode to episode (a level mix), pass each
            episode's to :meth:`reset`.
    """

    def __init__(self, quick: TextPolicy, deepthink: TextPolicy, switch: SwitchRule, *,
                 budget: int | None = None, max_steps: int | None = None) -> None:
        if not isinstance(switch, SwitchRule):
            raise TypeError(f"switch must be a SwitchRule, got {type(switch).__name__}")
        self.switch = switch
        self._core = Switcher(quick, deepthink, features=switch.features, budget=budget)
        self._default_max_steps = max_steps
        self._started = False
        self._pending: dict[str, Any] | None = None

    @classmethod
    def from_pretrained(cls, run_dir: str | Path | Sequence[str | Path], *, quick: TextPolicy, deepthink: TextPolicy,
                        budget: int | None = None, call_cost: float | None = None,
                        allow_policy_mismatch: bool = False) -> LondiAgent:
        """Load the switch trained by ``londi train --out RUN_DIR``.

        Its ``switch.json`` gives the step limit and the hard budget (``budget`` overrides the
        latter), and names the policies it was trained with: other ``quick`` / ``deepthink``
        raise :class:`~londi.core.errors.ConfigError` unless ``allow_policy_mismatch=True``.
        ``run_dir`` may name several run folders (a sequence, or ``"RUN1,RUN2"``): an ensemble
        acting on their mean values (:class:`~londi.learn.ensemble.SwitchEnsemble`). ``call_cost``: act
        at this per-call cost instead of the trained one.
        """
        model, config = load_switches(run_dir, call_cost=call_cost, quick=quick, deepthink=deepthink,
                                      allow_policy_mismatch=allow_policy_mismatch)
        first = run_dir if isinstance(run_dir, (str, Path)) else run_dir[0]
        first = str(first).split(",")[0].strip()
        description = read_description(first)
        if description is None:
            max_steps = _env_step_limit(config.env)
        else:
            max_steps = description["max_steps"]
            if max_steps is None and description.get("step_limits"):
                logger.warning("the switch in %s was trained on episodes with step limits %s: pass each "
                               "episode's to reset(max_steps=...)", first, description["step_limits"])
        return cls(quick, deepthink, LearnedSwitch(model, features=config.features),
                   budget=config.budget if budget is None else budget, max_steps=max_steps)

    #: The name this loader had before :meth:`from_pretrained`.
    from_run = from_pretrained

    def reset(self, *, seed: int | None = None, max_steps: int | None = None) -> None:
        """Start a new episode.

        Args:
            seed: reseeds the policies' sampling as ``SwitchEnv.reset(seed=...)`` does (pass
                the episode's env seed to repeat a ``londi eval`` episode exactly).
            max_steps: this episode's step limit, where it differs from the one the agent was
                built with (a level mix).
        """
        if seed is not None and (isinstance(seed, bool) or int(seed) != seed or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        if max_steps is not None and max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        limit = max_steps if max_steps is not None else self._default_max_steps
        self._core.begin(seed=seed, max_steps=limit)
        self.switch.reset()
        self._pending = None
        self._started = True

    def act(self, observation: TextObservation) -> AgentStep:
        """Choose the action for ``observation`` (QUICK or DEEPTHINK decides, per the switch)."""
        if not self._started:
            raise RuntimeError("call reset() before act(): it starts the episode (budget, history, seeds)")
        if not isinstance(observation, TextObservation):
            raise TypeError("act() takes a londi.envs.TextObservation")
        if not observation.admissible_actions:
            raise ValueError("the observation has no admissible actions")
        obs = self._core.observe(observation)
        if self._pending is not None:  # the last step's outcome, as SwitchEnv.step's info tells a rule
            self.switch.observe({**self._pending, "text_obs": observation,
                                 "accounting": self._core.accounting.snapshot()})
        with device_timer("cpu") as t:
            wanted = self.switch.choose(obs, self._core.context())
        self._core.add_switch_cost(CallRecord(model=f"rule:{self.switch.name}", device_seconds=t.device_seconds,
                                              wall_seconds=t.wall_seconds))
        quick_decision = self._core.quick_decision
        choice, action = self._core.decide(wanted)
        self._core.record(choice, 0.0)
        name = "deepthink" if choice == DEEPTHINK else "quick"
        self._pending = {"env_reward": 0.0, "choice": name, "executed_action": action,
                         "quick_action": quick_decision.action if quick_decision is not None else None,
                         "oracle_action": observation.oracle_action}
        return AgentStep(action=action, choice=name, accounting=self._core.accounting.snapshot(),
                         budget_left=self._core.budget_left)

    def feedback(self, reward: float) -> None:
        """Add the game's reward for the last action to the episode's return (optional)."""
        if not math.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward}")
        self._core.accounting.env_return += float(reward)
        if self._pending is not None:
            self._pending["env_reward"] = float(reward)

    @property
    def accounting(self) -> EpisodeAccounting:
        return self._core.accounting

    @property
    def max_steps(self) -> int:
        """The step limit the switch's step feature is normalised by (unless :meth:`reset` is
        given another for an episode)."""
        return self._default_max_steps if self._default_max_steps is not None else DEFAULT_MAX_STEPS

    def close(self) -> None:
        self._core.quick.close()
        self._core.deepthink.close()


__all__ = ["AgentStep", "LondiAgent"]
