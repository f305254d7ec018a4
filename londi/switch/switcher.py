"""``Switcher``: the switch's whole per-step logic, with no gym in it.

One episode is ``begin``, then for each state ``observe`` (QUICK is consulted when the features
need it; returns the switch observation), a rule's choice on that observation and
:meth:`Switcher.context`, ``decide`` (the hard budget holds, DEEPTHINK is called only if chosen,
faults fall back; returns the action to play) and ``record`` (the reward, once the game played
it). :class:`~londi.switch.env.SwitchEnv` composes these with a gymnasium env,
:class:`~londi.agent.LondiAgent` with a user's own game loop, and the evaluation loop drives
``SwitchEnv``: all three run this same code.

Faults
    A policy call that fails in an expected way (:data:`~londi.core.errors.TOLERATED_POLICY_ERRORS`:
    timeouts, HTTP and connection errors) or answers a non-admissible action is counted and
    falls back (DEEPTHINK to QUICK, QUICK to a random admissible action). When more than
    ``max_failure_rate`` of one role's calls over the switcher's life have failed (after at least
    ``min_failure_calls`` calls), it raises :class:`~londi.core.errors.EndpointFailureError`
    naming the endpoint and its last error: a run whose model never answers must not report
    the fallback's numbers as that model's.
Metering
    Every policy call is timed here (:func:`~londi.core.meter.call_clock`) and booked at
    :func:`~londi.core.meter.bill`'s figure: a policy's own device-seconds count only where it
    measured them on the device. The features' cost is booked under ``switch``.
"""
from __future__ import annotations

import logging

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from londi.agents.base import BatchAnswer, Decision, TextPolicy, act_batch, policy_endpoint, seed_policy, timed_act
from londi.core.errors import TOLERATED_POLICY_ERRORS, EndpointFailureError
from londi.core.meter import CallRecord, bill, device_timer
from londi.envs.base import TextObservation
from londi.switch.accounting import DEEPTHINK, QUICK, ROLES, EpisodeAccounting
from londi.switch.context import StepContext
from londi.switch.features import (
    CONTEXT_DIM,
    SINCE_DEEPTHINK_CAP,
    FeatureEncoder,
    SwitchContext,
    make_features,
)

logger = logging.getLogger(__name__)

#: A run stops when more than this share of one model's calls failed ...
DEFAULT_MAX_FAILURE_RATE = 0.5
#: ... once it has made at least this many calls.
DEFAULT_MIN_FAILURE_CALLS = 10
#: The step limit that normalises the step feature when the game gives none.
DEFAULT_MAX_STEPS = 100


def policy_seed(seed: int, position: int) -> int:
    """The sampling seed of the policy at ``position`` (0 QUICK, 1 DEEPTHINK) in episode ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(position)]).generate_state(1)[0])


def reseed_policies(seed: int, policies: tuple[object, ...]) -> None:
    """Seed each policy's sampling from ``seed`` and its position, so that a seeded episode draws
    the same LM actions whatever ran before it in the process (every method meets the same
    draws, a sweep cell repeats exactly, and :class:`~londi.agent.LondiAgent` matches
    ``londi eval``)."""
    for i, policy in enumerate(policies):
        seed_policy(policy, policy_seed(seed, i))


class Switcher:
    """Choose, at every step of a text game, whether QUICK or DEEPTHINK acts.

    Args:
        quick: the cheap policy.
        deepthink: the expensive policy.
        features: encoder name (``"quick"``, ``"bow"``, ``"minilm"``, ``"quick+bow"``, ...), an
            encoder, or ``None`` for context features only (QUICK then called only when chosen).
        budget: hard cap ``B`` >= 0 on DEEPTHINK calls per episode, or ``None`` for no cap.
        max_failure_rate: stop (:class:`~londi.core.errors.EndpointFailureError`) when more than this
            share of one role's calls failed; 1 never stops.
        min_failure_calls: calls of a role before its failure share is judged.
        own_streams: keep each episode's sampling streams here (one generator per role, seeded
            as :func:`reseed_policies` would seed the policy) and pass them with every call,
            instead of reseeding the shared policies. Switchers that play episodes side by side
            over the same policies (:mod:`londi.switch.vector`) need this; policies without
            stream support (:attr:`~londi.agents.base.TextPolicy.supports_streams`) draw
            from their own stream either way.
    """

    def __init__(
        self,
        quick: TextPolicy,
        deepthink: TextPolicy,
        *,
        features: str | FeatureEncoder | None = "quick",
        budget: int | None = None,
        max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE,
        min_failure_calls: int = DEFAULT_MIN_FAILURE_CALLS,
        own_streams: bool = False,
    ) -> None:
        if budget is not None and (isinstance(budget, bool) or int(budget) != budget or budget < 0):
            raise ValueError(f"budget must be a non-negative integer or None, got {budget!r}")
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"max_failure_rate must be in [0, 1], got {max_failure_rate}")
        if min_failure_calls < 1:
            raise ValueError(f"min_failure_calls must be >= 1, got {min_failure_calls}")
        self.quick = quick
        self.deepthink = deepthink
        self.encoder = make_features(features) if features is not None else None
        self.budget = None if budget is None else int(budget)
        self.max_failure_rate = float(max_failure_rate)
        self.min_failure_calls = int(min_failure_calls)
        self.own_streams = bool(own_streams)
        self._streams: dict[str, np.random.Generator | None] = {"quick": None, "deepthink": None}
        dim = (self.encoder.dim if self.encoder is not None else 0) + CONTEXT_DIM
        self.observation_space = spaces.Dict(
            {
                "features": spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32),
                "action_mask": spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32),
            }
        )
        self.action_space = spaces.Discrete(2)
        # over the switcher's whole life (a run), not an episode: what the fail-loud check judges
        self.run_calls = {r: 0 for r in ROLES[:2]}
        self.run_failures = {r: 0 for r in ROLES[:2]}
        self._last_failure: dict[str, str] = {}
        #: every episode step limit the step feature was normalised by (a saved switch records them)
        self.step_limits_seen: set[int] = set()
        self._rng: np.random.Generator | None = None
        self._text_obs: TextObservation | None = None
        self._quick_decision: Decision | None = None
        self._acc = EpisodeAccounting()
        self._obs_unchanged = False
        self._since_deepthink = SINCE_DEEPTHINK_CAP
        self._episode_seed: int | None = None
        self._task = "default"
        self._episode_max_steps = DEFAULT_MAX_STEPS

    # ------------------------------------------------------------------ the episode
    def begin(self, *, seed: int | None = None, task: str = "default", max_steps: int | None = None) -> None:
        """Start an episode: policies reset, accounting zeroed.

        Args:
            seed: the episode's seed. It reseeds the policies' sampling
                (:func:`reseed_policies`) and the switcher's own draws (a random admissible
                action when QUICK fails); without one both go on from where they were, and
                rules keep reading the last seed (:attr:`StepContext.episode_seed`).
            task: the episode's task or level (:attr:`StepContext.task`).
            max_steps: the episode's step limit (default :data:`DEFAULT_MAX_STEPS`).
        """
        if max_steps is not None and max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        self.quick.reset()
        self.deepthink.reset()
        self._acc = EpisodeAccounting()
        self._text_obs = None
        self._quick_decision = None
        # "long ago" at the start, so that 0 means only "DEEPTHINK just acted" (a switch that
        # calls at step 0 must not read the next step as the same situation)
        self._since_deepthink = SINCE_DEEPTHINK_CAP
        if seed is not None:
            self._rng, _ = seeding.np_random(int(seed))  # the draws a gymnasium env seeded alike makes
            self._episode_seed = int(seed)
            if self.own_streams:
                self._streams = {role: np.random.default_rng(policy_seed(int(seed), i))
                                 for i, role in enumerate(("quick", "deepthink"))}
            else:
                reseed_policies(int(seed), (self.quick, self.deepthink))
        self._task = task
        self._episode_max_steps = int(max_steps) if max_steps is not None else DEFAULT_MAX_STEPS

    def observe(self, text_obs: TextObservation, *, answer: BatchAnswer | None = None) -> dict[str, np.ndarray]:
        """Take the current state: consult QUICK if the features need it; return the switch observation.

        ``answer``: QUICK's answer for ``text_obs`` where the caller asked it already (a batched
        call over episodes played side by side); it is booked as if this switcher had called.
        """
        self._obs_unchanged = self._text_obs is not None and text_obs.text == self._text_obs.text
        self._text_obs = text_obs
        self._quick_decision = None
        if self.consults_quick_every_step:
            self._quick_decision = self._call("quick", self.quick, text_obs, answer)
        elif answer is not None:
            raise ValueError("observe() got QUICK's answer, but this switch consults QUICK only when chosen")
        return self.features()

    def planned_call(self, action: int) -> str | None:
        """The role that :meth:`decide` with ``action`` will call first on the current state
        (``"deepthink"``, ``"quick"``), or ``None`` when QUICK's answer is already in hand: what
        a caller batching several switchers' calls asks for them."""
        if int(action) == DEEPTHINK and self.budget_left > 0:
            return "deepthink"
        return "quick" if self._quick_decision is None else None

    def stream(self, role: str) -> np.random.Generator | None:
        """The episode's sampling stream of ``role`` (``None`` unless ``own_streams``)."""
        return self._streams[role]

    def decide(self, action: int, *, answer: BatchAnswer | None = None) -> tuple[int, str]:
        """Carry out the switch's choice on the current state: returns ``(choice, game action)``.

        The choice is downgraded to QUICK when the hard budget is spent; a failing or
        non-admissible DEEPTHINK answer falls back to QUICK's, a failing QUICK to a random
        admissible action (each counted in the accounting). ``answer``: the answer of the role
        :meth:`planned_call` names, where the caller asked it already.
        """
        choice = int(action)
        if choice not in (QUICK, DEEPTHINK):
            raise ValueError(f"switch action must be 0 (QUICK) or 1 (DEEPTHINK), got {action!r}")
        if answer is not None and self.planned_call(choice) is None:
            raise ValueError("decide() got an answer, but this step needs no new call")
        obs_now = self.text_observation
        if choice == DEEPTHINK and self.budget_left <= 0:
            choice = QUICK  # the hard cap holds whatever the switch asks
            self._acc.masked_overrides += 1
        decision: Decision | None
        if choice == DEEPTHINK:
            decision = self._call("deepthink", self.deepthink, obs_now, answer)
            if decision is None:  # fall back to QUICK's answer
                decision = self._quick_decision or self._call("quick", self.quick, obs_now)
        else:
            decision = self._quick_decision or self._call("quick", self.quick, obs_now, answer)
        executed = decision.action if decision is not None else self._random_action(obs_now)
        oracle = obs_now.oracle_action
        quick_action = self._quick_decision.action if self._quick_decision is not None else None
        if oracle is not None and quick_action is not None:
            self._acc.oracle_labelled_steps += 1
            self._acc.oracle_disagreements += int(quick_action != oracle)
        if oracle is not None:
            self._acc.taken_oracle_disagreements += int(executed != oracle)
        return choice, executed

    def record(self, choice: int, reward: float) -> None:
        """Book the step's reward once the game has executed the action."""
        self._acc.steps += 1
        self._acc.env_return += float(reward)
        self._since_deepthink = 0 if choice == DEEPTHINK else self._since_deepthink + 1

    # ------------------------------------------------------------------ what a rule may read
    @property
    def consults_quick_every_step(self) -> bool:
        return self.encoder is not None and self.encoder.needs_quick

    @property
    def text_observation(self) -> TextObservation:
        if self._text_obs is None:
            raise RuntimeError("call begin() and observe() first (SwitchEnv: reset())")
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
        """The step limit of the current episode (what the step feature is normalised by)."""
        return self._episode_max_steps

    def add_switch_cost(self, record: CallRecord) -> None:
        """Meter the switch policy's own decision (e.g. its Q-network forward pass)."""
        self._acc.add("switch", record)

    def context(self) -> StepContext:
        """What a rule may read at the current step (see :class:`~londi.switch.context.StepContext`)."""
        return StepContext(
            text_obs=self.text_observation,
            quick_decision=self._quick_decision,
            accounting=self._acc,
            budget_left=self.budget_left,
            consults_quick=self.consults_quick_every_step,
            episode_seed=self._episode_seed,
            task=self._task,
        )

    def finish(self, text_obs: TextObservation) -> dict[str, np.ndarray]:
        """The switch observation of the episode's last state (QUICK is not consulted: nothing
        is left to decide there)."""
        self._text_obs = text_obs
        self._quick_decision = None
        return self.features()

    # ------------------------------------------------------------------ internals
    def _ask(self, role: str, policy: TextPolicy, obs: TextObservation) -> BatchAnswer:
        """One timed call of ``role``, with the episode's stream where this switcher keeps them."""
        stream = self._streams[role]
        if stream is not None and getattr(policy, "supports_streams", False):
            return act_batch(policy, [obs], [stream])[0]
        return timed_act(policy, obs)

    def _call(self, role: str, policy: TextPolicy, obs: TextObservation,
              answer: BatchAnswer | None = None) -> Decision | None:
        if answer is None:
            answer = self._ask(role, policy, obs)
        decision, timing = answer.decision, answer.timing
        failure = ""
        if answer.error is not None:  # expected faults: counted, then a fallback answers
            if not isinstance(answer.error, TOLERATED_POLICY_ERRORS):
                raise answer.error
            failure = f"{type(answer.error).__name__}: {answer.error}"
            decision = None
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

    def features(self) -> dict[str, np.ndarray]:
        """The switch observation of the current state (features and action mask), QUICK's answer as it stands."""
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

    def _random_action(self, obs: TextObservation) -> str:
        if self._rng is None:
            self._rng, _ = seeding.np_random()
        acts = obs.admissible_actions
        return acts[int(self._rng.integers(len(acts)))]


__all__ = ["DEFAULT_MAX_FAILURE_RATE", "DEFAULT_MIN_FAILURE_CALLS", "DEFAULT_MAX_STEPS", "Switcher", "policy_seed",
           "reseed_policies"]
