"""``LondiAgent``: a trained switch dropped into your own text-game loop, without gymnasium.

    agent = LondiAgent.from_run("runs/c002", quick=my_small_lm, deepthink=my_served_llm)
    agent.reset()
    while not done:
        step = agent.act(text_observation)       # a londi.envs.TextObservation
        text_observation, reward, done = my_game.step(step.action)
        agent.feedback(reward)                   # optional: keeps the episode's return

Each :meth:`LondiAgent.act` consults QUICK (when the switch's features need it), asks the switch,
calls DEEPTHINK only if chosen (never beyond the hard budget), and returns the action with the
step's accounting. The per-step logic is exactly :class:`~londi.switch_env.SwitchEnv`'s.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from londi.agents.base import TextPolicy
from londi.envs.base import TextObservation
from londi.meter import CallRecord, device_timer
from londi.rules import LearnedSwitch, SwitchRule
from londi.switch_env import DEEPTHINK, EpisodeAccounting, SwitchEnv


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


class _NoEnv:
    """Placeholder for the game: the user's own loop executes the actions."""

    unwrapped = None
    max_steps = None

    def close(self) -> None:
        pass


class LondiAgent:
    """A switch between QUICK and DEEPTHINK for use in any agent loop.

    Args:
        quick: the cheap text policy.
        deepthink: the expensive text policy.
        switch: a :class:`~londi.rules.SwitchRule` (a trained switch is wrapped by
            :meth:`from_run`).
        budget: hard cap on DEEPTHINK calls per episode (``None``: no cap).
        max_steps: the episode step limit used to normalise the step feature.
    """

    def __init__(self, quick: TextPolicy, deepthink: TextPolicy, switch: SwitchRule, *,
                 budget: int | None = None, max_steps: int = 64) -> None:
        if not isinstance(switch, SwitchRule):
            raise TypeError(f"switch must be a SwitchRule, got {type(switch).__name__}")
        self.switch = switch
        self._core = SwitchEnv(_NoEnv(), quick, deepthink, features=switch.features, budget=budget,
                               max_steps=max_steps)
        self._started = False

    @classmethod
    def from_run(cls, run_dir: str | Path | Sequence[str | Path], *, quick: TextPolicy, deepthink: TextPolicy,
                 budget: int | None = None, max_steps: int = 64, call_cost: float | None = None) -> LondiAgent:
        """Load the switch trained by ``londi train --out RUN_DIR`` (its budget unless overridden).

        ``run_dir`` may name several run folders (a sequence, or ``"RUN1,RUN2"``): an ensemble
        acting on their mean values (:class:`~londi.ensemble.SwitchEnsemble`). ``call_cost``: act
        at this per-call cost instead of the trained one.
        """
        from londi.train import load_switches

        model, config = load_switches(run_dir, call_cost=call_cost)
        return cls(quick, deepthink, LearnedSwitch(model, features=config.features),
                   budget=config.budget if budget is None else budget, max_steps=max_steps)

    def reset(self) -> None:
        """Start a new episode."""
        self._core.begin_episode()
        self.switch.reset()
        self._started = True

    def act(self, observation: TextObservation) -> AgentStep:
        """Choose the action for ``observation`` (QUICK or DEEPTHINK decides, per the switch)."""
        if not self._started:
            self.reset()
        if not isinstance(observation, TextObservation):
            raise TypeError("act() takes a londi.envs.TextObservation")
        if not observation.admissible_actions:
            raise ValueError("the observation has no admissible actions")
        obs = self._core.observe(observation)
        with device_timer("cpu") as t:
            wanted = self.switch.choose(obs, self._core)
        self._core.add_switch_cost(CallRecord(model=f"rule:{self.switch.name}", device_seconds=t.device_seconds,
                                              wall_seconds=t.wall_seconds))
        choice, action = self._core.decide(wanted)
        self._core.record_outcome(choice, 0.0)
        return AgentStep(action=action, choice="deepthink" if choice == DEEPTHINK else "quick",
                         accounting=self._core.accounting.snapshot(), budget_left=self._core.budget_left)

    def feedback(self, reward: float) -> None:
        """Add the game's reward for the last action to the episode's return (optional)."""
        self._core.accounting.env_return += float(reward)

    @property
    def accounting(self) -> EpisodeAccounting:
        return self._core.accounting

    def close(self) -> None:
        self._core.quick.close()
        self._core.deepthink.close()


__all__ = ["AgentStep", "LondiAgent"]
