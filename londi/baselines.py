"""Baseline switch rules that LONDI is compared with (same env, same LM pair, same seeds).

Every baseline is a :class:`~londi.rules.SwitchRule`, so :func:`londi.evaluate.run_rule` runs
it on the same held-out episodes as the learned switch, and ``londi eval --method NAME`` (or a
``londi sweep`` grid) builds it with :func:`make_baseline`. The names of :data:`BASELINES`:

``random``
    :class:`RandomSwitch`: calls DEEPTHINK with probability ``rate`` at every step (``--rate``,
    default :data:`DEFAULT_RATE`). Its coin flips are seeded by the run seed and the episode's
    env seed, so the same episode gets the same choices in every process and order.
``periodic``
    :class:`PeriodicSwitch`: DEEPTHINK at evenly spaced steps, ``rate`` of them (``--rate``,
    default :data:`DEFAULT_RATE`: every other step), starting with the first. The deterministic
    twin of ``random``: on BabyAI-Text spreading the calls out in time is worth more than any
    state cue the other rules read (docs/benchmarks.md).
``first-b``
    :class:`FirstBSwitch`: DEEPTHINK for the first ``B`` steps of every episode, then QUICK
    (``--budget B``, required): the naive way to spend a hard budget, for LONDI-B's budget sweep.
``heuristic``
    :class:`HeuristicSwitch`: SwiftSage-style hand rules (escalate after repeated failed or
    invalid actions, a state-action loop, a run of one repeated action, or no reward for ``k``
    steps; return to QUICK after a few DEEPTHINK steps). It does not consult QUICK in advance.
``uncertainty``
    :class:`UncertaintySwitch`: escalates when QUICK's distribution over the admissible actions
    is flat (normalised entropy, or one minus the top-2 margin). With ``--rate`` the threshold is
    calibrated to that DEEPTHINK call rate on calibration episodes (:func:`calibrate_threshold`).
``router``
    :class:`RouterSwitch`: a supervised step-level router in the spirit of ComplexityNet: a
    logistic regression (:class:`LogisticRegression`) on the switch's ``quick`` state features,
    trained on logged states labelled by whether QUICK's action differs from the expert's (an
    **oracle**, used for the labels only), thresholded at probability 0.5, or calibrated to
    ``--rate`` like ``uncertainty``.
``task-router``
    :class:`TaskRouter`: a per-episode router in the spirit of collaborative performance
    prediction (CPP) and RouteLLM: a matrix factorisation (:func:`factorize_scores`) of the
    model x task success matrix measured on training episodes picks one model for the whole
    episode. Tasks are BabyAI levels (``info["level"]``: the mixed env has several, a single-level
    env gives a one-column matrix), else :func:`episode_task`'s fallbacks.
``oracle``
    :class:`HindsightOracle`: the **hindsight oracle**: calls DEEPTHINK exactly where QUICK's
    action differs from the expert's. It reads the expert's label, which no deployable switch
    can; it gives the fewest calls that reach the expert-level result (a lower bound on calls).

Seeds and offline work. The calibration and training episodes that ``uncertainty``, ``router``
and ``task-router`` need use env seeds drawn by :func:`training_seeds` from
``[0, HELDOUT_SEED_BASE)``: they never overlap the held-out evaluation episodes of
:func:`londi.evaluate.heldout_seeds`. They are played with the LM pair behind an in-memory call
cache (:func:`offline_pair`: a repeated question costs nothing), and their LM calls, cache hits
and device-seconds are metered with the same :class:`~londi.switch_env.SwitchEnv` accounting
and reported *separately* from the evaluation, in the rule's :attr:`OfflineRule.offline_cost`
(:func:`rule_offline_info`; ``londi sweep`` writes it to each cell's ``results.json`` under
``offline_cost``).
"""
from __future__ import annotations

import argparse
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from londi.agents.base import TextPolicy
from londi.envs import DEFAULT_ENV_ID, env_ids
from londi.errors import ConfigError, UnknownChoiceError
from londi.evaluate import HELDOUT_SEED_BASE, Method, build_switch_env, run_rule
from londi.metrics import ROLES, EpisodeStats
from londi.rules import SwitchRule
from londi.seeds import training_seeds  # the seed scheme; re-exported here, where it used to live
from londi.switch_env import DEEPTHINK, QUICK, SwitchEnv

logger = logging.getLogger(__name__)

#: Names accepted by :func:`make_baseline` (and ``londi eval --method``).
BASELINES: tuple[str, ...] = (
    "random", "periodic", "first-b", "heuristic", "uncertainty", "router", "task-router", "oracle",
)

#: The call rate of ``random`` when no ``--rate`` is given.
DEFAULT_RATE = 0.5
#: Episodes used to calibrate a threshold to a call rate (``uncertainty``, ``router``).
DEFAULT_CALIBRATION_EPISODES = 12
#: Episodes logged to train ``router`` and ``task-router`` (per model for ``task-router``).
DEFAULT_TRAIN_EPISODES = 12


# ------------------------------------------------------------------------------------ helpers
def episode_task(env: SwitchEnv) -> str:
    """The task (column of the task router's matrix) of the env's current episode.

    Read from the wrapped env, so that the router knows it before the first step: BabyAI's
    ``current_level`` (the ``info["level"]`` of its steps; one level for a single-level env),
    else a ``task``, ``task_name`` or ``game_file`` attribute, else ``"default"`` (one column).
    """
    base = env.env.unwrapped
    for attr in ("current_level", "task", "task_name", "game_file"):
        try:
            value = getattr(base, attr, None)
        except Exception:  # a property that needs state the env does not have yet
            value = None
        if isinstance(value, str) and value:
            return value
    return "default"


def _episode_rng(seed: int, env: SwitchEnv, seen: Counter) -> np.random.Generator:
    """A generator for one episode, keyed by the rule's seed and the episode's env seed.

    The same (rule seed, env seed) gives the same draws whatever ran before in the process;
    ``seen`` counts repeats of an env seed (an env reset without a new seed), so such episodes
    still get fresh draws.
    """
    env_seed = getattr(env, "np_random_seed", None)
    env_seed = int(env_seed) if env_seed is not None and env_seed >= 0 else -1
    repeat = seen[env_seed]
    seen[env_seed] += 1
    return np.random.default_rng(np.random.SeedSequence([int(seed), env_seed + 1, repeat]))


def _can_call(obs: Mapping[str, np.ndarray]) -> bool:
    return bool(obs["action_mask"][DEEPTHINK] > 0.5)


def _check_rate(rate: float | None) -> float | None:
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) <= 1.0:
        raise ConfigError(f"rate must be a number in [0, 1], got {rate!r}")
    return float(rate)


@dataclass
class OfflineCost:
    """What a baseline's calibration or training cost, metered like an evaluation.

    Attributes:
        purpose: what the episodes were for (``"uncertainty calibration"``, ...).
        episodes: episodes run.
        steps: env steps taken.
        calls: LM calls per role (``quick``, ``deepthink``), cache hits included.
        device_seconds: device-seconds per role (``quick``, ``deepthink``, ``switch``) and ``total``.
        wall_seconds: wall-clock time, including fitting.
        env_seeds: the env seeds used (all below ``HELDOUT_SEED_BASE``).
        cache_hits: of ``calls``, those answered by the offline call cache (no model ran, so
            they add no device-seconds; see :func:`offline_pair`).
    """

    purpose: str
    episodes: int = 0
    steps: int = 0
    calls: dict[str, int] = field(default_factory=lambda: {"quick": 0, "deepthink": 0})
    device_seconds: dict[str, float] = field(default_factory=lambda: {r: 0.0 for r in (*ROLES, "total")})
    wall_seconds: float = 0.0
    env_seeds: list[int] = field(default_factory=list)
    cache_hits: dict[str, int] = field(default_factory=lambda: {"quick": 0, "deepthink": 0})

    def add(self, episodes: Sequence[EpisodeStats], seeds: Sequence[int]) -> None:
        for e in episodes:
            self.episodes += 1
            self.steps += e.steps
            self.calls["quick"] += e.quick_calls
            self.calls["deepthink"] += e.deepthink_calls
            for role in ROLES:
                self.device_seconds[role] += float(e.device_seconds.get(role, 0.0))
            self.device_seconds["total"] += e.total_device_seconds
        known = set(self.env_seeds)
        self.env_seeds.extend(int(s) for s in dict.fromkeys(seeds) if int(s) not in known)

    def to_dict(self) -> dict[str, Any]:
        return {
            "purpose": self.purpose,
            "episodes": self.episodes,
            "steps": self.steps,
            "calls": dict(self.calls),
            "device_seconds": dict(self.device_seconds),
            "wall_seconds": self.wall_seconds,
            "env_seeds": list(self.env_seeds),
            "cache_hits": dict(self.cache_hits),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OfflineCost:
        """The inverse of :meth:`to_dict` (e.g. to keep counting after a resumed run)."""
        cost = cls(purpose=str(data["purpose"]), episodes=int(data["episodes"]), steps=int(data["steps"]),
                   wall_seconds=float(data["wall_seconds"]), env_seeds=[int(x) for x in data["env_seeds"]])
        cost.calls.update(data["calls"])
        cost.device_seconds.update(data["device_seconds"])
        cost.cache_hits.update(data.get("cache_hits", {}))
        return cost


class OfflineRule(SwitchRule):
    """A rule that needs offline episodes (calibration or training) before evaluation.

    Attributes:
        offline_cost: one :class:`OfflineCost` per offline phase, in order; empty when the rule
            was built with fixed parameters.
    """

    def __init__(self) -> None:
        self.offline_cost: list[OfflineCost] = []

    def offline_summary(self) -> list[dict[str, Any]]:
        """:attr:`offline_cost` as JSON-ready dicts."""
        return [c.to_dict() for c in self.offline_cost]


def offline_pair(quick: TextPolicy, deepthink: TextPolicy) -> tuple[TextPolicy, TextPolicy]:
    """The LM pair for a baseline's offline episodes: each wrapped in an in-memory call cache.

    Calibration rounds replay the same episodes, and a stuck QUICK sees the same state many
    times, so most offline questions repeat. Each non-oracle policy is wrapped in a
    :class:`~londi.agents.cache.CachedPolicy`: a repeated question is answered from memory (no
    model runs, so it adds no device-seconds; the accounting counts it in ``cache_hits``). The
    evaluation itself always uses the unwrapped policies.
    """
    from londi.agents.cache import CachedPolicy

    def wrap(policy: TextPolicy) -> TextPolicy:
        if policy.is_oracle or isinstance(policy, CachedPolicy):
            return policy  # oracles read privileged state that no cache key holds
        return CachedPolicy(policy)

    return wrap(quick), wrap(deepthink)


def offline_run(
    rule: SwitchRule,
    env: SwitchEnv,
    seeds: Sequence[int],
    cost: OfflineCost,
    *,
    desc: str,
    progress: bool = False,
    on_episode: Callable[[int, EpisodeStats, dict[str, Any]], None] | None = None,
) -> list[EpisodeStats]:
    """:func:`~londi.evaluate.run_rule` for offline work, metered into ``cost``."""

    def meter(i: int, stats: EpisodeStats, info: dict[str, Any]) -> None:
        acc = info["accounting"]
        for role in cost.cache_hits:
            cost.cache_hits[role] += int(acc.cache_hits.get(role, 0))
        if on_episode is not None:
            on_episode(i, stats, info)

    eps = run_rule(rule, env, seeds, progress=progress, desc=desc, on_episode=meter)
    cost.add(eps, seeds)
    return eps


# ------------------------------------------------------------------------------------ random / first-B
class RandomSwitch(SwitchRule):
    """Call DEEPTHINK with probability ``rate`` at each step (QUICK is called only when chosen).

    Args:
        rate: the call probability in [0, 1].
        seed: the run seed; each episode's coin flips are seeded by it and the episode's env seed.
    """

    features = None

    def __init__(self, *, rate: float = DEFAULT_RATE, seed: int = 0) -> None:
        checked = _check_rate(rate)
        if checked is None:
            raise ConfigError("random needs a rate in [0, 1]")
        self.rate = checked
        self.seed = int(seed)
        self.name = "random"
        self._rng: np.random.Generator | None = None
        self._seen: Counter = Counter()

    def reset(self) -> None:
        self._rng = None

    def choose(self, obs: dict[str, np.ndarray], env: SwitchEnv) -> int:
        if self._rng is None:
            self._rng = _episode_rng(self.seed, env, self._seen)
        flip = self._rng.random() < self.rate  # always drawn, so the mask does not shift later flips
        return DEEPTHINK if flip and _can_call(obs) else QUICK


class PeriodicSwitch(SwitchRule):
    """Call DEEPTHINK at evenly spaced steps: a share ``rate`` of them, the first step included.

    A running credit grows by ``rate`` each step and a call spends 1, so the calls fall every
    ``1 / rate`` steps (steps 0, 2, 4, ... at 0.5; 0, 4, 8, ... at 0.25) and non-integer periods
    alternate between the two nearest. A step where DEEPTHINK is masked (spent budget) is given
    to QUICK and the call moves to the next step.

    Args:
        rate: the share of steps in [0, 1].
    """

    features = None

    def __init__(self, *, rate: float = DEFAULT_RATE) -> None:
        checked = _check_rate(rate)
        if checked is None:
            raise ConfigError("periodic needs a rate in [0, 1]")
        self.rate = checked
        self.name = "periodic"
        self._credit = 0.0

    def reset(self) -> None:
        self._credit = 1.0 - self.rate if self.rate > 0 else 0.0

    def choose(self, obs: dict[str, np.ndarray], env: SwitchEnv) -> int:
        if env.accounting.steps == 0:
            self.reset()  # also right when a caller forgets reset()
        self._credit += self.rate
        if self._credit >= 1.0 - 1e-9 and _can_call(obs):
            self._credit -= 1.0
            return DEEPTHINK
        return QUICK


class FirstBSwitch(SwitchRule):
    """DEEPTHINK for the first ``budget`` steps of an episode, then QUICK.

    Args:
        budget: ``B`` >= 0, the number of leading steps given to DEEPTHINK.
    """

    features = None

    def __init__(self, *, budget: int) -> None:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise ConfigError(f"first-b needs a budget B (a non-negative integer), got {budget!r}")
        self.budget = budget
        self.name = "first-b"

    def choose(self, obs: dict[str, np.ndarray], env: SwitchEnv) -> int:
        return DEEPTHINK if env.accounting.steps < self.budget and _can_call(obs) else QUICK


# ------------------------------------------------------------------------------------ heuristic
class HeuristicSwitch(SwitchRule):
    """SwiftSage-style hand rules: QUICK acts until it looks stuck, then DEEPTHINK acts for a
    few steps, then control returns to QUICK.

    The rule looks only at what happened (the executed action, the observation text, the reward
    and the env's count of invalid actions), so it does not consult QUICK in advance (it
    declares no features) and costs nothing but a few comparisons. It escalates when:

    * **failed or invalid actions**: at least ``fail_limit`` of the last ``fail_window`` actions
      failed. An action fails when it leaves the observation text unchanged (in BabyAI-Text a
      move into a wall, ``toggle`` or ``pick up`` with nothing in front) or when the chosen
      model answered with a non-admissible action or raised (``invalid_actions`` /
      ``policy_errors`` of the accounting grow);
    * **a loop**: the same (observation text, action) pair occurs twice within the last
      ``loop_window`` steps (e.g. four ``turn left`` in a row bring back the same view);
    * **a repeated action**: the same action ``repeat_limit`` times in a row (0 disables it);
    * **no reward**: ``patience`` steps without a positive reward (SwiftSage's ``k``; 0
      disables it). BabyAI rewards only success, so the default is longer than SwiftSage's 5.

    After a trigger DEEPTHINK acts for ``deepthink_steps`` steps (fewer if a hard budget runs
    out) and all the trigger memories are cleared, so the next escalation needs new evidence.

    Args:
        fail_limit: failed/invalid actions that trigger an escalation (default 2).
        fail_window: how many recent actions are counted for ``fail_limit`` (default 3).
        loop_window: steps within which a repeated (text, action) pair is a loop (default 8; 0
            disables loop detection).
        repeat_limit: identical consecutive actions that trigger an escalation (default 5).
        patience: steps without reward that trigger an escalation (default 15).
        deepthink_steps: DEEPTHINK steps per escalation (default 3).
    """

    features = None

    def __init__(
        self,
        *,
        fail_limit: int = 2,
        fail_window: int = 3,
        loop_window: int = 8,
        repeat_limit: int = 5,
        patience: int = 15,
        deepthink_steps: int = 3,
    ) -> None:
        for key, value, low in (("fail_limit", fail_limit, 1), ("fail_window", fail_window, 1),
                                ("loop_window", loop_window, 0), ("repeat_limit", repeat_limit, 0),
                                ("patience", patience, 0), ("deepthink_steps", deepthink_steps, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"heuristic: {key} must be an integer >= {low}, got {value!r}")
        if fail_limit > fail_window:
            raise ConfigError(f"heuristic: fail_limit ({fail_limit}) cannot exceed fail_window ({fail_window})")
        self.fail_limit = fail_limit
        self.fail_window = fail_window
        self.loop_window = loop_window
        self.repeat_limit = repeat_limit
        self.patience = patience
        self.deepthink_steps = deepthink_steps
        self.name = "heuristic"
        #: How often each trigger fired since the rule was made (for analysis).
        self.trigger_counts: Counter = Counter()
        self.reset()

    def reset(self) -> None:
        self._pending = 0
        self._text_before: str | None = None
        self._faults_seen = 0
        self._clear_memory()

    def _clear_memory(self) -> None:
        self._fails: deque[bool] = deque(maxlen=self.fail_window)
        self._pairs: deque[tuple[str, str]] = deque(maxlen=max(self.loop_window, 1))
        self._last_action: str | None = None
        self._repeats = 0
        self._dry_steps = 0

    def choose(self, obs: dict[str, np.ndarray], env: SwitchEnv) -> int:
        self._text_before = env.text_observation.text
        if self._pending > 0:
            self._pending -= 1
            return DEEPTHINK if _can_call(obs) else QUICK
        return QUICK

    def observe(self, info: dict[str, Any]) -> None:
        acc = info.get("accounting")
        faults = (acc.invalid_actions + acc.policy_errors) if acc is not None else self._faults_seen
        invalid = faults > self._faults_seen
        self._faults_seen = faults
        if self._pending > 0 or info.get("choice") == "deepthink":
            # DEEPTHINK's own steps are not evidence against QUICK.
            return
        text_obs = info.get("text_obs")
        text_after = getattr(text_obs, "text", None)
        action = str(info.get("executed_action"))
        unchanged = self._text_before is not None and text_after == self._text_before
        self._fails.append(bool(unchanged or invalid))
        reason = None
        if sum(self._fails) >= self.fail_limit:
            reason = "failed actions"
        if self.loop_window and self._text_before is not None:
            pair = (self._text_before, action)
            if reason is None and pair in self._pairs:
                reason = "loop"
            self._pairs.append(pair)
        self._repeats = self._repeats + 1 if action == self._last_action else 1
        self._last_action = action
        if reason is None and self.repeat_limit and self._repeats >= self.repeat_limit:
            reason = "repeated action"
        self._dry_steps = 0 if float(info.get("env_reward", 0.0)) > 0 else self._dry_steps + 1
        if reason is None and self.patience and self._dry_steps >= self.patience:
            reason = "no reward"
        if reason is not None:
            self.trigger_counts[reason] += 1
            self._pending = self.deepthink_steps
            self._clear_memory()


# ------------------------------------------------------------------------------------ thresholds
def calibrate_threshold(scores: Sequence[float], rate: float) -> tuple[float, float]:
    """The threshold ``t`` and tie probability ``q`` that escalate a fraction ``rate`` of ``scores``.

    A score escalates when it is above ``t``, and with probability ``q`` when it equals ``t``.
    Randomising the ties (as a Neyman-Pearson test does) lets a rule reach any rate even when
    the scores take few values (e.g. an LM that is either sure or unsure). ``inf`` scores (QUICK
    gave no answer) always escalate unless ``rate`` is 0.
    """
    rate = _check_rate(rate)
    s = np.sort(np.asarray(list(scores), dtype=float))[::-1]
    if rate is None or len(s) == 0:
        raise ValueError("calibrate_threshold needs a rate and at least one score")
    if rate <= 0.0:
        return math.inf, 0.0
    if rate >= 1.0:
        return -math.inf, 1.0
    k = rate * len(s)
    t = float(s[min(int(math.floor(k)), len(s) - 1)])
    above = int(np.sum(s > t))
    equal = int(np.sum(s == t))
    q = (k - above) / equal if equal else 0.0
    return t, float(min(max(q, 0.0), 1.0))


class ThresholdSwitch(OfflineRule):
    """Escalate when a per-step score exceeds a threshold (ties broken at random).

    Subclasses define :meth:`score` (higher = more reason to call DEEPTHINK). The tie coin is
    seeded by the run seed and the episode's env seed, like :class:`RandomSwitch`.

    Args:
        threshold: escalate when ``score > threshold``.
        tie_prob: probability of escalating when ``score == threshold``.
        seed: the run seed.
    """

    features = "quick"

    def __init__(self, *, threshold: float = 0.5, tie_prob: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(threshold, (int, float)) or math.isnan(threshold):
            raise ConfigError(f"threshold must be a number, got {threshold!r}")
        if not 0.0 <= tie_prob <= 1.0:
            raise ConfigError(f"tie_prob must be in [0, 1], got {tie_prob!r}")
        self.threshold = float(threshold)
        self.tie_prob = float(tie_prob)
        self.seed = int(seed)
        #: Set by :func:`calibrate_rule`: target rate, achieved rate on the calibration episodes.
        self.calibration: dict[str, Any] | None = None
        self._rng: np.random.Generator | None = None
        self._seen: Counter = Counter()
        self._record: list[float] | None = None

    def score(self, obs: dict[str, np.ndarray], env: SwitchEnv) -> float:
        raise NotImplementedError

    def reset(self) -> None:
        self._rng = None

    def choose(self, obs: dict[str, np.ndarray], env: SwitchEnv) -> int:
        if self._rng is None:
            self._rng = _episode_rng(self.seed, env, self._seen)
        coin = self._rng.random()  # drawn every step, so that draws do not depend on the scores
        if not _can_call(obs):
            return QUICK
        s = self.score(obs, env)
        if self._record is not None:
            self._record.append(s)
        if s > self.threshold or (s == self.threshold and coin < self.tie_prob):
            return DEEPTHINK
        return QUICK


def calibrate_rule(
    rule: ThresholdSwitch,
    env: SwitchEnv,
    seeds: Sequence[int],
    rate: float,
    *,
    max_rounds: int = 6,
    tolerance: float = 0.01,
    per_episode: bool = False,
    purpose: str = "calibration",
    progress: bool = False,
) -> ThresholdSwitch:
    """Set ``rule.threshold``/``rule.tie_prob`` so that it calls DEEPTHINK at ``rate`` on ``seeds``.

    ``rate`` is a call fraction (DEEPTHINK calls / steps where a call was allowed), or, with
    ``per_episode=True``, a number of DEEPTHINK calls per episode (any value >= 0; ``tolerance``
    is then relative to it), as a Lagrangian limit on expected calls is stated.

    The states a rule visits depend on its own calls (a call usually gets the agent out of the
    state that caused it), so the ``1 - rate`` quantile of the scores of QUICK-only episodes
    does not give the rate. Instead:

    1. a reference run plays the episodes without calling DEEPTHINK and keeps the scores of the
       states visited;
    2. a threshold is indexed by a level ``z`` in [0, 1]: :func:`calibrate_threshold` of the
       reference scores at rate ``z`` (so ``z`` moves the threshold monotonically, ties included);
    3. starting from ``z = rate``, each round plays the episodes with the threshold of ``z``,
       measures the call fraction (DEEPTHINK calls / steps where a call was allowed) and updates
       ``z`` by regula falsi on the bracket of measured levels (the measured rate grows with ``z``),
       until it is within ``tolerance`` of ``rate`` or ``max_rounds`` thresholds were measured.

    The measured threshold closest to the target is kept; ``rule.calibration`` records the
    target, the rate it achieved on these episodes and the rounds. Every episode (the reference
    run included) is metered into ``rule.offline_cost``.
    """
    if per_episode:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) < math.inf:
            raise ConfigError(f"calls per episode must be a finite number >= 0, got {rate!r}")
        rate = float(rate)
    else:
        rate = _check_rate(rate)
    if rate is None:
        raise ValueError("calibrate_rule needs a rate")
    if max_rounds < 1:
        raise ConfigError(f"max_rounds must be >= 1, got {max_rounds}")
    if not 0 <= tolerance < 1:
        raise ConfigError(f"tolerance must be in [0, 1), got {tolerance}")
    t0 = time.perf_counter()
    cost = OfflineCost(purpose=purpose)
    if per_episode:
        tolerance = tolerance * rate

    def play(threshold: float, tie_prob: float, label: str) -> tuple[list[float], float]:
        rule.threshold, rule.tie_prob = threshold, tie_prob
        rule._seen.clear()  # the same coins in every round (common random numbers)
        rule._record = []
        try:
            eps = offline_run(rule, env, seeds, cost, progress=progress, desc=f"{purpose}: {label}")
        finally:
            scores, rule._record = rule._record, None
        calls = sum(e.deepthink_calls for e in eps)
        if per_episode:
            return scores, calls / max(len(eps), 1)
        return scores, (calls / len(scores) if scores else 0.0)

    measured: list[tuple[float, float, float, float]] = []  # (z, achieved rate, threshold, tie_prob)
    reference: list[float] = []
    if 0.0 < rate and (per_episode or rate < 1.0):
        reference, _ = play(math.inf, 0.0, "reference")
    if not reference:  # rate 0 or 1, or no step allowed a call (e.g. a zero budget)
        threshold, tie = calibrate_threshold([0.0], min(rate, 1.0))
        measured.append((min(rate, 1.0), math.nan, threshold, tie))
    else:
        lo, r_lo, hi, r_hi = 0.0, 0.0, 1.0, math.nan
        # the level is a share of the reference run's states; a limit per episode starts at its share of them
        z = min(1.0, rate * len(seeds) / len(reference)) if per_episode else rate
        for round_ in range(1, max_rounds + 1):
            threshold, tie = calibrate_threshold(reference, z)
            _, achieved = play(threshold, tie, f"round {round_}")
            measured.append((z, achieved, threshold, tie))
            logger.info("%s round %d: level %.3f -> threshold %.4g (tie %.2f) gives rate %.3f (target %.3f)",
                        purpose, round_, z, threshold, tie, achieved, rate)
            if abs(achieved - rate) <= tolerance:
                break
            if achieved < rate:
                lo, r_lo = z, achieved
            else:
                hi, r_hi = z, achieved
            if math.isnan(r_hi):  # no level above the target measured yet: scale up
                nxt = min(1.0, z * rate / achieved) if achieved > 0 else min(1.0, 2 * z)
                if nxt <= z:
                    nxt = (z + 1.0) / 2
            elif r_hi > r_lo:
                nxt = lo + (rate - r_lo) * (hi - lo) / (r_hi - r_lo)
            else:
                nxt = (lo + hi) / 2
            # stay strictly inside the bracket so that every round brings new information
            margin = 0.05 * (hi - lo)
            nxt = min(max(nxt, lo + margin), hi - margin) if hi > lo else lo
            if abs(nxt - z) < 1e-6:
                break
            z = nxt
        if abs(measured[-1][1] - rate) > tolerance:
            logger.warning("%s: the closest rate reached in %d rounds is %.3f (target %.3f)", purpose,
                           len(measured), min(measured, key=lambda m: abs(m[1] - rate))[1], rate)
    z, achieved, rule.threshold, rule.tie_prob = min(
        measured, key=lambda m: abs(m[1] - rate) if not math.isnan(m[1]) else 0.0)
    rule._seen.clear()
    cost.wall_seconds = time.perf_counter() - t0
    if cost.episodes:
        rule.offline_cost.append(cost)
    rule.calibration = {
        ("target_calls_per_episode" if per_episode else "target_rate"): rate,
        ("achieved_calls_per_episode" if per_episode else "achieved_rate"): None if math.isnan(achieved) else achieved,
        "level": z,
        "threshold": rule.threshold,
        "tie_prob": rule.tie_prob,
        "rounds": len(measured),
        "episodes_per_round": len(seeds),
    }
    return rule


class UncertaintySwitch(ThresholdSwitch):
    """Escalate when QUICK is unsure: its distribution over the admissible actions is flat.

    Scores (in [0, 1], higher = flatter): ``"entropy"``: entropy / log(number of admissible
    actions); ``"margin"``: 1 - (top-1 - top-2 probability). A step where QUICK gave no valid
    answer scores ``inf`` (always escalates); a QUICK without a distribution scores 0.

    Args:
        measure: ``"entropy"`` or ``"margin"``.
        threshold, tie_prob, seed: see :class:`ThresholdSwitch` (default threshold 0.5).
    """

    MEASURES = ("entropy", "margin")

    def __init__(self, *, measure: str = "entropy", threshold: float = 0.5, tie_prob: float = 0.0,
                 seed: int = 0) -> None:
        super().__init__(threshold=threshold, tie_prob=tie_prob, seed=seed)
        if measure not in self.MEASURES:
            raise UnknownChoiceError("uncertainty measure", str(measure), self.MEASURES)
        self.measure = measure
        self.name = "uncertainty"
        self._warned = False

    def score(self, obs: dict[str, np.ndarray], env: SwitchEnv) -> float:
        decision = env.quick_decision
        if decision is None:
            return math.inf
        if decision.probs is None or len(decision.probs) < 2:
            if not self._warned:
                logger.warning("QUICK gives no distribution over actions: the uncertainty rule never escalates")
                self._warned = True
            return 0.0
        if self.measure == "entropy":
            return float(decision.entropy / math.log(len(decision.probs)))
        return float(1.0 - decision.margin)


# ------------------------------------------------------------------------------------ router
class LogisticRegression:
    """L2-regularised logistic regression fitted by Newton's method (IRLS), in numpy.

    Inputs are standardised with the training mean and standard deviation. With one class only
    in the labels the model predicts that class's (smoothed) frequency everywhere.

    Args:
        l2: the ridge penalty on the weights (not the bias), in units of training examples.
        max_iter: Newton iterations (it converges in about ten on well-posed data).
    """

    def __init__(self, *, l2: float = 1.0, max_iter: int = 50) -> None:
        if l2 < 0 or max_iter < 1:
            raise ValueError("l2 must be >= 0 and max_iter >= 1")
        self.l2 = float(l2)
        self.max_iter = int(max_iter)
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0

    def fit(self, x: np.ndarray, y: np.ndarray) -> LogisticRegression:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64).ravel()
        if x.ndim != 2 or len(x) != len(y) or len(y) == 0:
            raise ValueError(f"need a non-empty 2-d x and matching y, got {x.shape} and {y.shape}")
        self.mean_ = x.mean(axis=0)
        std = x.std(axis=0)
        self.scale_ = np.where(std > 1e-8, std, 1.0)
        z = np.hstack([np.ones((len(x), 1)), (x - self.mean_) / self.scale_])
        w = np.zeros(z.shape[1])
        pos = y.mean()
        if pos in (0.0, 1.0):
            # a single class: no boundary to learn; predict the smoothed frequency
            self.coef_ = np.zeros(x.shape[1])
            p = (y.sum() + 0.5) / (len(y) + 1.0)
            self.intercept_ = float(math.log(p / (1 - p)))
            return self
        w[0] = math.log(pos / (1 - pos))
        penalty = np.full(z.shape[1], self.l2)
        penalty[0] = 0.0
        for _ in range(self.max_iter):
            p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
            grad = z.T @ (p - y) + penalty * w
            hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-6)
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.max(np.abs(step)) < 1e-6:
                break
        self.intercept_ = float(w[0])
        self.coef_ = w[1:]
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """P(label = 1) for each row of ``x``."""
        if self.coef_ is None:
            raise RuntimeError("call fit() first")
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        logits = ((x - self.mean_) / self.scale_) @ self.coef_ + self.intercept_
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30)))


class RouterSwitch(ThresholdSwitch):
    """A step-level router (in the spirit of ComplexityNet): a classifier predicts from the
    switch's state features whether QUICK's action would be wrong, and the switch escalates when
    that probability exceeds the threshold (default 0.5: "more likely wrong than right").

    Train it with :meth:`fit_from_episodes`; the labels come from the expert (an **oracle**,
    for training labels only: at evaluation time the router sees the features alone).

    Args:
        model: a fitted :class:`LogisticRegression` (or ``None`` until trained).
        threshold, tie_prob, seed: see :class:`ThresholdSwitch`.
    """

    def __init__(self, *, model: LogisticRegression | None = None, threshold: float = 0.5, tie_prob: float = 0.0,
                 seed: int = 0) -> None:
        super().__init__(threshold=threshold, tie_prob=tie_prob, seed=seed)
        self.model = model
        self.name = "router"
        #: Training statistics: states logged, fraction labelled "QUICK wrong", training accuracy.
        self.train_stats: dict[str, Any] = {}

    def score(self, obs: dict[str, np.ndarray], env: SwitchEnv) -> float:
        if self.model is None:
            raise RuntimeError("the router is not trained; call fit_from_episodes() first")
        return float(self.model.predict_proba(obs["features"])[0])

    def fit_from_episodes(
        self,
        env: SwitchEnv,
        seeds: Sequence[int],
        *,
        behaviour_rate: float = 0.5,
        l2: float = 1.0,
        progress: bool = False,
    ) -> RouterSwitch:
        """Log the states of ``seeds`` episodes and fit the classifier.

        The episodes are played by random switching at ``behaviour_rate`` (so that the logged
        states include both QUICK's and DEEPTHINK's trajectories), in ``env``, which must consult
        QUICK at every step (features ``"quick"``). A state is labelled 1 when QUICK's action
        differs from the expert's, 0 when it agrees; states without an expert label are dropped.
        """
        if not env.consults_quick_every_step:
            raise ConfigError("the router's logging env must consult QUICK every step (features 'quick')")
        t0 = time.perf_counter()
        xs: list[np.ndarray] = []
        ys: list[int] = []
        behaviour = _LoggingRule(RandomSwitch(rate=behaviour_rate, seed=self.seed), xs)

        def label(obs_features: np.ndarray, info: dict[str, Any]) -> None:
            q, o = info.get("quick_action"), info.get("oracle_action")
            if q is not None and o is not None:
                ys.append(int(q != o))
            else:
                xs.pop()

        behaviour.on_step = label
        cost = OfflineCost(purpose="router training (logging)")
        offline_run(behaviour, env, seeds, cost, progress=progress, desc="router: logging states")
        if not ys:
            raise ConfigError("the router needs an env with an expert (oracle) to label its training states")
        x, y = np.stack(xs), np.asarray(ys)
        self.model = LogisticRegression(l2=l2).fit(x, y)
        acc = float(np.mean((self.model.predict_proba(x) > 0.5) == y))
        self.train_stats = {"states": int(len(y)), "quick_wrong_frac": float(y.mean()), "train_accuracy": acc}
        cost.wall_seconds = time.perf_counter() - t0
        self.offline_cost.append(cost)
        logger.info("router trained on %d states (QUICK wrong on %.1f%%), training accuracy %.3f", len(y),
                    100 * y.mean(), acc)
        return self


class _LoggingRule(SwitchRule):
    """Wraps a behaviour rule and logs the features of every state it decides on."""

    def __init__(self, inner: SwitchRule, sink: list[np.ndarray]) -> None:
        self.inner, self.sink = inner, sink
        self.name = f"log:{inner.name}"
        self.features = "quick"
        self.on_step: Callable[[np.ndarray, dict[str, Any]], None] | None = None

    def reset(self) -> None:
        self.inner.reset()

    def choose(self, obs: dict[str, np.ndarray], env: SwitchEnv) -> int:
        self.sink.append(np.array(obs["features"], dtype=np.float32))
        return self.inner.choose(obs, env)

    def observe(self, info: dict[str, Any]) -> None:
        self.inner.observe(info)
        if self.on_step is not None:
            self.on_step(self.sink[-1], info)


# ------------------------------------------------------------------------------------ task router
@dataclass
class Factorization:
    """A fitted ``score[m, t] ~ mu + b[m] + c[t] + u[m] . v[t]`` (see :func:`factorize_scores`)."""

    mu: float
    model_bias: np.ndarray
    task_bias: np.ndarray
    model_factors: np.ndarray
    task_factors: np.ndarray

    def predict(self) -> np.ndarray:
        """The completed ``models x tasks`` matrix."""
        return (self.mu + self.model_bias[:, None] + self.task_bias[None, :]
                + self.model_factors @ self.task_factors.T)

    def predict_unseen_task(self) -> np.ndarray:
        """Per-model scores for a task that was never observed (task effects at their prior, 0)."""
        return self.mu + self.model_bias


def factorize_scores(
    scores: np.ndarray,
    weights: np.ndarray,
    *,
    rank: int = 1,
    l2: float = 1.0,
    iterations: int = 100,
    seed: int = 0,
) -> Factorization:
    """Weighted matrix factorisation with biases, fitted by alternating ridge regressions.

    Minimises ``sum_mt W[m,t] (S[m,t] - mu - b[m] - c[t] - u[m].v[t])^2 + l2 (|b|^2 + |c|^2 +
    |u|^2 + |v|^2)``, as collaborative performance prediction does for a model x task score
    matrix. ``W`` holds the number of episodes behind each entry (0 = missing); ``l2`` acts as
    that many pseudo-episodes pulling an entry toward the model and global means, so sparse
    entries are shrunk and missing ones are predicted from the rest of the matrix.
    """
    s = np.asarray(scores, dtype=float)
    w = np.asarray(weights, dtype=float)
    if s.ndim != 2 or s.shape != w.shape:
        raise ValueError(f"scores and weights must be matrices of the same shape, got {s.shape} and {w.shape}")
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be >= 0 and not all zero")
    if rank < 0:
        raise ValueError(f"rank must be >= 0, got {rank}")
    s = np.where(w > 0, s, 0.0)
    n_models, n_tasks = s.shape
    mu = float((w * s).sum() / w.sum())
    rng = np.random.default_rng(seed)
    b, c = np.zeros(n_models), np.zeros(n_tasks)
    u = rng.normal(0, 0.1, (n_models, rank))
    v = rng.normal(0, 0.1, (n_tasks, rank))

    def ridge(design: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
        a = (design * weight[:, None]).T @ design + l2 * np.eye(design.shape[1]) + 1e-9 * np.eye(design.shape[1])
        return np.linalg.solve(a, (design * weight[:, None]).T @ target)

    for _ in range(iterations):
        design_t = np.hstack([np.ones((n_tasks, 1)), v])
        for m in range(n_models):
            sol = ridge(design_t, s[m] - mu - c, w[m])
            b[m], u[m] = sol[0], sol[1:]
        design_m = np.hstack([np.ones((n_models, 1)), u])
        for t in range(n_tasks):
            sol = ridge(design_m, s[:, t] - mu - b, w[:, t])
            c[t], v[t] = sol[0], sol[1:]
    return Factorization(mu, b, c, u, v)


class TaskRouter(OfflineRule):
    """Pick QUICK or DEEPTHINK once per episode from the predicted success of each model on the
    episode's task (collaborative performance prediction / RouteLLM style).

    :meth:`fit_from_episodes` plays training episodes with always-QUICK and always-DEEPTHINK,
    fills the 2 x tasks success matrix and factorises it (:func:`factorize_scores`). Each task
    then gets a probability ``p[task]`` of giving the whole episode to DEEPTHINK:

    * without a rate: ``1`` where DEEPTHINK's predicted success exceeds QUICK's by more than
      ``min_gain``, else ``0``;
    * with a target ``rate``: tasks are given to DEEPTHINK in order of predicted gain until the
      expected call fraction (from each task's frequency and each model's mean episode length
      in training) reaches ``rate``, the last task with a fractional probability.

    A task never seen in training uses the factorisation's unseen-task prediction (no rate) or
    the overall share of episodes given to DEEPTHINK (with a rate).

    Args:
        min_gain: the success gain that justifies DEEPTHINK when no rate is given (default 0.1).
        rate: target DEEPTHINK call fraction, or ``None``.
        rank: rank of the factorisation (default 1).
        l2: ridge penalty (pseudo-episodes) of the factorisation (default 1).
        seed: the run seed (seeds the per-episode draw and the factorisation's initialisation).
    """

    features = None
    MODELS = ("quick", "deepthink")

    def __init__(self, *, min_gain: float = 0.1, rate: float | None = None, rank: int = 1, l2: float = 1.0,
                 seed: int = 0) -> None:
        super().__init__()
        if not isinstance(min_gain, (int, float)) or not -1.0 <= min_gain <= 1.0:
            raise ConfigError(f"task-router: min_gain must be in [-1, 1], got {min_gain!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
            raise ConfigError(f"task-router: rank must be a non-negative integer, got {rank!r}")
        if not isinstance(l2, (int, float)) or l2 < 0:
            raise ConfigError(f"task-router: l2 must be >= 0, got {l2!r}")
        self.min_gain = float(min_gain)
        self.rate = _check_rate(rate)
        self.rank, self.l2, self.seed = rank, float(l2), int(seed)
        self.name = "task-router"
        self.tasks: list[str] = []
        self.predicted: np.ndarray | None = None
        self.deepthink_prob: dict[str, float] = {}
        self.unseen_prob = 0.0
        #: The fitted matrix for reports: tasks, episodes and success per model, predictions.
        self.matrix: dict[str, Any] | None = None
        self._rng: np.random.Generator | None = None
        self._seen: Counter = Counter()
        self._use_deepthink = False

    # --- fitting
    def fit(self, records: Sequence[tuple[str, str, bool, int]]) -> TaskRouter:
        """Fit from ``(model, task, success, steps)`` records, ``model`` in :attr:`MODELS`."""
        if not records:
            raise ValueError("the task router needs at least one training episode")
        tasks = sorted({r[1] for r in records})
        index = {t: i for i, t in enumerate(tasks)}
        n = np.zeros((2, len(tasks)))
        wins = np.zeros((2, len(tasks)))
        steps = np.zeros((2, len(tasks)))
        for model, task, success, n_steps in records:
            if model not in self.MODELS:
                raise UnknownChoiceError("model", model, self.MODELS)
            m = self.MODELS.index(model)
            n[m, index[task]] += 1
            wins[m, index[task]] += float(success)
            steps[m, index[task]] += n_steps
        rates = np.divide(wins, n, out=np.zeros_like(wins), where=n > 0)
        fact = factorize_scores(rates, n, rank=self.rank, l2=self.l2, seed=self.seed)
        self.tasks = tasks
        self.predicted = fact.predict()
        gain = self.predicted[1] - self.predicted[0]
        freq = n.sum(axis=0) / n.sum()
        # mean episode length per model and task; a missing entry borrows the model's mean
        model_mean = steps.sum(axis=1) / np.maximum(n.sum(axis=1), 1)
        length = np.where(n > 0, steps / np.maximum(n, 1), model_mean[:, None])
        length = np.maximum(length, 1.0)
        if self.rate is None:
            probs = (gain > self.min_gain).astype(float)
            unseen = fact.predict_unseen_task()
            self.unseen_prob = float(unseen[1] - unseen[0] > self.min_gain)
        else:
            probs = self._allocate(gain, freq, length, self.rate)
            self.unseen_prob = float((freq * probs).sum())
        self.deepthink_prob = {t: float(p) for t, p in zip(tasks, probs)}
        self.matrix = {"tasks": tasks, "episodes": n.tolist(), "success": rates.tolist(),
                       "predicted": self.predicted.tolist(), "deepthink_prob": self.deepthink_prob}
        logger.info("task router: %s", {t: round(p, 3) for t, p in self.deepthink_prob.items()})
        return self

    @staticmethod
    def _allocate(gain: np.ndarray, freq: np.ndarray, length: np.ndarray, rate: float) -> np.ndarray:
        """Per-task DEEPTHINK probabilities whose expected call fraction is ``rate``."""
        probs = np.zeros(len(gain))

        def frac(p: np.ndarray) -> float:
            calls = (freq * p * length[1]).sum()
            return float(calls / (freq * (p * length[1] + (1 - p) * length[0])).sum())

        for t in np.argsort(-gain, kind="stable"):
            probs[t] = 1.0
            if frac(probs) >= rate:
                lo, hi = 0.0, 1.0
                for _ in range(50):  # the fraction grows monotonically with probs[t]
                    probs[t] = (lo + hi) / 2
                    lo, hi = (probs[t], hi) if frac(probs) < rate else (lo, probs[t])
                probs[t] = (lo + hi) / 2
                break
        return probs

    def fit_from_episodes(self, quick: TextPolicy, deepthink: TextPolicy, env_id: str, seeds: Sequence[int], *,
                          budget: int | None = None, env_kwargs: dict[str, Any] | None = None,
                          progress: bool = False) -> TaskRouter:
        """Play ``seeds`` with always-QUICK and always-DEEPTHINK, then :meth:`fit`."""
        from londi.rules import AlwaysDeepthink, AlwaysQuick

        t0 = time.perf_counter()
        cost = OfflineCost(purpose="task-router training")
        records: list[tuple[str, str, bool, int]] = []
        for model, rule in zip(self.MODELS, (AlwaysQuick(), AlwaysDeepthink())):
            env = build_switch_env(env_id, quick, deepthink, features=None, budget=budget, env_kwargs=env_kwargs)
            try:
                def record(i: int, stats: EpisodeStats, info: dict[str, Any], model: str = model,
                           env: SwitchEnv = env) -> None:
                    records.append((model, episode_task(env), stats.success, stats.steps))

                offline_run(rule, env, seeds, cost, progress=progress, desc=f"task-router: {model}",
                            on_episode=record)
            finally:
                env.close()
        self.fit(records)
        cost.wall_seconds = time.perf_counter() - t0
        self.offline_cost.append(cost)
        return self

    # --- acting
    def reset(self) -> None:
        self._rng = None

    def choose(self, obs: dict[str, np.ndarray], env: SwitchEnv) -> int:
        if self._rng is None:
            if self.predicted is None:
                raise RuntimeError("the task router is not fitted; call fit() or fit_from_episodes() first")
            self._rng = _episode_rng(self.seed, env, self._seen)
            task = episode_task(env)
            p = self.deepthink_prob.get(task, self.unseen_prob)
            self._use_deepthink = bool(self._rng.random() < p)
        return DEEPTHINK if self._use_deepthink and _can_call(obs) else QUICK


# ------------------------------------------------------------------------------------ oracle
class HindsightOracle(SwitchRule):
    """The hindsight **oracle**: call DEEPTHINK exactly where QUICK's action differs from the
    expert's (or QUICK gave no valid action). It reads the expert's label
    (``TextObservation.oracle_action``), which no deployable switch can: it is a lower bound on
    the calls needed for the expert-level result, not a method. Where the expert gives no label
    it keeps QUICK."""

    features = "quick"
    is_oracle = True

    def __init__(self) -> None:
        self.name = "oracle"
        self._warned = False

    def choose(self, obs: dict[str, np.ndarray], env: SwitchEnv) -> int:
        expert = env.text_observation.oracle_action
        if expert is None:
            if not self._warned and env.accounting.steps == 0:
                logger.warning("the hindsight oracle needs an env with an expert; this state has no expert label")
                self._warned = True
            return QUICK
        decision = env.quick_decision
        wrong = decision is None or decision.action != expert
        return DEEPTHINK if wrong and _can_call(obs) else QUICK


# ------------------------------------------------------------------------------------ factory
#: Rule-specific options accepted in ``params`` by :func:`make_baseline`, per baseline.
PARAMS: dict[str, tuple[str, ...]] = {
    "random": (),
    "periodic": (),
    "first-b": (),
    "heuristic": ("fail_limit", "fail_window", "loop_window", "repeat_limit", "patience", "deepthink_steps"),
    "uncertainty": ("measure", "max_rounds", "tolerance"),
    "router": ("train_episodes", "behaviour_rate", "l2", "max_rounds", "tolerance"),
    "task-router": ("train_episodes", "min_gain", "rank", "l2"),
    "oracle": (),
}


def make_baseline(
    name: str,
    *,
    args: argparse.Namespace | None = None,
    quick: TextPolicy,
    deepthink: TextPolicy,
    env_id: str | None = None,
    seed: int | None = None,
    rate: float | None = None,
    budget: int | None = None,
    threshold: float | None = None,
    calibration_episodes: int | None = None,
    params: Mapping[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool | None = None,
) -> Method:
    """Build (calibrate or train, where needed) the baseline ``name`` as a :class:`Method`.

    Every option is read from the keyword argument if given, else from ``args`` (the
    ``londi eval`` namespace: ``env``, ``seed``, ``rate``, ``budget``, and optionally
    ``threshold``, ``calibration_episodes``, ``baseline_params``, ``no_progress``), else its
    default. Options a baseline does not use are ignored, so one ``--rate`` can serve several
    methods.

    Args:
        name: one of :data:`BASELINES`.
        quick, deepthink: the LM pair.
        env_id: the env that calibration/training episodes are played in (default: the
            default env); it must be the env of the evaluation.
        seed: the run seed (seeds the rule's randomness and picks the offline episodes).
        rate: target DEEPTHINK call rate: ``random``'s probability (default
            :data:`DEFAULT_RATE`); the calibration target of ``uncertainty`` and ``router``;
            ``task-router``'s target. ``None``: fixed thresholds.
        budget: hard cap on DEEPTHINK calls per episode (enforced by the env for every method;
            ``first-b`` calls DEEPTHINK on the first ``budget`` steps and requires it).
        threshold: a fixed threshold for ``uncertainty`` (normalised flatness in [0, 1]) or
            ``router`` (probability that QUICK is wrong); it disables calibration.
        calibration_episodes: episodes to calibrate a threshold to ``rate`` (default
            :data:`DEFAULT_CALIBRATION_EPISODES`).
        params: rule-specific options, see :data:`PARAMS` and each rule's docstring
            (``train_episodes`` defaults to :data:`DEFAULT_TRAIN_EPISODES`).
        env_kwargs: extra keyword arguments of the env.
        progress: show progress bars during calibration/training.

    Raises:
        UnknownChoiceError: an unknown baseline name or ``params`` key.
        ConfigError: an out-of-range option, or ``first-b`` without a budget.
    """
    if name not in BASELINES:
        raise UnknownChoiceError("baseline", str(name), BASELINES)

    def opt(value: Any, attr: str, default: Any = None) -> Any:
        if value is not None:
            return value
        got = getattr(args, attr, None) if args is not None else None
        return default if got is None else got

    env_id = opt(env_id, "env", DEFAULT_ENV_ID)
    seed = int(opt(seed, "seed", 0))
    rate = _check_rate(opt(rate, "rate"))
    budget = opt(budget, "budget")
    threshold = opt(threshold, "threshold")
    n_cal = int(opt(calibration_episodes, "calibration_episodes", DEFAULT_CALIBRATION_EPISODES))
    params = dict(opt(params, "baseline_params", {}) or {})
    if progress is None:
        progress = args is not None and not getattr(args, "no_progress", True)
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
        raise ConfigError(f"budget must be a non-negative integer, got {budget!r}")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not math.isfinite(threshold)):
        raise ConfigError(f"threshold must be a finite number, got {threshold!r}")
    if n_cal <= 0:
        raise ConfigError(f"calibration_episodes must be positive, got {n_cal}")
    for key in params:
        if key not in PARAMS[name]:
            valid = PARAMS[name] or ("(none)",)
            raise UnknownChoiceError(f"option of baseline {name!r}", key, valid)
    if env_id not in env_ids():
        raise UnknownChoiceError("env id", env_id, env_ids())
    n_train = params.pop("train_episodes", DEFAULT_TRAIN_EPISODES)
    if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train <= 0:
        raise ConfigError(f"train_episodes must be a positive integer, got {n_train!r}")
    calibration = {k: params.pop(k) for k in ("max_rounds", "tolerance") if k in params}

    offline_quick, offline_deepthink = offline_pair(quick, deepthink)

    def switch_env(features: str | None) -> SwitchEnv:
        return build_switch_env(env_id, offline_quick, offline_deepthink, features=features, budget=budget,
                                env_kwargs=env_kwargs)

    def calibrate(rule: ThresholdSwitch) -> None:
        if threshold is not None:
            rule.threshold, rule.tie_prob = float(threshold), 0.0
            return
        if rate is None:
            return
        env = switch_env(rule.features)
        try:
            calibrate_rule(rule, env, training_seeds(seed, n_cal, f"{name}-calibration"), rate,
                           purpose=f"{name} calibration", progress=progress, **calibration)
        finally:
            env.close()
        logger.info("%s calibrated to rate %.3f: threshold %.4g, tie probability %.3f", name, rate,
                    rule.threshold, rule.tie_prob)

    rule: SwitchRule
    if name == "random":
        rule = RandomSwitch(rate=DEFAULT_RATE if rate is None else rate, seed=seed)
    elif name == "periodic":
        rule = PeriodicSwitch(rate=DEFAULT_RATE if rate is None else rate)
    elif name == "first-b":
        if budget is None:
            raise ConfigError("first-b needs a budget B (--budget B): DEEPTHINK acts on the first B steps")
        rule = FirstBSwitch(budget=budget)
    elif name == "heuristic":
        rule = HeuristicSwitch(**params)
    elif name == "uncertainty":
        rule = UncertaintySwitch(seed=seed, **params)
        calibrate(rule)
    elif name == "router":
        behaviour_rate = _check_rate(params.pop("behaviour_rate", 0.5))
        rule = RouterSwitch(seed=seed)
        env = switch_env(rule.features)
        try:
            rule.fit_from_episodes(env, training_seeds(seed, n_train, "router-train"), behaviour_rate=behaviour_rate,
                                   progress=progress, **params)
        finally:
            env.close()
        calibrate(rule)
    elif name == "task-router":
        rule = TaskRouter(rate=rate, seed=seed, **params)
        rule.fit_from_episodes(offline_quick, offline_deepthink, env_id,
                               training_seeds(seed, n_train, "task-router-train"),
                               budget=budget, env_kwargs=env_kwargs, progress=progress)
    else:
        rule = HindsightOracle()
    for c in getattr(rule, "offline_cost", []):
        logger.info("%s: %s used %d episodes, %d steps, %.2f device-s, %.1f s wall (not counted in evaluation)",
                    name, c.purpose, c.episodes, c.steps, c.device_seconds["total"], c.wall_seconds)
    return Method(rule, quick, deepthink, budget)


def rule_offline_info(rule: SwitchRule) -> dict[str, Any]:
    """What a rule learned and what its offline work cost, for ``results.json``: ``offline_cost``,
    ``calibration``, ``router_training``, ``task_matrix`` and ``heuristic_triggers`` (counted
    since the rule was made: call it after the evaluation), where the rule has them."""
    out: dict[str, Any] = {}
    if isinstance(rule, OfflineRule) and rule.offline_cost:
        out["offline_cost"] = rule.offline_summary()
    if getattr(rule, "calibration", None):
        out["calibration"] = dict(rule.calibration)
    if getattr(rule, "train_stats", None):
        out["router_training"] = dict(rule.train_stats)
    if getattr(rule, "matrix", None):
        out["task_matrix"] = dict(rule.matrix)
    if getattr(rule, "trigger_counts", None):
        out["heuristic_triggers"] = dict(rule.trigger_counts)
    return out


__all__ = [
    "BASELINES",
    "DEFAULT_RATE",
    "PARAMS",
    "FirstBSwitch",
    "HeuristicSwitch",
    "HindsightOracle",
    "LogisticRegression",
    "OfflineCost",
    "RandomSwitch",
    "RouterSwitch",
    "TaskRouter",
    "ThresholdSwitch",
    "UncertaintySwitch",
    "calibrate_rule",
    "calibrate_threshold",
    "episode_task",
    "factorize_scores",
    "make_baseline",
    "offline_pair",
    "offline_run",
    "rule_offline_info",
    "training_seeds",
]
