"""``londi report DIR``: tabulate and plot every ``results.json`` of a run or a sweep.

A demo writes ``DIR/results.json`` (several methods in one file); a sweep writes one file per
cell, e.g. ``DIR/cells/<method>__<param>__seed<k>/results.json``, usually with the cell's
resolved ``config.json`` beside it. :func:`write_report` finds them all and:

1. reads each method entry as a *cell*: env, method, seed and sweep parameters (``budget``,
   ``cost_limit``, ``cost``, ``rate``, ``threshold``) taken from the entry's ``config``, else
   from the ``config.json`` beside the file (when that config names no other method), else the
   file's top-level ``seed``;
2. groups cells by env and method; within a method the parameters whose values differ between
   its cells label the points of its curve (``cost=0.1``; a method with a single parameter value
   is labelled with all its parameters that are set), and cells with the same label - the seeds
   - are pooled into one point. With ``per_episode`` records in every entry the episodes
   are pooled and re-bootstrapped (:func:`londi.metrics.summarize_seeds`); without them the
   means are weighted by episodes, the success CI is bootstrapped from the success counts (the
   per-episode successes are recoverable from the rate), and the return CI is left out
   (``n/a``) because it cannot be recovered;
3. writes ``report.md`` (one section per env: a table per point, device-seconds by model, and
   APGR / CPT per method where always-QUICK and always-DEEPTHINK runs are present),
   ``report.json`` (the same numbers, machine-readable) and two PNG plots per env: performance
   against DEEPTHINK call fraction and against device-seconds per episode, with CI error bars.

Every file is written to a temporary name and moved into place (``os.replace``), so an
interrupted report never leaves a truncated file.
"""
from __future__ import annotations

import io
import json
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from londi.io import atomic_write_bytes, atomic_write_text
from londi.errors import LondiError, check_choice
from londi.metrics import (
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
#: Performance measures the report can put on the y axis and into PGR.
METRICS: tuple[str, ...] = ("success", "return")
#: The CPT levels reported, as PGR fractions.
CPT_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.95)

RESULTS_NAME = "results.json"
CONFIG_NAME = "config.json"
REPORT_NAME = "report.md"
REPORT_JSON_NAME = "report.json"


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


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


def _normalize(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _lookup(flat: Mapping[str, Any], key: str) -> Any:
    """A top-level ``key``, else the first (sorted) nested ``*.key``; ``None`` if absent."""
    if flat.get(key) is not None:
        return flat[key]
    for name in sorted(flat):
        if name.endswith("." + key) and flat[name] is not None:
            return flat[name]
    return None


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _entry_episodes(entry: Mapping[str, Any], results: Mapping[str, Any]) -> int:
    if isinstance(entry.get("episodes"), (int, float)):
        return int(entry["episodes"])
    if isinstance(entry.get("per_episode"), list):
        return len(entry["per_episode"])
    return int(results.get("episodes", 0))


def _valid_entry(entry: Any) -> str | None:
    """Why ``entry`` cannot be reported, or ``None`` if it can."""
    if not isinstance(entry, Mapping):
        return "entry is not an object"
    for key in ("success", "deepthink_call_frac", "deepthink_calls_per_episode", "device_seconds"):
        if key not in entry:
            return f"missing key {key!r}"
    if not isinstance(entry["device_seconds"], Mapping):
        return "device_seconds is not an object"
    return None


def load_cells(run_dir: str | os.PathLike[str]) -> list[Cell]:
    """Every method entry of every ``results.json`` under ``run_dir`` (sorted by path).

    Files that are not valid JSON or not in the results schema are skipped with a warning (a
    sweep may still be running); a method entry missing required keys is skipped likewise.

    Raises:
        LondiError: ``run_dir`` is not a directory.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise LondiError(f"run directory {str(root)!r} does not exist or is not a directory")
    cells: list[Cell] = []
    for path in sorted(root.rglob(RESULTS_NAME)):
        try:
            results = _read_json(path)
        except (OSError, json.JSONDecodeError) as exc:
            logger.warning("skipping %s: cannot read it as JSON (%s)", path, exc)
            continue
        if not isinstance(results, Mapping) or not isinstance(results.get("methods"), Mapping):
            logger.warning("skipping %s: no 'methods' object (not a LONDI results file)", path)
            continue
        if results.get("valid") is False:
            logger.warning("skipping %s: marked invalid (%s)", path, results.get("error", "the run stopped"))
            continue
        file_config: dict[str, Any] = {}
        config_path = path.with_name(CONFIG_NAME)
        if config_path.is_file():
            try:
                loaded = _read_json(config_path)
                if isinstance(loaded, Mapping):
                    file_config = dict(loaded)
                else:
                    logger.warning("ignoring %s: not a JSON object", config_path)
            except (OSError, json.JSONDecodeError) as exc:
                logger.warning("ignoring %s: cannot read it as JSON (%s)", config_path, exc)
        env = str(results.get("env", "unknown"))
        for method, entry in results["methods"].items():
            why = _valid_entry(entry)
            if why is not None:
                logger.warning("skipping method %r in %s: %s", method, path, why)
                continue
            flat: dict[str, Any] = {}
            cfg_method = file_config.get("method")
            # A shared config.json that names another method says nothing about this one's
            # parameters (e.g. a demo's config next to the baselines' entries).
            if cfg_method is None or _normalize(cfg_method) == _normalize(method):
                flat.update(_flatten(file_config))
            # Parameters the evaluation loop records on the entry itself (e.g. "budget").
            flat.update({k: entry[k] for k in (*PARAM_KEYS, "seed") if entry.get(k) is not None})
            if isinstance(entry.get("config"), Mapping):
                flat.update(_flatten(entry["config"]))
            seed = _lookup(flat, "seed")
            if seed is None:
                seed = entry.get("seed", results.get("seed"))
            cells.append(
                Cell(
                    env=env,
                    method=str(method),
                    seed=int(seed) if seed is not None else None,
                    params={k: _lookup(flat, k) for k in PARAM_KEYS},
                    entry=dict(entry),
                    episodes=_entry_episodes(entry, results),
                    path=path,
                    oracle=bool(entry.get("oracle", False)),
                )
            )
    return cells


# --------------------------------------------------------------------------------------------
# Pooling cells into curve points
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _num(value: Any, fmt: str = ".3f") -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "n/a"
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return format(v, fmt)


def _with_ci(value: Any, ci: Any) -> str:
    text = _num(value)
    if isinstance(ci, Sequence) and len(ci) == 2 and _num(ci[0]) != "n/a" and _num(ci[1]) != "n/a":
        text += f" [{_num(ci[0])}, {_num(ci[1])}]"
    return text


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


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


def _env_section(
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
        by_method[_normalize(c.method)].append(c)
    q_key = _normalize(quick_method)
    d_key = _normalize(deepthink_method)
    o_key = _normalize(oracle_method)
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

    def display(method: str) -> str:
        # The hindsight oracle reads the expert's actions: always say so.
        key = _normalize(method)
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


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def _section_markdown(
    section: Mapping[str, Any], *, metric: str, plots: Sequence[tuple[str, str]]
) -> list[str]:
    lines = [f"## {section['env']}", ""]
    header = [
        "method",
        "param",
        "seeds",
        "episodes",
        "success [95% CI]",
        "return [95% CI]",
        "DEEPTHINK call frac",
        "DEEPTHINK calls/episode",
        "device-s/episode",
        "compute saving",
        f"PGR ({metric})",
        "oracle ratio",
    ]
    body = [
        [
            r["method"],
            r["param"],
            str(len(r["seeds"])),
            str(r["episodes"]),
            _with_ci(r["success"], r["success_ci"]),
            _with_ci(r["return"], r["return_ci"]),
            _num(r["deepthink_call_frac"]),
            _num(r["deepthink_calls_per_episode"], ".2f"),
            _num(r["device_seconds"]["total"], ".4g"),
            _num(r["compute_saving"]),
            _num(r["pgr"]),
            _num(r["oracle_ratio"], ".2f"),
        ]
        for r in section["rows"]
    ]
    lines += _markdown_table(header, body)
    lines += ["", "Device-seconds per episode by model:", ""]
    lines += _markdown_table(
        ["method", "param", *ROLES, "total"],
        [
            [r["method"], r["param"], *(_num(r["device_seconds"][k], ".4g") for k in (*ROLES, "total"))]
            for r in section["rows"]
        ],
    )
    if section["curves"]:
        ref = section["reference"]
        lines += [
            "",
            f"Curve metrics over the DEEPTHINK call fraction ({metric}; "
            f"{ref['quick_method'] or 'always-QUICK'} = {_num(ref[f'quick_{metric}'])}, "
            f"{ref['deepthink_method'] or 'always-DEEPTHINK'} = {_num(ref[f'deepthink_{metric}'])}):",
            "",
        ]
        lines += _markdown_table(
            ["method", "points", "APGR", *(f"CPT({round(lv * 100)}%)" for lv in CPT_LEVELS)],
            [
                [
                    c["method"],
                    str(c["points"]),
                    _num(c["apgr"]),
                    *(_num(c[f"cpt_{round(lv * 100)}"]) for lv in CPT_LEVELS),
                ]
                for c in section["curves"]
            ],
        )
    if section["notes"]:
        lines += ["", *(f"- Note: {n}" for n in section["notes"])]
    lines.append("")
    for title, name in plots:
        lines += [f"![{title}]({name})", ""]
    return lines


# --------------------------------------------------------------------------------------------
# Plots and files
# --------------------------------------------------------------------------------------------




def _plot(
    section: Mapping[str, Any], *, metric: str, x_key: str, x_label: str, path: Path
) -> None:
    """One PNG: every method's points (perf against ``x_key``) with CI error bars."""
    # The object-oriented API with the Agg canvas leaves pyplot's global backend untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in section["rows"]:
        by_method[r["method"]].append(r)
    for method, rows in by_method.items():
        xs = np.array(
            [r["device_seconds"]["total"] if x_key == "device_seconds" else r[x_key] for r in rows],
            dtype=float,
        )
        ys = np.array([r[metric] for r in rows], dtype=float)
        ci = np.array([r[f"{metric}_ci"] for r in rows], dtype=float).reshape(-1, 2)
        keep = np.isfinite(xs) & np.isfinite(ys)
        if not keep.any():
            continue
        xs, ys, ci = xs[keep], ys[keep], ci[keep]
        order = np.argsort(xs, kind="stable")
        xs, ys, ci = xs[order], ys[order], ci[order]
        # Error bars are distances from the mean; a missing CI draws no bar.
        lower = np.where(np.isfinite(ci[:, 0]), np.maximum(ys - ci[:, 0], 0.0), 0.0)
        upper = np.where(np.isfinite(ci[:, 1]), np.maximum(ci[:, 1] - ys, 0.0), 0.0)
        ax.errorbar(
            xs, ys, yerr=np.vstack([lower, upper]), marker="o", capsize=3,
            linestyle="-" if len(xs) > 1 else "none", label=method,
        )
    ref = section["reference"]
    # Dashed levels of the two ends of the curve, as in RouteLLM's plots.
    for key, color in (("quick", "grey"), ("deepthink", "red")):
        level = ref.get(f"{key}_{metric}")
        if ref.get(f"{key}_method") and level is not None and math.isfinite(level):
            ax.axhline(level, color=color, linestyle="--", linewidth=0.8, alpha=0.6)
    ax.set_xlabel(x_label)
    ax.set_ylabel("success rate" if metric == "success" else "mean return")
    ax.set_title(str(section["env"]))
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "env"


def write_report(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    metric: str = "success",
    quick_method: str = "always_quick",
    deepthink_method: str = "always_deepthink",
    oracle_method: str = "oracle",
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Path:
    """Write ``report.md``, ``report.json`` and the PNG plots for the results under ``run_dir``.

    Args:
        run_dir: a run or sweep folder; every ``results.json`` below it is read.
        out_dir: where to write (default: ``run_dir``); created if needed.
        metric: the performance measure for PGR, APGR, CPT and the plots' y axis, one of
            :data:`METRICS`.
        quick_method, deepthink_method: the names of the always-QUICK and always-DEEPTHINK
            baselines (compared case-insensitively, ``-`` and ``_`` alike).
        oracle_method: the name of the hindsight **oracle** method, for the oracle ratio.
        seed: seeds the bootstrap of pooled cells.
        n_resamples: bootstrap resamples for pooled cells.

    Returns:
        The path of ``report.md``.

    Raises:
        UnknownChoiceError: ``metric`` is not one of :data:`METRICS`.
        LondiError: ``run_dir`` is missing or holds no readable ``results.json``.
    """
    check_choice("metric", metric, METRICS)
    root = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else root
    cells = load_cells(root)
    if not cells:
        raise LondiError(f"no readable {RESULTS_NAME} under {str(root)!r}")
    by_env: dict[str, list[Cell]] = defaultdict(list)
    for c in cells:
        by_env[c.env].append(c)
    n_files = len({c.path for c in cells})
    lines = [
        f"# LONDI report: {root.resolve().name}",
        "",
        f"{n_files} results file(s) under `{root}`; performance measure for PGR, APGR and CPT: "
        f"{metric}. Confidence intervals are 95% percentile bootstraps over episodes; cells of the "
        "same method and parameters at different seeds are pooled (episodes pooled across seeds). "
        "DEEPTHINK call frac = total DEEPTHINK calls / total steps; device-seconds include the "
        "switch's own feature cost; compute saving = 1 - device-seconds / "
        f"{deepthink_method}'s; oracle ratio = DEEPTHINK calls / the hindsight oracle's calls at the "
        f"same success (oracle interpolated between {quick_method} and its own point).",
        "",
    ]
    sections = []
    suffix_needed = len(by_env) > 1
    for env in sorted(by_env):
        section = _env_section(
            env,
            by_env[env],
            metric=metric,
            quick_method=quick_method,
            deepthink_method=deepthink_method,
            oracle_method=oracle_method,
            seed=seed,
            n_resamples=n_resamples,
        )
        suffix = f"__{_slug(env)}" if suffix_needed else ""
        plots = [
            (f"{metric} vs DEEPTHINK call fraction", f"{metric}_vs_call_frac{suffix}.png"),
            (f"{metric} vs device-seconds per episode", f"{metric}_vs_device_seconds{suffix}.png"),
        ]
        _plot(section, metric=metric, x_key="deepthink_call_frac",
              x_label="DEEPTHINK call fraction (calls / steps)", path=out / plots[0][1])
        _plot(section, metric=metric, x_key="device_seconds",
              x_label="device-seconds per episode (QUICK + DEEPTHINK + switch)", path=out / plots[1][1])
        section["plots"] = [name for _, name in plots]
        lines += _section_markdown(section, metric=metric, plots=plots)
        sections.append(section)
    report_path = out / REPORT_NAME
    atomic_write_text(
        out / REPORT_JSON_NAME,
        json.dumps(
            _json_safe({"run_dir": str(root), "metric": metric, "envs": sections}),
            indent=2,
            allow_nan=False,
        ),
    )
    atomic_write_text(report_path, "\n".join(lines))
    logger.info("wrote %s (%d cells, %d env(s))", report_path, len(cells), len(by_env))
    return report_path


__all__ = [
    "CPT_LEVELS",
    "METRICS",
    "PARAM_KEYS",
    "Cell",
    "Point",
    "build_points",
    "load_cells",
    "write_report",
]
