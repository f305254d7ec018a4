"""``SwitchEnv``: the switching decision as a gymnasium environment, a thin wrapper over a
:class:`~londi.switch.switcher.Switcher`.

Env card
--------
Wraps
    A LONDI text environment (``info["text_obs"]`` is a :class:`~londi.envs.base.TextObservation`)
    and two text policies: QUICK (cheap) and DEEPTHINK (expensive).
Action space
    ``Discrete(2)``: ``0`` = QUICK's action is executed, ``1`` = DEEPTHINK is called and its action
    is executed.
Observation
    ``Dict(features=Box(dim,), action_mask=Box(0, 1, (2,)))``. ``features`` come from the chosen
    encoder (:mod:`londi.switch.features`) followed by the context features (step, budget left,
    unchanged observation). ``action_mask[1]`` is 0 once a hard budget is spent.
Reward
    ``env reward - call_cost * 1[DEEPTHINK]``. The raw env reward and the call's cost are in
    ``info["env_reward"]`` and ``info["deepthink_cost"]``, so that a learner can keep separate
    reward and cost values (see :class:`~londi.learn.dqn.LondiDQN`).
Termination
    That of the wrapped env. A crash of the wrapped env's simulator mid-episode
    (:data:`~londi.core.errors.TOLERATED_ENV_ERRORS`) truncates the episode (``info["env_error"]``)
    rather than ending training; any other exception is a bug and raises.
Faults and metering
    Those of its :class:`~londi.switch.switcher.Switcher` (``env.switcher``), which holds the
    whole per-step logic: expected faults are counted and fall back, a model that fails on most
    calls stops the run, every call is timed by the switch itself.
Accounting
    ``info["accounting"]`` (an :class:`~londi.switch.accounting.EpisodeAccounting`) holds the
    episode so far: calls, device-seconds and tokens per role (``quick``, ``deepthink``,
    ``switch``), budget left, masked overrides, policy errors.

QUICK is consulted at every step when the feature encoder needs its answer (its entropy, margin
and hidden state are features; its action is what ``0`` executes). With ``features=None`` the
switch sees only the context features and QUICK is called only when chosen, which is how the
fixed baselines (always-QUICK, always-DEEPTHINK) are metered faithfully.

A hard budget of ``B`` DEEPTHINK calls per episode is enforced here, whatever the switch asks:
an action ``1`` with no budget left executes QUICK and is counted in ``masked_overrides``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from londi.agents.base import BatchAnswer, Decision, TextPolicy
from londi.core.errors import TOLERATED_ENV_ERRORS
from londi.core.meter import CallRecord
from londi.envs.base import TextObservation
from londi.switch.accounting import DEEPTHINK, QUICK, ROLES, EpisodeAccounting
from londi.switch.context import StepContext, episode_task
from londi.switch.features import FeatureEncoder
from londi.switch.switcher import (
    DEFAULT_MAX_FAILURE_RATE,
    DEFAULT_MAX_STEPS,
    DEFAULT_MIN_FAILURE_CALLS,
    Switcher,
    reseed_policies,
)

logger = logging.getLogger(__name__)


@dataclass
class Move:
    """The switch's choice carried out on a state (:meth:`SwitchEnv.choose_move`), before the game steps."""

    choice: int
    """0 QUICK, 1 DEEPTHINK (after the hard budget)."""
    executed: str
    """The text action that acts."""
    env_action: Any
    """That action as the game takes it."""
    obs_before: TextObservation
    quick_action: str | None
    oracle_action: str | None


@dataclass
class PendingStep:
    """A step of :meth:`SwitchEnv.begin_step` whose new state is not observed yet."""

    next_text_obs: TextObservation
    """The game's new state (the last one where the episode ended)."""
    reward: float
    """The switch's reward for the step (env reward minus the call cost)."""
    terminated: bool
    truncated: bool
    extra: dict[str, Any] = field(default_factory=dict)
    """The step's info entries so far."""

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


class SwitchEnv(gym.Wrapper):
    """Choose, at every step of a text game, whether QUICK or DEEPTHINK acts.

    Args:
        env: the text environment (a LONDI env, or any env whose ``info["text_obs"]`` is a
            :class:`TextObservation`).
        quick: the cheap policy.
        deepthink: the expensive policy.
        features: encoder name (``"quick"``, ``"bow"``, ``"minilm"``, ``"quick+bow"``, ...), an
            encoder, or ``None`` for context features only (QUICK then called only when chosen).
        call_cost: ``c`` >= 0, subtracted from the reward at each DEEPTHINK call.
        budget: hard cap ``B`` >= 0 on DEEPTHINK calls per episode, or ``None`` for no cap.
        max_steps: the episode's step limit used to normalise the step feature (default: the
            env's ``max_steps`` attribute after each reset, else 100).
        max_failure_rate, min_failure_calls, own_streams: see :class:`~londi.switch.switcher.Switcher`.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        env: gym.Env,
        quick: TextPolicy,
        deepthink: TextPolicy,
        *,
        features: str | FeatureEncoder | None = "quick",
        call_cost: float = 0.0,
        budget: int | None = None,
        max_steps: int | None = None,
        max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE,
        min_failure_calls: int = DEFAULT_MIN_FAILURE_CALLS,
        own_streams: bool = False,
    ) -> None:
        if call_cost < 0 or not np.isfinite(call_cost):
            raise ValueError(f"call_cost must be a finite number >= 0, got {call_cost}")
        if max_steps is not None and max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        super().__init__(env)
        self.switcher = Switcher(quick, deepthink, features=features, budget=budget,
                                 max_failure_rate=max_failure_rate, min_failure_calls=min_failure_calls,
                                 own_streams=own_streams)
        self.call_cost = float(call_cost)
        self._max_steps = max_steps
        self.action_space = self.switcher.action_space
        self.observation_space = self.switcher.observation_space

    @property
    def spec(self) -> None:  # type: ignore[override]
        """None: the switch holds live policies, so it cannot be re-made from a registry spec."""
        return None

    # ------------------------------------------------------------------ the switcher's state
    quick = property(lambda self: self.switcher.quick, doc="The cheap policy.")
    deepthink = property(lambda self: self.switcher.deepthink, doc="The expensive policy.")
    encoder = property(lambda self: self.switcher.encoder, doc="The feature encoder (None: context only).")
    budget = property(lambda self: self.switcher.budget, doc="The hard cap on DEEPTHINK calls per episode.")
    run_calls = property(lambda self: self.switcher.run_calls, doc="Calls per role over the run.")
    run_failures = property(lambda self: self.switcher.run_failures, doc="Failed calls per role over the run.")
    step_limits_seen = property(lambda self: self.switcher.step_limits_seen,
                                doc="Every step limit the step feature was normalised by.")

    @property
    def consults_quick_every_step(self) -> bool:
        return self.switcher.consults_quick_every_step

    @property
    def text_observation(self) -> TextObservation:
        return self.switcher.text_observation

    @property
    def quick_decision(self) -> Decision | None:
        """QUICK's answer for the current state (``None`` when QUICK is called lazily)."""
        return self.switcher.quick_decision

    @property
    def accounting(self) -> EpisodeAccounting:
        return self.switcher.accounting

    @property
    def budget_left(self) -> float:
        return self.switcher.budget_left

    def step_context(self) -> StepContext:
        """What a rule may read at the current step (see :class:`~londi.switch.context.StepContext`)."""
        return self.switcher.context()

    def action_mask(self) -> np.ndarray:
        """``[1, 1]``, or ``[1, 0]`` once the hard budget is spent."""
        return self.switcher.action_mask()

    # sb3-contrib's MaskablePPO looks for this name
    def action_masks(self) -> np.ndarray:
        return self.switcher.action_masks()

    def episode_max_steps(self) -> int:
        return self.switcher.episode_max_steps()

    def set_call_cost(self, call_cost: float) -> None:
        """Change ``c`` (e.g. for evaluation at another cost); takes effect at the next step."""
        if call_cost < 0 or not np.isfinite(call_cost):
            raise ValueError(f"call_cost must be a finite number >= 0, got {call_cost}")
        self.call_cost = float(call_cost)

    def add_switch_cost(self, record: CallRecord) -> None:
        """Meter the switch policy's own decision (e.g. its Q-network forward pass)."""
        self.switcher.add_switch_cost(record)

    # ------------------------------------------------------------------ gym API
    def _step_limit(self) -> int:
        if self._max_steps is not None:
            return self._max_steps
        steps = getattr(self.env.unwrapped, "max_steps", None)
        return int(steps) if steps else DEFAULT_MAX_STEPS

    def _text_obs_of(self, info: dict[str, Any]) -> TextObservation:
        obs = info.get("text_obs")
        if not isinstance(obs, TextObservation):
            raise TypeError("the wrapped env must put a TextObservation in info['text_obs']")
        return obs

    def _info(self, extra: dict[str, Any]) -> dict[str, Any]:
        acc = self.switcher.accounting
        acc.budget_left = self.switcher.budget_left
        info = dict(extra)
        info["accounting"] = acc.snapshot()
        info["budget_left"] = acc.budget_left
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        return self.finish_reset(self.begin_reset(seed=seed, options=options))

    def step(self, action):
        return self.finish_step(self.begin_step(action))

    # ------------------------------------------------------------------ the two halves of reset and step
    # What ``reset``/``step`` do, split where QUICK is consulted on the new state, so that a caller
    # playing several SwitchEnvs side by side (:mod:`londi.switch.vector`) can ask QUICK (and
    # DEEPTHINK) for all of them in one batched call and pass each its answer.
    def begin_reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> TextObservation:
        """Reset the game and start the switcher's episode; returns the first state, not yet observed."""
        _, base_info = self.env.reset(seed=seed, options=options)
        return self.start_episode(seed, base_info)

    def start_episode(self, seed: int | None, base_info: dict[str, Any]) -> TextObservation:
        """The part of :meth:`begin_reset` after the game's reset (whose ``info`` is ``base_info``)."""
        self.switcher.begin(seed=seed, task=episode_task(self.env.unwrapped), max_steps=self._step_limit())
        return self._text_obs_of(base_info)

    def finish_reset(self, text_obs: TextObservation, *, answer: BatchAnswer | None = None):
        """Observe the first state (``answer``: QUICK's, where asked already); returns ``(obs, info)``."""
        obs = self.switcher.observe(text_obs, answer=answer)
        text_obs = self.switcher.text_observation
        return obs, self._info({"text_obs": text_obs, "oracle_action": text_obs.oracle_action})

    def begin_step(self, action, *, answer: BatchAnswer | None = None) -> PendingStep:
        """Carry out the switch's choice and step the game (``answer``: that of the role
        ``switcher.planned_call(action)`` names, where asked already); the new state is not
        observed yet (:attr:`PendingStep.next_text_obs`)."""
        move = self.choose_move(action, answer=answer)
        try:
            result: Any = self.env.step(move.env_action)
        except TOLERATED_ENV_ERRORS as exc:  # e.g. a crashed JVM: end the episode, keep training
            result = exc
        return self.apply_env_step(move, result)

    def choose_move(self, action, *, answer: BatchAnswer | None = None) -> Move:
        """The first part of :meth:`begin_step`: the switch's choice carried out, the game
        action to play (:attr:`Move.env_action`), the game not stepped yet. A caller that steps
        several games at once (:class:`~londi.envs.worker.SubprocessEnv`) plays it and hands
        the game's answer to :meth:`apply_env_step`."""
        sw = self.switcher
        obs_now = sw.text_observation
        quick_action = sw.quick_decision.action if sw.quick_decision is not None else None
        choice, executed = sw.decide(action, answer=answer)
        return Move(choice, executed, self._env_action(executed), obs_now, quick_action, obs_now.oracle_action)

    def apply_env_step(self, move: Move, result: Any) -> PendingStep:
        """The second part of :meth:`begin_step`: the game's five-tuple for ``move``, or the
        tolerated exception it raised (the episode is then truncated)."""
        sw = self.switcher
        extra: dict[str, Any] = {}
        if isinstance(result, BaseException):
            if not isinstance(result, TOLERATED_ENV_ERRORS):
                raise result
            logger.warning("the environment raised mid-episode: %r; truncating the episode", result)
            sw.accounting.env_errors += 1
            reward, terminated, truncated = 0.0, False, True
            base_info: dict[str, Any] = {"text_obs": move.obs_before}
            extra["env_error"] = repr(result)
        else:
            _, reward, terminated, truncated, base_info = result
        reward = float(reward)
        choice = move.choice
        cost = 1.0 if choice == DEEPTHINK else 0.0
        sw.record(choice, reward)
        done = bool(terminated or truncated)
        next_obs = base_info.get("text_obs", move.obs_before) if done else self._text_obs_of(base_info)
        extra.update(
            env_reward=reward,
            deepthink_cost=cost,
            choice="deepthink" if choice == DEEPTHINK else "quick",
            executed_action=move.executed,
            quick_action=move.quick_action,
            oracle_action=move.oracle_action,
            success=bool(base_info.get("success", terminated and reward > 0)),
        )
        for key in ("env_crashed", "level"):
            if key in base_info:
                extra[key] = base_info[key]
        return PendingStep(next_obs, reward - self.call_cost * cost, bool(terminated), bool(truncated), extra)

    def finish_step(self, pending: PendingStep, *, answer: BatchAnswer | None = None):
        """Observe the new state of a :meth:`begin_step` (``answer``: QUICK's on it, where asked
        already; none at the episode's end); returns gymnasium's five-tuple."""
        sw = self.switcher
        if pending.done:
            if answer is not None:
                raise ValueError("finish_step() got QUICK's answer for a final state: nothing is left to decide")
            obs = sw.finish(pending.next_text_obs)
        else:
            obs = sw.observe(pending.next_text_obs, answer=answer)
        extra = dict(pending.extra, text_obs=sw.text_observation)
        return obs, pending.reward, pending.terminated, pending.truncated, self._info(extra)

    def _env_action(self, action: str) -> Any:
        index = getattr(self.env.unwrapped, "action_index", None)
        return index(action) if index is not None else action


__all__ = ["DEEPTHINK", "QUICK", "ROLES", "EpisodeAccounting", "Move", "PendingStep", "SwitchEnv", "reseed_policies"]
