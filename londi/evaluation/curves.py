"""Results cells pooled into curve points, and each env's numbers: rows, PGR / APGR / CPT, references.

:func:`londi.evaluation.report.load_cells` reads every method entry of a run as a :class:`Cell`;
here the cells of one method are grouped by the sweep parameters that vary between them
(:func:`build_points`, seeds pooled and re-bootstrapped), and :func:`env_section` computes what the
report shows for one env: a row per point, the curve metrics per method against the
always-QUICK / always-DEEPTHINK references, and the oracle ratio. Tables and plots only render
these numbers (:mod:`londi.evaluation.report`, :mod:`londi.evaluation.plots`).
"""
from __future__ import annotations

import logging
import math
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from londi.evaluation.metrics import (
    DEFAULT_RESAMPLES,
    ROLES,
    EpisodeStats,
    apgr,
    bootstrap_ci,
    compute_saving,
    cpt,
    oracle_ratio,
    pgr,
    summarize_seeds,
)

logger = logging.getLogger(__name__)

#: Config keys that a sweep varies; also the order in which a single cell's label is chosen.
PARAM_KEYS: tuple[str, ...] = ("budget", "cost_limit", "cost", "rate", "threshold")

#: The CPT levels reported, as PGR fractions.
CPT_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.95)


@dataclass
class Cell:
    """One method's entry of one ``results.json``."""

    env: str
    method: str
    seed: int | None
    params: dict[str, Any]
    entry: dict[str, Any]
    episodes: int
    path: Path
    oracle: bool = False


@dataclass
class Point:
    """One point of a method's curve: its cells at one parameter value, seeds pooled."""

    method: str
    label: str
    sort_key: tuple
    entry: dict[str, Any]
    seeds: list[int]
    episodes: int
    cells: list[Cell] = field(default_factory=list)


def normalize_method(name: str) -> str:
    """``name`` as method names are matched: case-insensitive, with ``-``, ``_`` and spaces alike
    (so ``always-quick`` names the ``always_quick`` reference)."""
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _value_key(value: Any) -> tuple:
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def _total_seconds(entry: Mapping[str, Any]) -> float:
    seconds = entry.get("device_seconds", {})
    if "total" in seconds:
        return float(seconds["total"])
    return float(sum(float(seconds.get(r, 0.0)) for r in ROLES))


def _pool_entries(cells: Sequence[Cell], *, seed: int, n_resamples: int) -> dict[str, Any]:
    """One entry for cells of the same method and parameters (different seeds)."""
    if len(cells) == 1:
        entry = {k: v for k, v in cells[0].entry.items() if k != "per_episode"}
        entry.setdefault("episodes", cells[0].episodes)
        return entry
    if all(isinstance(c.entry.get("per_episode"), list) and c.entry["per_episode"] for c in cells):
        # Pool the episodes themselves; cells without a seed (or repeating one) get a distinct
        # key so that no episode is dropped.
        by_key: dict[int, list[EpisodeStats]] = {}
        for i, c in enumerate(sorted(cells, key=lambda c: (c.seed is None, c.seed or 0, str(c.path)))):
            by_key[i] = [EpisodeStats.from_dict(e) for e in c.entry["per_episode"]]
        entry = summarize_seeds(by_key, seed=seed, n_resamples=n_resamples)
        entry.pop("seeds", None)
        return entry
    weights = np.array([max(c.episodes, 0) for c in cells], dtype=float)
    if weights.sum() <= 0:
        weights = np.ones(len(cells))

    def wmean(get: Callable[[Mapping[str, Any]], float]) -> float:
        vals = np.array([float(get(c.entry)) for c in cells], dtype=float)
        return float(np.sum(weights * vals) / weights.sum())

    steps = [float(c.entry.get("steps", float("nan"))) for c in cells]
    calls = [float(c.entry["deepthink_calls_per_episode"]) for c in cells]
    total_steps = float(np.sum(weights * np.array(steps)))
    if math.isfinite(total_steps) and total_steps > 0:
        call_frac = float(np.sum(weights * np.array(calls)) / total_steps)
    else:
        # Without step counts, weight the cells' own fractions by episodes.
        call_frac = wmean(lambda e: e["deepthink_call_frac"])
    entry: dict[str, Any] = {
        "success": wmean(lambda e: e["success"]),
        "return": wmean(lambda e: e.get("return", float("nan"))),
        "steps": wmean(lambda e: e.get("steps", float("nan"))),
        "quick_calls_per_episode": wmean(lambda e: e.get("quick_calls_per_episode", float("nan"))),
        "deepthink_call_frac": call_frac,
        "deepthink_calls_per_episode": wmean(lambda e: e["deepthink_calls_per_episode"]),
        "max_deepthink_calls": max(int(c.entry.get("max_deepthink_calls", 0)) for c in cells),
        "device_seconds": {
            **{r: wmean(lambda e, r=r: e["device_seconds"].get(r, 0.0)) for r in ROLES},
            "total": wmean(_total_seconds),
        },
        "episodes": int(sum(c.episodes for c in cells)),
        "return_ci": [float("nan"), float("nan")],
    }
    # A success rate times its episode count is the number of successes, so the pooled
    # per-episode successes (and their bootstrap) are exact even without per-episode records.
    counts = [c.entry["success"] * c.episodes for c in cells]
    if all(c.episodes > 0 and abs(k - round(k)) < 1e-6 for k, c in zip(counts, cells)):
        outcomes = np.concatenate(
            [
                np.r_[np.ones(int(round(k))), np.zeros(c.episodes - int(round(k)))]
                for k, c in zip(counts, cells)
            ]
        )
        entry["success_ci"] = list(bootstrap_ci(outcomes, seed=seed, n_resamples=n_resamples))
    else:
        entry["success_ci"] = [float("nan"), float("nan")]
    logger.warning(
        "pooling %d cells of %r without per_episode records: the pooled return CI is not "
        "available (write results with per_episode to get it)",
        len(cells),
        cells[0].method,
    )
    return entry


def build_points(
    cells: Sequence[Cell], *, seed: int = 0, n_resamples: int = DEFAULT_RESAMPLES
) -> list[Point]:
    """Group one method's cells (one env) into curve points, seeds pooled.

    The label keys are the :data:`PARAM_KEYS` whose values differ between the cells; with none
    differing (one parameter value, e.g. several seeds of one cell), every key of
    :data:`PARAM_KEYS` that has a value, so that the label hides nothing (or ``-`` for none).
    """
    if not cells:
        return []
    varying = [k for k in PARAM_KEYS if len({repr(c.params.get(k)) for c in cells}) > 1]
    if not varying:
        varying = [k for k in PARAM_KEYS if cells[0].params.get(k) is not None]
    groups: dict[tuple, list[Cell]] = defaultdict(list)
    for c in cells:
        groups[tuple(repr(c.params.get(k)) for k in varying)].append(c)
    points = []
    for group in groups.values():
        seeds = [c.seed for c in group if c.seed is not None]
        if len(set(seeds)) < len(seeds):
            logger.warning(
                "method %r: several cells with the same parameters and seed (%s); pooling them all",
                group[0].method,
                ", ".join(str(c.path) for c in group),
            )
        values = [group[0].params.get(k) for k in varying]
        label = ", ".join(f"{k}={_format_value(v)}" for k, v in zip(varying, values)) or "-"
        points.append(
            Point(
                method=group[0].method,
                label=label,
                sort_key=tuple(_value_key(v) for v in values),
                entry=_pool_entries(group, seed=seed, n_resamples=n_resamples),
                seeds=sorted(set(seeds)),
                episodes=int(sum(c.episodes for c in group)),
                cells=list(group),
            )
        )
    points.sort(key=lambda p: p.sort_key)
    return points


def _capped(cell: Cell) -> bool:
    """Whether a cell ran under a hard budget or an expected-cost limit (which changes what a
    reference method does: a capped oracle is a point of its own, not the reference)."""
    return cell.params.get("budget") is not None or cell.params.get("cost_limit") is not None


def _pooled_reference(cells: Sequence[Cell], *, seed: int, n_resamples: int) -> Point | None:
    """The uncapped cells of a reference method (always-QUICK, always-DEEPTHINK, oracle) as one
    point (``None`` without any)."""
    cells = [c for c in cells if not _capped(c)]
    if not cells:
        return None
    seeds = sorted({c.seed for c in cells if c.seed is not None})
    return Point(
        method=cells[0].method,
        label="-",
        sort_key=(),
        entry=_pool_entries(cells, seed=seed, n_resamples=n_resamples),
        seeds=seeds,
        episodes=int(sum(c.episodes for c in cells)),
        cells=list(cells),
    )


def _perf(entry: Mapping[str, Any], metric: str) -> float:
    return float(entry.get(metric, float("nan")))


def _seed_rows(point: Point, deep_by_seed: Mapping[int | None, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One point's cells seed by seed, each against always-DEEPTHINK's cell of the same seed
    (a target that must hold on each seed alone is read here, not from the pooled row), with
    the per-level numbers of a mixed env where the evaluation recorded them."""
    out = []
    for c in sorted(point.cells, key=lambda c: (c.seed is None, c.seed or 0)):
        e, deep = c.entry, deep_by_seed.get(c.seed)
        success, total = float(e["success"]), _total_seconds(e)
        levels = e.get("per_level") if isinstance(e.get("per_level"), Mapping) else {}
        out.append({
            "seed": c.seed,
            "episodes": c.episodes,
            "success": success,
            "deepthink_call_frac": float(e["deepthink_call_frac"]),
            "deepthink_calls_per_episode": float(e["deepthink_calls_per_episode"]),
            "device_seconds": total,
            "success_ratio": success / float(deep["success"]) if deep and float(deep["success"]) > 0 else float("nan"),
            "device_ratio": total / _total_seconds(deep) if deep and _total_seconds(deep) > 0 else float("nan"),
            "per_level": {name: {"success": float(v["success"]), "deepthink_call_frac": float(v["deepthink_call_frac"])}
                          for name, v in levels.items() if isinstance(v, Mapping) and "success" in v},
        })
    return out


def env_section(
    env: str,
    cells: Sequence[Cell],
    *,
    metric: str,
    quick_method: str,
    deepthink_method: str,
    oracle_method: str,
    seed: int,
    n_resamples: int,
) -> dict[str, Any]:
    """The numbers of one env: rows per point, curve metrics per method, references."""
    by_method: dict[str, list[Cell]] = defaultdict(list)
    for c in cells:
        by_method[normalize_method(c.method)].append(c)
    q_key = normalize_method(quick_method)
    d_key = normalize_method(deepthink_method)
    o_key = normalize_method(oracle_method)
    notes: list[str] = []
    # Methods the evaluation flagged as oracles ("oracle": true in their entry).
    flagged = sorted(
        m for m, cs in by_method.items() if any(c.oracle for c in cs) and m not in (q_key, d_key)
    )
    if o_key not in by_method and flagged:
        if len(flagged) == 1:
            o_key, oracle_method = flagged[0], by_method[flagged[0]][0].method
        else:
            notes.append(
                f"several oracle methods ({', '.join(flagged)}) and none named {oracle_method!r}: "
                "name the hindsight oracle (--oracle-method) to get the oracle ratio."
            )
    ref = {
        "quick": _pooled_reference(by_method.get(q_key, []), seed=seed, n_resamples=n_resamples),
        "deepthink": _pooled_reference(by_method.get(d_key, []), seed=seed, n_resamples=n_resamples),
        "oracle": _pooled_reference(by_method.get(o_key, []), seed=seed, n_resamples=n_resamples),
    }
    quick, deep, oracle = ref["quick"], ref["deepthink"], ref["oracle"]
    q_perf = _perf(quick.entry, metric) if quick else float("nan")
    d_perf = _perf(deep.entry, metric) if deep else float("nan")
    have_refs = quick is not None and deep is not None
    if not have_refs:
        missing = [m for m, p in ((quick_method, quick), (deepthink_method, deep)) if p is None]
        notes.append(f"no {' or '.join(missing)} run: PGR, APGR and CPT are not computed.")
    elif math.isclose(q_perf, d_perf, rel_tol=1e-12, abs_tol=1e-12):
        notes.append(
            f"{quick_method} and {deepthink_method} have the same {metric} ({q_perf:.3f}): there is no "
            "gap to recover, so PGR, APGR and CPT are n/a."
        )
    if deep is None:
        notes.append(f"no {deepthink_method} run: compute saving is not computed.")
    d_seconds = _total_seconds(deep.entry) if deep else float("nan")
    deep_by_seed = {c.seed: c.entry for c in deep.cells} if deep else {}

    def display(method: str) -> str:
        # The hindsight oracle reads the expert's actions: always say so.
        key = normalize_method(method)
        if (key == o_key or key in flagged) and "oracle" not in method.lower():
            return f"{method} (oracle)"
        return method

    order = {q_key: 0, d_key: 1, o_key: 2}
    method_keys = sorted(by_method, key=lambda m: (order.get(m, 3), m))
    rows: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    for mkey in method_keys:
        if mkey in (q_key, d_key, o_key):
            # The reference point (uncapped cells pooled), then the capped cells as points of their own.
            reference = ref[{q_key: "quick", d_key: "deepthink", o_key: "oracle"}[mkey]]
            capped = [c for c in by_method[mkey] if _capped(c)]
            points = ([reference] if reference is not None else []) + build_points(
                capped, seed=seed, n_resamples=n_resamples
            )
        else:
            points = build_points(by_method[mkey], seed=seed, n_resamples=n_resamples)
        for p in points:
            e = p.entry
            calls = float(e["deepthink_calls_per_episode"])
            if oracle is None:
                ratio = float("nan")
            elif quick is not None:
                ratio = oracle_ratio(
                    calls,
                    float(oracle.entry["deepthink_calls_per_episode"]),
                    success=float(e["success"]),
                    oracle_success=float(oracle.entry["success"]),
                    quick_success=float(quick.entry["success"]),
                )
            else:
                ratio = oracle_ratio(calls, float(oracle.entry["deepthink_calls_per_episode"]))
            seconds = e.get("device_seconds", {})
            rows.append(
                {
                    "method": display(p.method),
                    "param": p.label,
                    "seeds": p.seeds,
                    "episodes": p.episodes,
                    "success": float(e["success"]),
                    "success_ci": list(e.get("success_ci", [float("nan")] * 2)),
                    "return": float(e.get("return", float("nan"))),
                    "return_ci": list(e.get("return_ci", [float("nan")] * 2)),
                    "deepthink_call_frac": float(e["deepthink_call_frac"]),
                    "deepthink_calls_per_episode": calls,
                    "device_seconds": {
                        **{r: float(seconds.get(r, float("nan"))) for r in ROLES},
                        "total": _total_seconds(e),
                    },
                    "compute_saving": (
                        compute_saving(_total_seconds(e), d_seconds) if deep else float("nan")
                    ),
                    "pgr": pgr(_perf(e, metric), quick_perf=q_perf, deepthink_perf=d_perf)
                    if have_refs
                    else float("nan"),
                    "oracle_ratio": ratio,
                    "per_seed": _seed_rows(p, deep_by_seed),
                }
            )
        if mkey in (q_key, d_key):
            continue
        curve_pts = [(float(p.entry["deepthink_call_frac"]), _perf(p.entry, metric)) for p in points]
        curve_pts = [(x, y) for x, y in curve_pts if math.isfinite(x) and math.isfinite(y)]
        curve: dict[str, Any] = {"method": display(points[0].method), "points": len(curve_pts)}
        if have_refs and curve_pts:
            curve["apgr"] = apgr(curve_pts, quick_perf=q_perf, deepthink_perf=d_perf)
            for level in CPT_LEVELS:
                curve[f"cpt_{round(level * 100)}"] = cpt(
                    curve_pts, level, quick_perf=q_perf, deepthink_perf=d_perf
                )
        else:
            curve["apgr"] = float("nan")
            for level in CPT_LEVELS:
                curve[f"cpt_{round(level * 100)}"] = float("nan")
        curves.append(curve)
    return {
        "env": env,
        "rows": rows,
        "curves": curves,
        "reference": {
            "quick_method": quick.method if quick else None,
            "deepthink_method": deep.method if deep else None,
            "oracle_method": oracle.method if oracle else None,
            f"quick_{metric}": q_perf,
            f"deepthink_{metric}": d_perf,
        },
        "notes": notes,
    }


__all__ = [
    "CPT_LEVELS",
    "PARAM_KEYS",
    "Cell",
    "Point",
    "build_points",
    "env_section",
    "normalize_method",
]
