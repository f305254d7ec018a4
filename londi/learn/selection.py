"""Keeping the best switch seen during training, judged on selection episodes.

A greedy switch trained with DQN is fragile: its value gaps between calling DEEPTHINK and not
are close to the estimates' noise, so the last weights of a run may sit near a corner (calling
everywhere or nowhere) while an earlier set of weights was better (docs/benchmarks.md, "The
learner"). Like stable-baselines3's ``EvalCallback`` with ``best_model_save_path``,
:class:`BestSwitchCallback` plays the greedy switch every ``every`` training steps on a fixed
set of *selection* episodes and keeps the weights with the best objective::

    J = mean over the episodes of (env return - w * DEEPTHINK calls),   w = c (the trained cost)

the quantity the switch is trained to maximise, measured without exploration. For LONDI-B the
selection env has the same hard cap, so J never counts a call the cap forbids.

Selection episodes use env seeds from :func:`~londi.core.seeds.training_seeds` (below the
held-out block, so the held-out evaluation stays untouched), the same seeds at every
evaluation (common random numbers: checkpoints are compared on the same games, and a seeded
episode reseeds the LMs' samplers). They are played by copies of the LM pair, so they do not
disturb the training episodes' LM draws, and every call is metered into the run's
``selection.json`` (``offline_cost``), like the baselines' calibration episodes. No call cache:
it replays a sampling model's first draw whenever a state repeats, which turns a loop that
sampling would leave into one it never leaves, and so scores the switch on other games than
the ones it will play.

It is on by default (:attr:`~londi.learn.train.TrainConfig.select_every` 2000 steps, 120 episodes)
for runs with a per-call cost or a hard budget: on the first pair it lifted the mean of three
training seeds and cut their calls on both the validation and the benchmark episodes
(docs/benchmarks.md, "Keeping the best weights").

Files in the run folder: ``best_model.zip`` (the best weights so far), ``last_model.zip`` (the
weights at the end of training) and ``selection.json`` (every evaluation, the best step and
the metered cost). ``model.zip``, what :func:`~londi.learn.train.load_switch` reads, is the best one.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from londi.core.io import atomic_write_json, read_json
from londi.learn.callbacks import MODEL_FILE, reached
from londi.rules import LearnedSwitch
from londi.rules.offline import OfflineCost, offline_run
from londi.switch.rollout import build_switch_env

logger = logging.getLogger(__name__)

SELECTION_FILE = "selection.json"
BEST_MODEL_FILE = "best_model.zip"
LAST_MODEL_FILE = "last_model.zip"
#: Purpose string that draws the selection episodes' env seeds (see ``training_seeds``).
SELECTION_PURPOSE = "switch-selection"


def selection_objective(episode_returns: list[float], deepthink_calls: list[int], weight: float) -> float:
    """Mean of ``return - weight * calls`` over the episodes: the switch's own objective."""
    if len(episode_returns) != len(deepthink_calls) or not episode_returns:
        raise ValueError("selection_objective needs one return and one call count per episode, at least one")
    return float(np.mean(np.asarray(episode_returns, float) - weight * np.asarray(deepthink_calls, float)))


def _copy_policy(policy: Any) -> Any:
    """A copy of ``policy`` whose sampling does not share state with the training env's."""
    try:
        return copy.deepcopy(policy)
    except (TypeError, AttributeError, RuntimeError, copy.Error) as exc:  # e.g. a client holding a socket
        logger.warning("cannot copy %r for the selection episodes (%s); they share its sampler with "
                       "training, so the run stays seeded but differs from one without selection", policy, exc)
        return policy


class BestSwitchCallback(BaseCallback):
    """Every ``every`` steps (and at the end), evaluate the greedy switch; keep the best weights.

    Args:
        run_dir: the run folder (``best_model.zip`` and ``selection.json`` go there).
        env_id, features, budget, weight: the switch env of the run and the objective's call
            weight ``w`` (the trained per-call cost).
        quick, deepthink: the run's LM pair (copied, so that training's draws are untouched).
        seeds: env seeds of the selection episodes (the same at every evaluation).
        every: env steps between evaluations (> 0).
        progress: show a progress bar over each evaluation's episodes.
    """

    def __init__(
        self,
        *,
        run_dir: Path,
        env_id: str,
        features: str,
        budget: int | None,
        weight: float,
        quick: Any,
        deepthink: Any,
        seeds: list[int],
        every: int,
        progress: bool = False,
    ) -> None:
        super().__init__()
        if every <= 0:
            raise ValueError(f"every must be positive, got {every}")
        if not seeds:
            raise ValueError("BestSwitchCallback needs at least one selection episode")
        self.run_dir, self.env_id, self.features, self.budget = Path(run_dir), env_id, features, budget
        self.weight, self.seeds, self.every = float(weight), [int(s) for s in seeds], int(every)
        self._pair = (quick, deepthink)
        self.progress = bool(progress)
        self._env: Any = None
        self._rule: Any = None
        self._cost: Any = None
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self._saved_cost: dict[str, Any] | None = None
        self._load_state()

    # ------------------------------------------------------------------ state
    def _load_state(self) -> None:
        path = self.run_dir / SELECTION_FILE
        if not path.is_file() or not (self.run_dir / BEST_MODEL_FILE).is_file():
            return
        saved = read_json(path)
        self.history = list(saved.get("evaluations", []))
        self.best = saved.get("best")
        self._saved_cost = saved.get("offline_cost")

    def _write_state(self) -> None:
        cost = self._cost.to_dict() if self._cost is not None else self._saved_cost
        atomic_write_json(self.run_dir / SELECTION_FILE, {
            "objective": "mean(env return - weight * DEEPTHINK calls), greedy switch",
            "weight": self.weight,
            "episodes": len(self.seeds),
            "env_seeds": self.seeds,
            "every": self.every,
            "evaluations": self.history,
            "best": self.best,
            "offline_cost": cost,
        })

    # ------------------------------------------------------------------ evaluation
    def _setup(self) -> None:

        quick, deepthink = (_copy_policy(p) for p in self._pair)
        self._env = build_switch_env(self.env_id, quick, deepthink, features=self.features,
                                     call_cost=self.weight, budget=self.budget)
        self._rule = LearnedSwitch(self.model, features=self.features, name="selection")
        # a resumed run keeps counting from what the earlier part spent
        saved = self._saved_cost
        self._cost = OfflineCost.from_dict(saved) if saved else OfflineCost(purpose="switch selection")

    def evaluate(self) -> dict[str, Any]:
        """Play the selection episodes with the current weights; record them, keep them if best."""

        if self._env is None:
            self._setup()
        step = int(self.model.num_timesteps)
        if any(h["step"] == step for h in self.history):  # e.g. the end of training on an eval step
            return next(h for h in self.history if h["step"] == step)
        t0 = time.perf_counter()
        eps = offline_run(self._rule, self._env, self.seeds, self._cost, progress=self.progress,
                          desc=f"select switch (step {step})")
        self._cost.wall_seconds += time.perf_counter() - t0
        steps = sum(e.steps for e in eps)
        calls = [e.deepthink_calls for e in eps]
        entry = {
            "step": step,
            "objective": selection_objective([e.episode_return for e in eps], calls, self.weight),
            "success": float(np.mean([e.success for e in eps])),
            "deepthink_call_frac": float(sum(calls) / steps) if steps else 0.0,
            "deepthink_calls_per_episode": float(np.mean(calls)),
        }
        self.history.append(entry)
        for key in ("objective", "success", "deepthink_call_frac"):
            self.logger.record(f"eval/{key}", entry[key])
        if self.best is None or entry["objective"] > self.best["objective"]:
            self.best = dict(entry)
            tmp = self.run_dir / f".{BEST_MODEL_FILE}.tmp"
            self.model.save(tmp)
            os.replace(tmp, self.run_dir / BEST_MODEL_FILE)
        self._write_state()
        logger.info("selection at step %d: objective %.4f (success %.3f, call frac %.3f); best at step %d",
                    step, entry["objective"], entry["success"], entry["deepthink_call_frac"], self.best["step"])
        return entry

    def _on_step(self) -> bool:
        if reached(self, self.every):
            self.evaluate()
        return True

    def _on_training_end(self) -> None:
        self.evaluate()  # the last weights are a candidate too
        if self._env is not None:
            self._env.close()
            self._env = None


def finish_selection(run_dir: Path) -> None:
    """Make the best weights the run's ``model.zip`` (the last ones stay in ``last_model.zip``)."""

    best = run_dir / BEST_MODEL_FILE
    if not best.is_file():
        raise FileNotFoundError(f"{best} is missing: the selection never evaluated a switch")
    tmp = run_dir / f".{MODEL_FILE}.tmp"
    tmp.write_bytes(best.read_bytes())
    os.replace(tmp, run_dir / MODEL_FILE)
    saved = read_json(run_dir / SELECTION_FILE)
    logger.info("%s: kept the switch of step %s (objective %.4f) out of %d evaluations", run_dir,
                saved["best"]["step"], saved["best"]["objective"], len(saved["evaluations"]))


def selection_summary(run_dir: Path) -> dict[str, Any] | None:
    """The best evaluation of a run's selection (``None`` without selection)."""
    path = Path(run_dir) / SELECTION_FILE
    if not path.is_file():
        return None
    saved = read_json(path)
    best = saved.get("best")
    return None if best is None or not math.isfinite(best.get("objective", math.nan)) else best
