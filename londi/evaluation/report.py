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
   are pooled and re-bootstrapped (:func:`londi.evaluation.metrics.summarize_seeds`); without them the
   means are weighted by episodes, the success CI is bootstrapped from the success counts (the
   per-episode successes are recoverable from the rate), and the return CI is left out
   (``n/a``) because it cannot be recovered;
3. writes ``report.md`` (one section per env: a table per point, device-seconds by model, and
   APGR / CPT per method where always-QUICK and always-DEEPTHINK runs are present),
   ``report.json`` (the same numbers, machine-readable) and two PNG plots per env: performance
   against DEEPTHINK call fraction and against device-seconds per episode, with CI error bars.

Every file is written to a temporary name and moved into place (``os.replace``), so an
interrupted report never leaves a truncated file.

This module reads the files (:func:`load_cells`), renders the tables and writes the report;
pooling and the curve numbers are in :mod:`londi.evaluation.curves`, the PNG figures in
:mod:`londi.evaluation.plots`. :class:`Cell`, :class:`Point`, :func:`build_points`,
:data:`PARAM_KEYS` and :data:`CPT_LEVELS` are re-exported here.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from londi.core.errors import LondiError, check_choice
from londi.core.io import atomic_write_text
from londi.evaluation.curves import CPT_LEVELS, PARAM_KEYS, Cell, Point, build_points, env_section, normalize_method
from londi.evaluation.metrics import DEFAULT_RESAMPLES, ROLES
from londi.evaluation.plots import write_section_plots

logger = logging.getLogger(__name__)

#: Performance measures the report can put on the y axis and into PGR.
METRICS: tuple[str, ...] = ("success", "return")

RESULTS_NAME = "results.json"
CONFIG_NAME = "config.json"
REPORT_NAME = "report.md"
REPORT_JSON_NAME = "report.json"


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


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
            if cfg_method is None or normalize_method(cfg_method) == normalize_method(method):
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


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def _per_seed_markdown(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each row seed by seed against always-DEEPTHINK's same seed, with the levels of a mixed
    env; nothing when every row is one cell of one level."""
    levels = sorted({name for r in rows for s in r.get("per_seed", []) for name in s["per_level"]})
    if not levels and all(len(r.get("per_seed", [])) <= 1 for r in rows):
        return []
    header = ["method", "param", "seed", "success", "÷ always-DEEPTHINK", "DEEPTHINK call frac",
              "calls/episode", "device-s/episode", "device ÷ always-DEEPTHINK",
              *(f"{name} success (call frac)" for name in levels)]
    body = []
    for r in rows:
        for s in r.get("per_seed", []):
            per_level = [
                f"{_num(s['per_level'][n]['success'])} ({_num(s['per_level'][n]['deepthink_call_frac'], '.2f')})"
                if n in s["per_level"] else "n/a" for n in levels
            ]
            body.append([r["method"], r["param"], "-" if s["seed"] is None else str(s["seed"]), _num(s["success"]),
                         _num(s["success_ratio"]), _num(s["deepthink_call_frac"]),
                         _num(s["deepthink_calls_per_episode"], ".2f"), _num(s["device_seconds"], ".4g"),
                         _num(s["device_ratio"], ".2f"), *per_level])
    return ["", "Seed by seed (each against always-DEEPTHINK on the same seed):", "", *_markdown_table(header, body)]


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
    lines += _per_seed_markdown(section["rows"])
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
# Files
# --------------------------------------------------------------------------------------------


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
        section = env_section(
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
        plots = write_section_plots(section, metric=metric, out=out, suffix=suffix)
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
