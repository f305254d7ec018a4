"""Evaluation metrics: per-episode records, bootstrap summaries and router-curve metrics.

The quantities are the ones of the design notes ("Metrics"):

* **success rate and mean return** with 95% percentile-bootstrap confidence intervals over
  episodes (:func:`bootstrap_ci`, :func:`summarize`). Several seeds are combined by *pooling their
  episodes* (:func:`summarize_seeds`): every episode of every seed has weight one and a single
  bootstrap resamples the pooled episodes. This treats the episodes of different seeds as
  exchangeable, so the interval reflects episode-to-episode variation (the dominant term for the
  few-seed sweeps LONDI runs), not the variation between separately trained switches;
* **DEEPTHINK call fraction** = total DEEPTHINK calls / total steps over all episodes (a ratio of
  sums, so long episodes weigh more, as in RouteLLM's "% of calls to the strong model"), and
  DEEPTHINK **calls per episode**;
* **device-seconds per episode**, per role (``quick``, ``deepthink``, ``switch`` - the switch's
  own feature cost) and in total;
* **compute saving** = 1 - total device-seconds / always-DEEPTHINK's total device-seconds
  (:func:`compute_saving`);
* **PGR, APGR and CPT** (:func:`pgr`, :func:`apgr`, :func:`cpt`), following RouteLLM's evaluation
  code (``routellm/evals/evaluate.py``), with the call fraction per step in place of the fraction
  of queries routed to the strong model;
* **oracle ratio** = the method's DEEPTHINK calls / the hindsight oracle's calls at the same
  success (:func:`oracle_ratio`). The hindsight oracle is an **oracle**: it reads the expert's
  action, which no deployable switch can.

Degenerate denominators never raise inside these metric functions: they return ``nan`` (or
``inf`` where the limit is clear), as documented on each function, so that a report over a
partly-degenerate sweep still renders. Invalid *inputs* (negative counts, call fractions outside
[0, 1], empty lists) raise :class:`ValueError`.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from londi.switch.env import ROLES
from londi.switch.rollout import EpisodeStats

#: Default number of bootstrap resamples. 10k keeps the Monte-Carlo error of a 95% percentile
#: bound well under the interval's own width for the few hundred episodes of an evaluation.
DEFAULT_RESAMPLES = 10_000

# Bootstrap resamples are drawn in blocks of at most this many indices, so that memory stays
# bounded (~16 MB of int64) whatever the number of episodes.
_BLOCK_ELEMENTS = 2_000_000


# --------------------------------------------------------------------------------------------
# Bootstrap and per-method summaries
# --------------------------------------------------------------------------------------------


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    seed: int,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``values``.

    ``n_resamples`` samples of ``len(values)`` values are drawn with replacement by
    ``numpy.random.default_rng(seed)``; the bounds are the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles (numpy's default linear interpolation) of their means. The
    same seed and values always give the same interval. With one value, or identical values, the
    interval is that value.

    Raises:
        ValueError: ``values`` is empty or not finite, ``confidence`` is not in (0, 1) or
            ``n_resamples`` < 1.
    """
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("cannot bootstrap an empty list of values")
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be finite")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    n_resamples = int(n_resamples)
    rng = np.random.default_rng(seed)
    n = x.size
    means = np.empty(n_resamples, dtype=float)
    block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, n_resamples, block):
        stop = min(n_resamples, start + block)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def summarize(
    episodes: Sequence[EpisodeStats],
    *,
    seed: int,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    include_episodes: bool = False,
) -> dict[str, Any]:
    """One method's entry of ``results.json`` from its episodes.

    Keys: ``success`` (fraction solved), ``success_ci``, ``return`` (mean), ``return_ci``
    (percentile bootstrap, see :func:`bootstrap_ci`; both CIs use the same ``seed``, hence the
    same resamples), ``steps``, ``quick_calls_per_episode``, ``deepthink_calls_per_episode``
    (means per episode), ``deepthink_call_frac`` (total DEEPTHINK calls / total steps; ``nan``
    when no step was taken), ``max_deepthink_calls`` (the most calls in any one episode: the
    number a hard budget must bound), ``device_seconds`` (mean per episode for each role of
    :data:`ROLES` and ``total``) and ``episodes``. Where every episode carries oracle
    disagreement counts, ``quick_oracle_disagreements_per_episode`` (the hindsight **oracle**'s
    calls on these states) and ``taken_oracle_disagreements_per_episode`` are added. With
    ``include_episodes`` the records themselves are added under ``per_episode`` so that runs
    can later be pooled across seeds. Where the episodes come from more than one level (a task
    mix), ``per_level`` holds success, steps, call fraction, calls and device-seconds per level.

    Raises:
        ValueError: ``episodes`` is empty.
    """
    episodes = list(episodes)
    if not episodes:
        raise ValueError("cannot summarize an empty list of episodes")
    success = np.array([e.success for e in episodes], dtype=float)
    returns = np.array([e.episode_return for e in episodes], dtype=float)
    steps = np.array([e.steps for e in episodes], dtype=float)
    quick = np.array([e.quick_calls for e in episodes], dtype=float)
    deep = np.array([e.deepthink_calls for e in episodes], dtype=float)
    total_steps = float(steps.sum())
    seconds = {role: float(np.mean([e.device_seconds[role] for e in episodes])) for role in ROLES}
    seconds["total"] = float(np.mean([e.total_device_seconds for e in episodes]))
    out: dict[str, Any] = {
        "success": float(success.mean()),
        "success_ci": list(
            bootstrap_ci(success, seed=seed, confidence=confidence, n_resamples=n_resamples)
        ),
        "return": float(returns.mean()),
        "return_ci": list(
            bootstrap_ci(returns, seed=seed, confidence=confidence, n_resamples=n_resamples)
        ),
        "steps": float(steps.mean()),
        "quick_calls_per_episode": float(quick.mean()),
        "deepthink_call_frac": float(deep.sum() / total_steps) if total_steps > 0 else float("nan"),
        "deepthink_calls_per_episode": float(deep.mean()),
        "max_deepthink_calls": int(deep.max()),
        "device_seconds": seconds,
        "episodes": len(episodes),
    }
    for name in ("quick_oracle_disagreements", "taken_oracle_disagreements"):
        counts = [getattr(e, name) for e in episodes]
        if all(c is not None for c in counts):
            out[f"{name}_per_episode"] = float(np.mean(counts))
    levels = sorted({e.level for e in episodes if e.level is not None})
    if len(levels) > 1:  # a task mix: the same figures per level
        out["per_level"] = {level: _level_summary([e for e in episodes if e.level == level]) for level in levels}
    if include_episodes:
        out["per_episode"] = [e.to_dict() for e in episodes]
    return out


def _level_summary(episodes: Sequence[EpisodeStats]) -> dict[str, float]:
    steps = sum(e.steps for e in episodes)
    deep = sum(e.deepthink_calls for e in episodes)
    return {
        "episodes": len(episodes),
        "success": float(np.mean([e.success for e in episodes])),
        "steps": float(np.mean([e.steps for e in episodes])),
        "deepthink_call_frac": deep / steps if steps else float("nan"),
        "deepthink_calls_per_episode": deep / len(episodes),
        "device_seconds_total": float(np.mean([e.total_device_seconds for e in episodes])),
    }


def summarize_seeds(
    episodes_by_seed: Mapping[int, Sequence[EpisodeStats]],
    *,
    seed: int,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    include_episodes: bool = False,
) -> dict[str, Any]:
    """Summarize one method over several seeds by pooling their episodes.

    The episodes of all seeds are concatenated (in increasing seed order, so the result does
    not depend on the mapping's order) and summarized by :func:`summarize`, whose bootstrap then
    resamples the pooled episodes; ``seed`` seeds that bootstrap. Every episode weighs the same,
    so a seed with more episodes weighs more; ratios such as the call fraction are ratios of
    pooled sums. The entry gets a ``seeds`` key listing the pooled seeds.

    Raises:
        ValueError: no seeds, or no episodes at all.
    """
    if not episodes_by_seed:
        raise ValueError("no seeds to pool")
    order = sorted(episodes_by_seed)
    pooled = [e for s in order for e in episodes_by_seed[s]]
    out = summarize(
        pooled,
        seed=seed,
        confidence=confidence,
        n_resamples=n_resamples,
        include_episodes=include_episodes,
    )
    out["seeds"] = [int(s) for s in order]
    return out


# --------------------------------------------------------------------------------------------
# Compute saving, PGR, APGR, CPT, oracle ratio
# --------------------------------------------------------------------------------------------


def compute_saving(
    device_seconds_per_episode: float, deepthink_device_seconds_per_episode: float
) -> float:
    """``1 - device_seconds / always-DEEPTHINK's device_seconds`` (totals per episode, switch
    feature cost included). ``nan`` when always-DEEPTHINK's device-seconds are not > 0."""
    if not deepthink_device_seconds_per_episode > 0:
        return float("nan")
    return 1.0 - float(device_seconds_per_episode) / float(deepthink_device_seconds_per_episode)


def _gap(quick_perf: float, deepthink_perf: float) -> float | None:
    """perf_DEEPTHINK - perf_QUICK, or ``None`` when the two are (numerically) equal."""
    q, d = float(quick_perf), float(deepthink_perf)
    if not (math.isfinite(q) and math.isfinite(d)):
        return None
    if math.isclose(q, d, rel_tol=1e-12, abs_tol=1e-12):
        return None
    return d - q


def pgr(perf: float, *, quick_perf: float, deepthink_perf: float) -> float:
    """Performance gap recovered: ``(perf - perf_QUICK) / (perf_DEEPTHINK - perf_QUICK)``.

    0 at always-QUICK's performance, 1 at always-DEEPTHINK's; it can leave [0, 1] when a method
    beats DEEPTHINK or falls below QUICK. Returns ``nan`` when ``perf_DEEPTHINK == perf_QUICK``
    (within 1e-12): there is no gap to recover, and any ratio would be meaningless.
    """
    gap = _gap(quick_perf, deepthink_perf)
    if gap is None:
        return float("nan")
    return (float(perf) - float(quick_perf)) / gap


def performance_curve(
    points: Iterable[tuple[float, float]], *, quick_perf: float, deepthink_perf: float
) -> tuple[np.ndarray, np.ndarray]:
    """A method's performance curve over the DEEPTHINK call fraction, as APGR and CPT read it.

    ``points`` are the method's ``(call_frac, perf)`` measurements (e.g. one per cost, rate,
    threshold or budget of a sweep). The curve is those points sorted by call fraction, with the
    two reference endpoints ``(0, perf_QUICK)`` and ``(1, perf_DEEPTHINK)`` added. Where the
    method has its own measurement at call fraction exactly 0 (or 1), that measurement is kept
    and the endpoint is not added: in RouteLLM the extreme thresholds produce those points from
    the router's own runs. Measurements at the same call fraction are averaged, so that the
    curve is a function and the result does not depend on the order of ``points``. The curve is
    *not* made monotone (RouteLLM's evaluation does not either).

    Returns:
        ``(call_fracs, perfs)``, increasing in call fraction, from 0 to 1.

    Raises:
        ValueError: ``points`` is empty, a value is not finite, or a call fraction is outside
            [0, 1] (beyond 1e-9, which is clipped).
    """
    pts = [(float(x), float(y)) for x, y in points]
    if not pts:
        raise ValueError("a performance curve needs at least one (call_frac, perf) point")
    by_x: dict[float, list[float]] = {}
    for x, y in pts:
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"curve point ({x}, {y}) is not finite")
        if x < -1e-9 or x > 1 + 1e-9:
            raise ValueError(f"call fraction {x} is outside [0, 1]")
        by_x.setdefault(min(1.0, max(0.0, x)), []).append(y)
    by_x.setdefault(0.0, [float(quick_perf)])
    by_x.setdefault(1.0, [float(deepthink_perf)])
    xs = np.array(sorted(by_x), dtype=float)
    ys = np.array([float(np.mean(by_x[x])) for x in xs], dtype=float)
    return xs, ys


def pgr_curve(
    points: Iterable[tuple[float, float]], *, quick_perf: float, deepthink_perf: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`performance_curve` with performance mapped to PGR (all ``nan`` when there is no
    gap between QUICK and DEEPTHINK)."""
    xs, ys = performance_curve(points, quick_perf=quick_perf, deepthink_perf=deepthink_perf)
    gap = _gap(quick_perf, deepthink_perf)
    if gap is None:
        return xs, np.full_like(ys, np.nan)
    return xs, (ys - float(quick_perf)) / gap


def apgr(points: Iterable[tuple[float, float]], *, quick_perf: float, deepthink_perf: float) -> float:
    """Average performance gap recovered: the area under the PGR curve over call fraction 0..1.

    As in RouteLLM's ``apgr_metric``: the trapezoidal area under the performance curve
    (:func:`performance_curve`, points joined by straight lines) minus the area under the
    constant QUICK performance, divided by the area between DEEPTHINK's and QUICK's constants.
    Since the curve spans [0, 1], that equals the trapezoidal integral of PGR over [0, 1]. A
    random mix of the two models (the straight line between the endpoints) scores 0.5, a
    method that reaches DEEPTHINK's performance with no calls scores 1.

    Returns ``nan`` when ``perf_DEEPTHINK == perf_QUICK``.
    """
    xs, ps = pgr_curve(points, quick_perf=quick_perf, deepthink_perf=deepthink_perf)
    if np.isnan(ps).any():
        return float("nan")
    return float(np.sum(np.diff(xs) * (ps[1:] + ps[:-1]) / 2.0))


def cpt(
    points: Iterable[tuple[float, float]], target: float, *, quick_perf: float, deepthink_perf: float
) -> float:
    """Call-performance threshold: the call fraction at which PGR first reaches ``target``.

    ``target`` is a fraction (0.5 for CPT(50%)). Walking the curve (:func:`performance_curve`)
    from call fraction 0 upwards, the first segment whose end reaches ``target`` is linearly
    interpolated. RouteLLM's ``pct_call_metric`` computes ``np.interp(target, perfs, call
    fracs)``, which is the same number whenever the curve is increasing (the only case where
    ``np.interp`` is defined); the first crossing keeps the definition exact for a noisy,
    non-monotone curve. Because the curve ends at DEEPTHINK (PGR 1), any target <= 1 is reached
    by call fraction 1 at the latest.

    Returns:
        The call fraction in [0, 1]; 0 if the curve starts at or above ``target``; ``nan`` if
        the curve never reaches it (a target above the curve) or ``perf_DEEPTHINK ==
        perf_QUICK``.
    """
    target = float(target)
    if not math.isfinite(target):
        raise ValueError(f"target must be finite, got {target}")
    xs, ps = pgr_curve(points, quick_perf=quick_perf, deepthink_perf=deepthink_perf)
    if np.isnan(ps).any():
        return float("nan")
    if ps[0] >= target:
        return float(xs[0])
    for i in range(1, len(xs)):
        if ps[i] >= target:
            # ps[i - 1] < target <= ps[i], so the slope is positive.
            frac = (target - ps[i - 1]) / (ps[i] - ps[i - 1])
            return float(xs[i - 1] + frac * (xs[i] - xs[i - 1]))
    return float("nan")


def oracle_calls_at_success(
    success: float, *, oracle_success: float, oracle_calls_per_episode: float, quick_success: float
) -> float:
    """The hindsight **oracle**'s DEEPTHINK calls per episode needed to reach ``success``.

    The oracle is measured at one point, ``(oracle_success, oracle_calls_per_episode)``. Running
    it on a fraction ``p`` of the episodes and always-QUICK (no calls) on the rest reaches
    success ``quick_success + p (oracle_success - quick_success)`` with ``p *
    oracle_calls_per_episode`` calls, so the oracle's calls at a success between QUICK's and its
    own are the linear interpolation between ``(quick_success, 0)`` and its point.

    Returns:
        0 for ``success <= quick_success``; ``nan`` if ``success`` is above the oracle's own
        success (the oracle does not reach it, so there is nothing to compare with) or if the
        oracle is no better than QUICK.
    """
    s, o, q = float(success), float(oracle_success), float(quick_success)
    if s <= q:
        return 0.0
    if o <= q or s > o + 1e-12:
        return float("nan")
    return float(oracle_calls_per_episode) * min(1.0, (s - q) / (o - q))


def oracle_ratio(
    deepthink_calls_per_episode: float,
    oracle_calls_per_episode: float,
    *,
    success: float | None = None,
    oracle_success: float | None = None,
    quick_success: float | None = None,
) -> float:
    """The method's DEEPTHINK calls over the hindsight **oracle**'s at the same success.

    How "at the same success" is taken:

    * with ``success``, ``oracle_success`` and ``quick_success`` all given, the oracle's calls
      are those it needs to reach the method's own success (:func:`oracle_calls_at_success`);
    * with none of them, the comparison is made at the method's own point using the oracle's
      measured calls per episode as they are (appropriate when the method reaches the oracle's
      success, e.g. both at expert level).

    1 means the method is as frugal as hindsight allows; larger is more wasteful.

    Returns:
        The ratio; ``inf`` when the oracle needs no calls but the method made some; ``nan`` when
        neither made calls, or when the oracle does not reach the method's success.

    Raises:
        ValueError: only some of the three success arguments are given.
    """
    given = [v is not None for v in (success, oracle_success, quick_success)]
    if any(given) and not all(given):
        raise ValueError("give all of success, oracle_success and quick_success, or none of them")
    oracle_calls = float(oracle_calls_per_episode)
    if all(given):
        oracle_calls = oracle_calls_at_success(
            float(success),  # type: ignore[arg-type]
            oracle_success=float(oracle_success),  # type: ignore[arg-type]
            oracle_calls_per_episode=oracle_calls,
            quick_success=float(quick_success),  # type: ignore[arg-type]
        )
    calls = float(deepthink_calls_per_episode)
    if math.isnan(oracle_calls):
        return float("nan")
    if oracle_calls <= 0:
        return float("inf") if calls > 0 else float("nan")
    return calls / oracle_calls


__all__ = [
    "DEFAULT_RESAMPLES",
    "ROLES",
    "EpisodeStats",
    "apgr",
    "bootstrap_ci",
    "compute_saving",
    "cpt",
    "oracle_calls_at_success",
    "oracle_ratio",
    "performance_curve",
    "pgr",
    "pgr_curve",
    "summarize",
    "summarize_seeds",
]
