"""``router``: a supervised step-level router in the spirit of ComplexityNet.

A classifier (:class:`LogisticRegression` on the switch's ``quick`` state features) predicts
whether QUICK's action would be wrong, and :class:`RouterSwitch` escalates when that probability
exceeds a threshold, fixed or calibrated to a call rate like any
:class:`~londi.rules.threshold.ThresholdSwitch`. Its training labels come from the expert (an
**oracle**, for the labels only): states logged by random switching are labelled by whether
QUICK's action differs from the expert's. At evaluation time the router sees the features alone.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from londi.core.errors import ConfigError
from londi.rules.base import SwitchRule
from londi.rules.offline import OfflineCost, offline_run
from londi.rules.simple import RandomSwitch
from londi.rules.threshold import ThresholdSwitch
from londi.switch.context import StepContext
from londi.switch.env import SwitchEnv

logger = logging.getLogger(__name__)


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

    def score(self, obs: dict[str, np.ndarray], ctx: StepContext) -> float:
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

    def choose(self, obs: dict[str, np.ndarray], ctx: StepContext) -> int:
        self.sink.append(np.array(obs["features"], dtype=np.float32))
        return self.inner.choose(obs, ctx)

    def observe(self, info: dict[str, Any]) -> None:
        self.inner.observe(info)
        if self.on_step is not None:
            self.on_step(self.sink[-1], info)


__all__ = ["LogisticRegression", "RouterSwitch"]
