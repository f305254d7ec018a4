"""Evaluation: run switch rules on the same held-out episodes and summarise them.

Seeds (:mod:`londi.core.seeds`). One run seed ``s`` (any non-negative integer) drives everything.
Evaluation episode ``i`` of run seed ``s`` in 0-9 uses env seed ``HELDOUT_SEED_BASE + s *
SEED_STRIDE + i`` (the held-out block ``[500_000, 600_000)``, as always, so that
docs/benchmarks.md stays reproducible); run seeds from 10 up use their own block from ``2**40``
up. Run seed :data:`VALIDATION_SEED` (9) is the validation split: choices made by looking at
results (a cost weight, a feature set) are made on its episodes, and the benchmarks report run
seeds 0-2, which such choices never see. Nothing is ever trained, selected or calibrated on a
held-out episode of any run seed: the shipped LMs are trained on env seeds from 1,000,000 up
(``scripts/train_lms.py``, below ``2**40``), baselines, selection and calibration draw seeds
below :data:`HELDOUT_SEED_BASE` (:func:`~londi.core.seeds.training_seeds`), and switch training
starts on :func:`~londi.core.seeds.training_env_seed` and continues the env's own random stream.
Every method of one evaluation sees exactly the same episodes.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from londi.core.errors import EndpointFailureError
from londi.core.seeds import heldout_seeds
from londi.envs import DEFAULT_ENV_ID
from londi.evaluation.metrics import EpisodeStats, summarize
from londi.evaluation.registry import is_oracle_method, method_info
from londi.rules.base import Method
from londi.switch.features import reads_oracle
from londi.switch.rollout import build_switch_env, run_rule
from londi.switch.vector import SwitchEnvBatch, run_rule_batched

logger = logging.getLogger(__name__)


def evaluate_methods(
    methods: dict[str, Method],
    *,
    env_id: str = DEFAULT_ENV_ID,
    episodes: int = 200,
    seed: int = 0,
    progress: bool = True,
    env_kwargs: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    num_envs: int = 1,
    env_processes: bool = False,
) -> dict[str, Any]:
    """Evaluate every method on the same held-out episodes; returns the ``results.json`` dict.

    ``num_envs`` > 1 plays that many episodes side by side with each step's LM calls batched
    across them (:mod:`londi.switch.vector`); the per-episode results are those of
    ``num_envs=1``, up to the floating-point order of a batched forward. ``env_processes`` runs
    each of those games in its own process (:class:`~londi.envs.worker.SubprocessEnv`), so
    that they step in parallel on all cores while the LMs run here.
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    seeds = heldout_seeds(seed, episodes)
    results: dict[str, Any] = {"env": env_id, "episodes": episodes, "seed": seed, "valid": True, "methods": {}}
    if num_envs > 1:
        results["num_envs"] = num_envs
        results["env_processes"] = bool(env_processes)
    if extra:
        results.update(extra)
    for name, m in methods.items():
        t0 = time.perf_counter()
        n = min(num_envs, max(len(seeds), 1))
        envs = [build_switch_env(env_id, m.quick, m.deepthink, features=m.rule.features, budget=m.budget,
                                 env_kwargs=env_kwargs, own_streams=n > 1, in_subprocess=env_processes and n > 1)
                for _ in range(n)]
        faults = {"policy_errors": 0, "env_errors": 0, "invalid_actions": 0, "masked_overrides": 0}

        def count_faults(_i: int, _stats: EpisodeStats, info: dict[str, Any], faults: dict[str, int] = faults) -> None:
            for key in faults:
                faults[key] += getattr(info["accounting"], key)

        try:
            if n == 1:
                eps = run_rule(m.rule, envs[0], seeds, progress=progress, desc=f"eval {name}", on_episode=count_faults)
            else:
                eps = run_rule_batched(m.rule, SwitchEnvBatch(envs), seeds, progress=progress, desc=f"eval {name}",
                                       on_episode=count_faults)
        except EndpointFailureError as exc:
            # what finished is kept for the record, marked so that nothing reads it as a result
            exc.partial_results = {**results, "valid": False, "error": f"{name}: {exc}"}
            raise
        finally:
            for env in envs:
                env.close()
        entry = summarize(eps, seed=seed, include_episodes=True)
        # failed or timed-out model calls (fallbacks included), env crashes, non-admissible answers
        # and DEEPTHINK requests refused by the hard budget, in total over the episodes
        entry["faults"] = faults
        # calibration / router training and their cost, metered apart from the evaluation
        entry.update(method_info(m))  # after the evaluation: e.g. the heuristic's trigger counts
        entry["wall_seconds"] = time.perf_counter() - t0
        if m.budget is not None:
            entry["budget"] = m.budget
        if is_oracle_method(m) or getattr(m.quick, "is_oracle", False) or reads_oracle(m.rule.features):
            entry["oracle"] = True  # an oracle rule, an oracle QUICK, or a switch that reads the expert's label
        results["methods"][name] = entry
        logger.info("%s: success %.3f, DEEPTHINK call frac %.3f", name, entry["success"], entry["deepthink_call_frac"])
    return results


def format_table(results: dict[str, Any]) -> str:
    """A plain-text table of a results dict (success, calls, device-seconds)."""
    head = f"{'method':<22}{'success':>9}{'95% CI':>16}{'return':>8}{'steps':>7}{'DT frac':>9}{'DT/ep':>7}{'dev-s/ep':>10}"
    lines = [f"env {results['env']}, {results['episodes']} held-out episodes, seed {results['seed']}", head,
             "-" * len(head)]
    for name, m in results["methods"].items():
        lo, hi = m["success_ci"]
        label = name + (" (oracle)" if m.get("oracle") and "oracle" not in name else "")
        lines.append(
            f"{label:<22}{m['success']:>9.3f}{f'[{lo:.3f}, {hi:.3f}]':>16}{m['return']:>8.3f}{m['steps']:>7.1f}"
            f"{m['deepthink_call_frac']:>9.3f}{m['deepthink_calls_per_episode']:>7.2f}"
            f"{m['device_seconds']['total']:>10.4f}"
        )
    levels = sorted({lvl for m in results["methods"].values() for lvl in m.get("per_level", {})})
    if levels:  # a task mix: success and DEEPTHINK call fraction per level
        lines += ["", "per level: success / DT frac", f"{'method':<22}" + "".join(f"{lvl:>22}" for lvl in levels)]
        for name, m in results["methods"].items():
            cells = [m.get("per_level", {}).get(lvl) for lvl in levels]
            lines.append(f"{name:<22}" + "".join(
                f"{c['success']:>14.3f} / {c['deepthink_call_frac']:.2f}" if c else f"{'-':>22}" for c in cells))
    return "\n".join(lines)

