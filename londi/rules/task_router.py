"""``task-router``: one model per episode, chosen from a model x task success matrix.

In the spirit of collaborative performance prediction (CPP) and RouteLLM, the router does not
look at steps at all: :class:`TaskRouter` plays training episodes with always-QUICK and
always-DEEPTHINK, fills the 2 x tasks success matrix, completes it by weighted matrix
factorisation (:func:`factorize_scores`, so sparse or missing entries borrow from the rest of
the matrix) and gives an episode to DEEPTHINK where the predicted gain justifies it. Tasks are
an episode's ``StepContext.task`` (BabyAI's level: the mixed env has several, a single-level env
gives a one-column matrix).
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from londi.agents.base import TextPolicy
from londi.core.errors import ConfigError, UnknownChoiceError
from londi.rules.base import AlwaysDeepthink, AlwaysQuick, SwitchRule
from londi.rules.offline import OfflineCost, OfflineRule, can_call, check_rate, episode_rng, offline_run
from londi.switch.accounting import DEEPTHINK, QUICK
from londi.switch.context import StepContext
from londi.switch.rollout import EpisodeStats, build_switch_env

logger = logging.getLogger(__name__)


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
        self.rate = check_rate(rate)
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

        t0 = time.perf_counter()
        cost = OfflineCost(purpose="task-router training")
        records: list[tuple[str, str, bool, int]] = []
        for model, inner in zip(self.MODELS, (AlwaysQuick(), AlwaysDeepthink())):
            rule = _TaskRecorder(inner)
            env = build_switch_env(env_id, quick, deepthink, features=None, budget=budget, env_kwargs=env_kwargs)
            try:
                def record(i: int, stats: EpisodeStats, info: dict[str, Any], model: str = model,
                           rule: _TaskRecorder = rule) -> None:
                    records.append((model, rule.task, stats.success, stats.steps))

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

    def choose(self, obs: dict[str, np.ndarray], ctx: StepContext) -> int:
        if self._rng is None:
            if self.predicted is None:
                raise RuntimeError("the task router is not fitted; call fit() or fit_from_episodes() first")
            self._rng = episode_rng(self.seed, ctx, self._seen)
            p = self.deepthink_prob.get(ctx.task, self.unseen_prob)
            self._use_deepthink = bool(self._rng.random() < p)
        return DEEPTHINK if self._use_deepthink and can_call(obs) else QUICK



class _TaskRecorder(SwitchRule):
    """Plays ``inner`` and keeps the task of the episode it plays (``StepContext.task``), so that
    training records name the task the rule saw."""

    def __init__(self, inner: SwitchRule) -> None:
        self.inner = inner
        self.name = inner.name
        self.features = inner.features
        self.task = "default"

    def reset(self) -> None:
        self.inner.reset()

    def choose(self, obs: dict[str, np.ndarray], ctx: StepContext) -> int:
        self.task = ctx.task
        return self.inner.choose(obs, ctx)

    def observe(self, info: dict[str, Any]) -> None:
        self.inner.observe(info)


__all__ = ["Factorization", "TaskRouter", "factorize_scores"]
