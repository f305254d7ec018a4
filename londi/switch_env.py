"""``SwitchEnv``: the switching decision as a gymnasium environment.

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
    encoder (:mod:`londi.features`) followed by the context features (step, budget left,
    unchanged observation). ``action_mask[1]`` is 0 once a hard budget is spent.
Reward
    ``env reward - call_cost * 1[DEEPTHINK]``. The raw env reward and the call's cost are in
    ``info["env_reward"]`` and ``info["deepthink_cost"]``, so that a learner can keep separate
    reward and cost values (see :class:`~londi.learner.LondiDQN`).
Termination
    That of the wrapped env. A crash of the wrapped env's simulator mid-episode
    (:data:`~londi.errors.TOLERATED_ENV_ERRORS`) truncates the episode (``info["env_error"]``)
    rather than ending training; any other exception is a bug and raises.
Faults
    A policy call that fails in an expected way (:data:`~londi.errors.TOLERATED_POLICY_ERRORS`:
    timeouts, HTTP and connection errors) or answers a non-admissible action is counted and
    falls back (DEEPTHINK to QUICK, QUICK to a random admissible action). When more than
    ``max_failure_rate`` of one role's calls over the env's life have failed (after at least
    ``min_failure_calls`` calls), the env raises :class:`~londi.errors.EndpointFailureError`
    naming the endpoint and its last error: a run whose model never answers must not report
    the fallback's numbers as that model's.
Accounting
    ``info["accounting"]`` (an :class:`EpisodeAccounting`) holds the episode so far: calls,
    device-seconds and tokens per role (``quick``, ``deepthink``, ``switch``), budget left,
    masked overrides, policy errors. The env times every policy call itself
    (:func:`~londi.meter.call_clock`) and books :func:`~londi.meter.bill`'s figure: a policy's
    own device-seconds count only where it measured them on the device.

QUICK is consulted at every step when the feature encoder needs its answer (its entropy, margin
and hidden state are features; its action is what ``0`` executes). With ``features=None`` the
switch sees only the context features and QUICK is called only when chosen, which is how the
fixed baselines (always-QUICK, always-DEEPTHINK) are metered faithfully.

A hard budget of ``B`` DEEPTHINK calls per episode is enforced here, whatever the switch asks:
an action ``1`` with no budget left executes QUICK and is counted in ``masked_overrides``.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from londi.agents.base import Decision, TextPolicy, policy_endpoint, seed_policy
from londi.envs.base import TextObservation
from londi.errors import TOLERATED_ENV_ERRORS, TOLERATED_POLICY_ERRORS, EndpointFailureError
from londi.features import (
    CONTEXT_DIM,
    SINCE_DEEPTHINK_CAP,
    FeatureEncoder,
    SwitchContext,
    make_features,
)
from londi.meter import CallRecord, bill, call_clock, device_timer

logger = logging.getLogger(__name__)

QUICK, DEEPTHINK = 0, 1
ROLES = ("quick", "deepthink", "switch")
#: A run stops when more than this share of one model's calls failed ...
DEFAULT_MAX_FAILURE_RATE = 0.5
#: ... once it has made at least this many calls.
DEFAULT_MIN_FAILURE_CALLS = 10


def reseed_policies(seed: int, policies: tuple[object, ...]) -> None:
    """Seed each policy's sampling from ``seed`` and its position, so that a seeded episode draws
    the same LM actions whatever ran before it in the process (every method meets the same
    draws, a sweep cell repeats exactly, and :class:`~londi.agent.LondiAgent` matches
    ``londi eval``)."""
    for i, policy in enumerate(policies):
        seed_policy(policy, int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0]))


@dataclass
class EpisodeAccounting:
    """What one episode cost so far, per role.

    Measured times are left out of equality (``compare=False``): two runs with the same seed
    make the same calls but never take exactly the same time, and gymnasium's determinism check
    compares ``info``.
    """

    calls: dict[str, int] = field(default_factory=lambda: {r: 0 for r in ROLES})
    device_seconds: dict[str, float] = field(default_factory=lambda: {r: 0.0 for r in ROLES}, compare=False)
    wall_seconds: dict[str, float] = field(default_factory=lambda: {r: 0.0 for r in ROLES}, compare=False)
    tokens: dict[str, int] = field(default_factory=lambda: {r: 0 for r in ROLES})
    flops: dict[str, float] = field(default_factory=lambda: {r: 0.0 for r in ROLES})
    cache_hits: dict[str, int] = field(default_factory=lambda: {r: 0 for r in ROLES})
    steps: int = 0
    env_return: float = 0.0
    budget_left: float = float("inf")
    masked_overrides: int = 0
    policy_errors: int = 0
    invalid_actions: int = 0
    env_errors: int = 0
    oracle_disagreements: int = 0
    taken_oracle_disagreements: int = 0
    oracle_labelled_steps: int = 0

    def add(self, role: str, record: CallRecord) -> None:
        self.calls[role] += 1
        self.device_seconds[role] += record.device_seconds
        self.wall_seconds[role] += record.wall_seconds
        self.tokens[role] += record.input_tokens + record.output_tokens
        self.flops[role] += record.flops
        self.cache_hits[role] += int(record.cache_hit)
        self.policy_errors += int(record.error is not None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def snapshot(self) -> EpisodeAccounting:
        """An independent copy (the env keeps updating its own)."""
        return EpisodeAccounting(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()})


class SwitchEnv(gym.Env):
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
            env's ``max_steps`` attribute, else 100).
        max_failure_rate: stop (:class:`~londi.errors.EndpointFailureError`) when more than this
            share of one role's calls failed; 1 never stops.
        min_failure_calls: calls of a role before its failure share is judged.
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
    ) -> None:
        if call_cost < 0 or not np.isfinite(call_cost):
            raise ValueError(f"call_cost must be a finite number >= 0, got {call_cost}")
        if budget is not None and (isinstance(budget, bool) or int(budget) != budget or budget < 0):
            raise ValueError(f"budget must be a non-negative integer or None, got {budget!r}")
        if max_steps is not None and max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"max_failure_rate must be in [0, 1], got {max_failure_rate}")
        if min_failure_calls < 1:
            raise ValueError(f"min_failure_calls must be >= 1, got {min_failure_calls}")
        self.max_failure_rate = float(max_failure_rate)
        self.min_failure_calls = int(min_failure_calls)
        # over the env's whole life (a run), not an episode: what the fail-loud check judges
        self.run_calls = {r: 0 for r in ROLES[:2]}
        self.run_failures = {r: 0 for r in ROLES[:2]}
        self._last_failure: dict[str, str] = {}
        #: every episode step limit the step feature was normalised by (a saved switch records them)
        self.step_limits_seen: set[int] = set()
        self.env = env
        self.quick = quick
        self.deepthink = deepthink
        self.encoder = make_features(features) if features is not None else None
        self.call_cost = float(call_cost)
        self.budget = None if budget is None else int(budget)
        self._max_steps = max_steps
        self.action_space = spaces.Discrete(2)
        dim = (self.encoder.dim if self.encoder is not None else 0) + CONTEXT_DIM
        self.observation_space = spaces.Dict(
            {
                "features": spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32),
                "action_mask": spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32),
            }
        )
        self.render_mode = None
        self._text_obs: TextObservation | None = None
        self._quick_decision: Decision | None = None
        self._acc = EpisodeAccounting()
        self._obs_unchanged = False
        self._since_deepthink = SINCE_DEEPTHINK_CAP
        self._pending_switch_seconds = 0.0

    # ------------------------------------------------------------------ properties
    @property
    def consults_quick_every_step(self) -> bool:
        return self.encoder is not None and self.encoder.needs_quick

    @property
    def text_observation(self) -> TextObservation:
        if self._text_obs is None:
            raise RuntimeError("call reset() first")
        return self._text_obs

    @property
    def quick_decision(self) -> Decision | None:
        """QUICK's answer for the current state (``None`` when QUICK is called lazily)."""
        return self._quick_decision

    @property
    def accounting(self) -> EpisodeAccounting:
        return self._acc

    @property
    def budget_left(self) -> float:
        if self.budget is None:
            return float("inf")
        return float(self.budget - self._acc.calls["deepthink"])

    def action_mask(self) -> np.ndarray:
        """``[1, 1]``, or ``[1, 0]`` once the hard budget is spent."""
        return np.array([1.0, 0.0 if self.budget_left <= 0 else 1.0], np.float32)

    # sb3-contrib's MaskablePPO looks for this name
    def action_masks(self) -> np.ndarray:
        return self.action_mask().astype(bool)

    def episode_max_steps(self) -> int:
        if self._max_steps is not None:
            return self._max_steps
        steps = getattr(self.env.unwrapped, "max_steps", None)
        return int(steps) if steps else 100

    def set_call_cost(self, call_cost: float) -> None:
        """Change ``c`` (e.g. for evaluation at another cost); takes effect at the next step."""
        if call_cost < 0 or not np.isfinite(call_cost):
            raise ValueError(f"call_cost must be a finite number >= 0, got {call_cost}")
        self.call_cost = float(call_cost)

    def add_switch_cost(self, record: CallRecord) -> None:
        """Meter the switch policy's own decision (e.g. its Q-network forward pass)."""
        self._acc.add("switch", record)

    # ------------------------------------------------------------------ internals
    def _call(self, role: str, policy: TextPolicy, obs: TextObservation) -> Decision | None:
        decision: Decision | None = None
        failure = ""
        with call_clock() as timing:
            try:
                decision = policy.act(obs)
            except TOLERATED_POLICY_ERRORS as exc:  # expected faults: counted, then a fallback answers
                failure = f"{type(exc).__name__}: {exc}"
        if decision is None:
            logger.warning("%s policy %r failed: %s", role, getattr(policy, "name", policy), failure)
            self._acc.add(role, bill(CallRecord(model=getattr(policy, "name", role), error=failure), timing))
            self._count_call(role, policy, failure)
            return None
        self._acc.add(role, bill(decision.record, timing))
        if decision.action not in obs.admissible_actions:
            self._acc.invalid_actions += 1
            logger.warning("%s returned a non-admissible action %r", role, decision.action)
            self._count_call(role, policy, f"non-admissible answer {decision.action!r}")
            return None
        self._count_call(role, policy, decision.record.error)
        return decision

    def _count_call(self, role: str, policy: TextPolicy, failure: str | None) -> None:
        """Count one call of ``role`` over the run; raise once most of them failed."""
        self.run_calls[role] += 1
        if failure is not None:
            self.run_failures[role] += 1
            self._last_failure[role] = failure
        calls, failed = self.run_calls[role], self.run_failures[role]
        if calls >= self.min_failure_calls and failed > self.max_failure_rate * calls:
            raise EndpointFailureError(
                f"{failed} of {calls} {role.upper()} calls to {policy_endpoint(policy)} failed "
                f"(more than {self.max_failure_rate:.0%}); last error: {self._last_failure[role]}. "
                "The run stops here: its numbers would be the fallback's, not this model's."
            )

    def _observe(self, info: dict[str, Any]) -> dict[str, np.ndarray]:
        obs = info.get("text_obs")
        if not isinstance(obs, TextObservation):
            raise TypeError("the wrapped env must put a TextObservation in info['text_obs']")
        return self.observe(obs)

    def _features(self) -> dict[str, np.ndarray]:
        limit = self.episode_max_steps()
        self.step_limits_seen.add(limit)
        with device_timer("cpu") as t:
            parts = []
            if self.encoder is not None:
                quick = self._quick_decision
                if quick is None and self.encoder.needs_quick:
                    n = len(self._text_obs.admissible_actions)
                    quick = Decision(action="", record=CallRecord(model="none"), probs=np.full(n, 1.0 / n))
                parts.append(self.encoder.encode(self._text_obs, quick))
            budget_frac = 1.0 if self.budget is None else (self.budget_left / self.budget if self.budget else 0.0)
            ctx = SwitchContext(
                step_frac=min(self._acc.steps / limit, 1.0),
                budget_frac=float(budget_frac),
                obs_unchanged=float(self._obs_unchanged),
                since_deepthink=min(self._since_deepthink, SINCE_DEEPTHINK_CAP) / SINCE_DEEPTHINK_CAP,
            )
            parts.append(ctx.to_array())
            features = np.concatenate(parts).astype(np.float32)
        if self.encoder is not None:
            self._acc.add("switch", CallRecord(model=f"features:{self.encoder.name}",
                                               device_seconds=t.device_seconds, wall_seconds=t.wall_seconds))
        return {"features": features, "action_mask": self.action_mask()}

    def _env_action(self, action: str) -> Any:
        index = getattr(self.env.unwrapped, "action_index", None)
        return index(action) if index is not None else action

    def _random_action(self) -> str:
        acts = self._text_obs.admissible_actions
        return acts[int(self.np_random.integers(len(acts)))]

    def _info(self, extra: dict[str, Any]) -> dict[str, Any]:
        self._acc.budget_left = self.budget_left
        info = dict(extra)
        info["accounting"] = self._acc.snapshot()
        info["budget_left"] = self.budget_left
        return info

    # ------------------------------------------------------------------ the switch step by step
    # These four methods are the switch's whole per-step logic; ``step`` composes them with the
    # wrapped env, and :class:`~londi.agent.LondiAgent` composes them with a user's own game loop.
    def begin_episode(self) -> None:
        """Forget the last episode: policies reset, accounting zeroed."""
        self.quick.reset()
        self.deepthink.reset()
        self._acc = EpisodeAccounting()
        self._text_obs = None
        self._quick_decision = None
        # "long ago" at the start, so that 0 means only "DEEPTHINK just acted" (a switch that
        # calls at step 0 must not read the next step as the same situation)
        self._since_deepthink = SINCE_DEEPTHINK_CAP

    def observe(self, text_obs: TextObservation) -> dict[str, np.ndarray]:
        """Take the current state: consult QUICK if the features need it; return the switch observation."""
        self._obs_unchanged = self._text_obs is not None and text_obs.text == self._text_obs.text
        self._text_obs = text_obs
        self._quick_decision = None
        if self.consults_quick_every_step:
            self._quick_decision = self._call("quick", self.quick, text_obs)
        return self._features()

    def decide(self, action: int) -> tuple[int, str]:
        """Carry out the switch's choice on the current state: returns ``(choice, game action)``.

        The choice is downgraded to QUICK when the hard budget is spent; a failing or
        non-admissible DEEPTHINK answer falls back to QUICK's, a failing QUICK to a random
        admissible action (each counted in the accounting).
        """
        choice = int(action)
        if choice not in (QUICK, DEEPTHINK):
            raise ValueError(f"switch action must be 0 (QUICK) or 1 (DEEPTHINK), got {action!r}")
        obs_now = self.text_observation
        if choice == DEEPTHINK and self.budget_left <= 0:
            choice = QUICK  # the hard cap holds whatever the switch asks
            self._acc.masked_overrides += 1
        decision: Decision | None
        if choice == DEEPTHINK:
            decision = self._call("deepthink", self.deepthink, obs_now)
            if decision is None:  # fall back to QUICK's answer
                decision = self._quick_decision or self._call("quick", self.quick, obs_now)
        else:
            decision = self._quick_decision or self._call("quick", self.quick, obs_now)
        executed = decision.action if decision is not None else self._random_action()
        oracle = obs_now.oracle_action
        quick_action = self._quick_decision.action if self._quick_decision is not None else None
        if oracle is not None and quick_action is not None:
            self._acc.oracle_labelled_steps += 1
            self._acc.oracle_disagreements += int(quick_action != oracle)
        if oracle is not None:
            self._acc.taken_oracle_disagreements += int(executed != oracle)
        return choice, executed

    def record_outcome(self, choice: int, reward: float) -> None:
        """Book the step's reward once the game has executed the action."""
        self._acc.steps += 1
        self._acc.env_return += float(reward)
        self._since_deepthink = 0 if choice == DEEPTHINK else self._since_deepthink + 1

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        _, base_info = self.env.reset(seed=seed, options=options)
        self.begin_episode()
        if seed is not None:
            reseed_policies(seed, (self.quick, self.deepthink))
        obs = self._observe(base_info)
        return obs, self._info({"text_obs": self._text_obs, "oracle_action": self._text_obs.oracle_action})

    def step(self, action):
        obs_now = self.text_observation
        quick_action = self._quick_decision.action if self._quick_decision is not None else None
        oracle = obs_now.oracle_action
        choice, executed = self.decide(action)
        extra: dict[str, Any] = {}
        try:
            _, reward, terminated, truncated, base_info = self.env.step(self._env_action(executed))
        except TOLERATED_ENV_ERRORS as exc:  # e.g. a crashed JVM: end the episode, keep training
            logger.warning("the environment raised mid-episode: %r; truncating the episode", exc)
            self._acc.env_errors += 1
            reward, terminated, truncated = 0.0, False, True
            base_info = {"text_obs": obs_now}
            extra["env_error"] = repr(exc)
        reward = float(reward)
        cost = 1.0 if choice == DEEPTHINK else 0.0
        self.record_outcome(choice, reward)
        if terminated or truncated:
            self._text_obs = base_info.get("text_obs", obs_now)
            self._quick_decision = None
            obs = self._features()
        else:
            obs = self._observe(base_info)
        extra.update(
            env_reward=reward,
            deepthink_cost=cost,
            choice="deepthink" if choice == DEEPTHINK else "quick",
            executed_action=executed,
            quick_action=quick_action,
            oracle_action=oracle,
            success=bool(base_info.get("success", terminated and reward > 0)),
            text_obs=self._text_obs,
        )
        for key in ("env_crashed", "level"):
            if key in base_info:
                extra[key] = base_info[key]
        return obs, reward - self.call_cost * cost, bool(terminated), bool(truncated), self._info(extra)

    def render(self):
        return self.env.render()

    def close(self) -> None:
        self.env.close()
