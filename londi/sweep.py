"""``londi sweep CONFIG --out DIR``: run a grid of methods x parameters x seeds, resumably.

Each cell of the grid (one method, one parameter setting, one run seed) is evaluated on the
held-out episodes of its seed (:func:`londi.evaluate.heldout_seeds`) and writes
``DIR/cells/<method>__<params>__seed<k>/config.json`` (the resolved cell config, first) and
``results.json`` (last), both atomically. A cell whose ``results.json`` exists is finished and
never run again, so a sweep that was stopped (Ctrl-C, a crash, ``--max-cells``) is continued
by running the same command. LONDI cells train their switch into the cell folder
(``switch/``), which :func:`londi.train.train_switch` resumes from its last checkpoint. Cells
run in ``--workers`` processes (default 2; 1 runs them in this process); a cell that fails
writes ``error.txt`` and the others go on. At the end ``londi report`` is written to ``DIR``.

Config file (JSON)
------------------
Every method of a sweep uses the same env, LM pair, episodes and seeds (top-level keys only)::

    {
      "name": "cost_sweep",                     # optional, default: the file's stem
      "description": "free text",               # optional
      "env": "londi/BabyAIText-GoToLocal-v0",   # default: the default env
      "quick": "quick-dagger",                  # QUICK: shipped name or checkpoint folder (default: the default pair's)
      "deepthink": "deepthink-dagger",          # DEEPTHINK: likewise
      "policy_factory": null,                   # optional "module:function" building the pair:
                                                #   function(quick, deepthink) -> (QUICK, DEEPTHINK)
      "episodes": 200,                          # held-out episodes per cell
      "seeds": [0, 1, 2],                       # run seeds (or a count n for 0..n-1)
      "calibration_episodes": 20,               # baselines calibrated to a rate (optional)
      "train": {"steps": 8000},                 # TrainConfig fields for every LONDI cell
      "report": true,                           # write the report at the end
      "grid": [                                 # one entry per method (or method variant)
        {"method": "londi", "cost": [0.0, 0.01, 0.05]},
        {"method": "londi", "name": "londi-bow", "features": "bow", "cost": 0.02},
        {"method": "random", "rate": [0.1, 0.3], "budget": 4},
        {"method": "heuristic", "params": {"deepthink_steps": 2}},
        {"method": "always-quick"}
      ]
    }

A grid entry has ``method`` (one of :data:`METHODS`), an optional ``name`` (the label in
results and plots, and the cell folder prefix; default the method, or ``method-features`` when
``features`` is set) and the method's options. The swept options, each a number or a list of
numbers (the entry's cells are their Cartesian product), are ``cost`` (LONDI's per-call cost,
>= 0), ``budget`` (hard cap B on DEEPTHINK calls per episode, an integer >= 0; LONDI-B for
``londi``), ``cost_limit`` (LONDI's Lagrangian limit L on expected calls per episode, >= 0),
``rate`` (target call rate in [0, 1] of ``random``, ``uncertainty``, ``router``,
``task-router``, and of ``londi``, whose trained switch then acts at the cost weight calibrated
to it, see :mod:`londi.calibrated`) and ``threshold`` (a fixed threshold of
``uncertainty``/``router``). Fixed options are ``features`` (LONDI's switch features: quick,
choice, goal, bow, minilm, oracle (an oracle, see :mod:`londi.features`) or a ``+``
combination), ``calibrate`` (``londi`` with a ``cost_limit``: calibrate the weight to the limit
after training, the default, or keep the trained ``c + lambda`` with ``false``), ``train`` (TrainConfig overrides for this entry's LONDI cells) and ``params``
(rule options of a baseline, see :data:`londi.baselines.PARAMS`). :func:`method_keys` lists
which keys each method takes; anything else is rejected with a message naming the valid keys.
"""
from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import pickle
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from londi.agents.lm import DEFAULT_DEEPTHINK, DEFAULT_QUICK
from londi.errors import ConfigError, LondiError, UnknownChoiceError

logger = logging.getLogger(__name__)

#: Methods a grid entry may name: the core ones of ``londi eval`` and the baselines.
CORE_METHODS: tuple[str, ...] = ("londi", "always-quick", "always-deepthink", "expert")
#: Options that a grid entry may sweep (a number or a list of numbers), in cell-name order.
SWEEP_KEYS: tuple[str, ...] = ("budget", "cost_limit", "cost", "rate", "threshold")
#: A LONDI cell's trained switch, inside its cell folder (shared by cells with the same training config).
SWITCH_DIR = "switch"
#: Top-level keys of a sweep config.
TOP_KEYS: tuple[str, ...] = ("name", "description", "env", "quick", "deepthink", "policy_factory", "episodes",
                             "seeds", "calibration_episodes", "train", "report", "grid")
#: TrainConfig fields that the sweep sets itself (from the top level or the grid), not ``train``.
RESERVED_TRAIN_KEYS: tuple[str, ...] = ("env", "quick", "deepthink", "features", "cost", "budget", "cost_limit",
                                        "seed")

CELLS_DIR = "cells"
CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
ERROR_FILE = "error.txt"

PolicyFactory = Callable[[str, str], tuple[Any, Any]]


def method_keys() -> dict[str, tuple[str, ...]]:
    """The keys a grid entry may have, per method (``params`` where the baseline has options)."""
    from londi.baselines import PARAMS

    keys = {
        "londi": ("cost", "budget", "cost_limit", "rate", "calibrate", "features", "train"),
        "always-quick": ("budget",),
        "always-deepthink": ("budget",),
        "expert": (),
        "random": ("rate", "budget"),
        "periodic": ("rate", "budget"),
        "first-b": ("budget",),
        "heuristic": ("budget",),
        "uncertainty": ("rate", "threshold", "budget"),
        "router": ("rate", "threshold", "budget"),
        "task-router": ("rate", "budget"),
        "oracle": ("budget",),
    }
    return {m: ("method", "name", *k, *(("params",) if PARAMS.get(m) else ())) for m, k in keys.items()}


#: The methods a grid entry may name.
METHODS: tuple[str, ...] = CORE_METHODS + ("random", "periodic", "first-b", "heuristic", "uncertainty", "router",
                                           "task-router", "oracle")


# ------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class CellSpec:
    """One cell of a sweep: everything a worker process needs to run it."""

    sweep: str
    name: str
    method: str
    label: str
    seed: int
    env: str
    episodes: int
    quick: str
    deepthink: str
    policy_factory: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    """The cell's swept options (``cost``, ``budget``, ...) that are set."""
    features: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    calibration_episodes: int | None = None
    train: dict[str, Any] | None = None
    """The full TrainConfig of a LONDI cell."""

    def to_config(self) -> dict[str, Any]:
        """The resolved config written to the cell's ``config.json``."""
        out: dict[str, Any] = {
            "sweep": self.sweep, "cell": self.name, "method": self.label, "kind": self.method, "env": self.env,
            "seed": self.seed, "episodes": self.episodes, "quick": self.quick, "deepthink": self.deepthink,
            "policy_factory": self.policy_factory,
        }
        out.update(self.options)
        if self.features is not None:
            out["features"] = self.features
        if self.params:
            out["params"] = dict(self.params)
        if self.calibration_episodes is not None:
            out["calibration_episodes"] = self.calibration_episodes
        if self.train is not None:
            out["train"] = dict(self.train)
        return json.loads(json.dumps(out))


@dataclass
class SweepConfig:
    """A validated sweep config (see the module docstring for the file format)."""

    name: str
    env: str
    quick: str
    deepthink: str
    episodes: int
    seeds: list[int]
    grid: list[dict[str, Any]]
    description: str = ""
    policy_factory: str | None = None
    calibration_episodes: int | None = None
    train: dict[str, Any] = field(default_factory=dict)
    report: bool = True
    cells: list[CellSpec] = field(default_factory=list)


def _where(i: int, entry: Mapping[str, Any]) -> str:
    return f"grid[{i}] (method {entry.get('method')!r})"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_value(key: str, value: Any, where: str) -> Any:
    if key == "budget":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}: budget must be a non-negative integer, got {value!r}")
        return value
    if not _is_number(value):
        raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")
    if key in ("cost", "cost_limit") and value < 0:
        raise ConfigError(f"{where}: {key} must be >= 0, got {value!r}")
    if key == "rate" and not 0 <= value <= 1:
        raise ConfigError(f"{where}: rate must be in [0, 1], got {value!r}")
    return value


def _format_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _safe_label(label: Any, where: str) -> str:
    if not isinstance(label, str) or not label or any(not (c.isalnum() or c in "-_.+") for c in label) \
            or "__" in label or label.startswith("."):
        raise ConfigError(f"{where}: name must be a non-empty string of letters, digits and '-_.+' "
                          f"(no '__', not starting with '.'), got {label!r}")
    return label


def _check_train(train: Any, where: str) -> dict[str, Any]:
    from londi.train import TrainConfig

    if not isinstance(train, Mapping):
        raise ConfigError(f"{where} must be an object of TrainConfig fields, got {train!r}")
    allowed = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in RESERVED_TRAIN_KEYS]
    for key in train:
        if key in RESERVED_TRAIN_KEYS:
            raise ConfigError(f"{where}.{key} is set by the sweep; put {key!r} "
                              + ("at the top level" if key in ("env", "quick", "deepthink") else
                                 "in the grid entry" if key != "seed" else "in 'seeds'"))
        if key not in allowed:
            raise UnknownChoiceError(f"{where} option", key, allowed)
    return dict(train)


def load_config(source: str | os.PathLike[str] | Mapping[str, Any], *, name: str | None = None) -> SweepConfig:
    """Read and validate a sweep config (a JSON file or an already-parsed dict) and list its cells.

    Raises:
        LondiError: the file is missing, unreadable or not JSON.
        UnknownChoiceError: an unknown key, method, env id or feature encoder (the message names
            the valid choices).
        ConfigError: a value out of range (negative cost or budget, a rate outside [0, 1], ...),
            a method without a required option, or two grid entries giving the same cell.
    """
    from londi.baselines import PARAMS
    from londi.envs import DEFAULT_ENV_ID, env_ids
    from londi.evaluate import SEED_STRIDE
    from londi.train import TrainConfig

    if isinstance(source, Mapping):
        data = dict(source)
        default_name = name or "sweep"
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise LondiError(f"sweep config {str(path)!r} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise LondiError(f"sweep config {str(path)!r} is unreadable: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LondiError(f"sweep config {str(path)!r} is not valid JSON: {exc}") from None
        default_name = name or path.stem
    if not isinstance(data, dict):
        raise ConfigError("a sweep config must be a JSON object with a 'grid' list")
    for key in data:
        if key not in TOP_KEYS:
            raise UnknownChoiceError("sweep config key", str(key), TOP_KEYS)
    if "grid" not in data:
        raise ConfigError("the sweep config has no 'grid': a list of {\"method\": ...} entries")
    sweep_name = _safe_label(data.get("name", default_name), "name")
    env = data.get("env", DEFAULT_ENV_ID)
    ids = env_ids()
    if env not in ids:
        raise UnknownChoiceError("env id", str(env), ids)
    quick, deepthink = data.get("quick", DEFAULT_QUICK), data.get("deepthink", DEFAULT_DEEPTHINK)
    for key, value in (("quick", quick), ("deepthink", deepthink)):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key} must be a model name or checkpoint folder, got {value!r}")
    factory = data.get("policy_factory")
    if factory is not None and (not isinstance(factory, str) or factory.count(":") != 1):
        raise ConfigError(f"policy_factory must be 'module:function', got {factory!r}")
    episodes = data.get("episodes", 200)
    if isinstance(episodes, bool) or not isinstance(episodes, int) or not 0 < episodes <= SEED_STRIDE:
        raise ConfigError(f"episodes must be an integer in [1, {SEED_STRIDE}], got {episodes!r}")
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds <= 0:
            raise ConfigError(f"seeds must be a positive count or a list of seeds, got {seeds!r}")
        seeds = list(range(seeds))
    if not isinstance(seeds, list) or not seeds or any(
            isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 10_000 for s in seeds):
        raise ConfigError(f"seeds must be a non-empty list of integers in [0, 10000), got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds has duplicates: {seeds}")
    n_cal = data.get("calibration_episodes")
    if n_cal is not None and (isinstance(n_cal, bool) or not isinstance(n_cal, int) or n_cal <= 0):
        raise ConfigError(f"calibration_episodes must be a positive integer, got {n_cal!r}")
    train = _check_train(data.get("train", {}), "train")
    report = data.get("report", True)
    if not isinstance(report, bool):
        raise ConfigError(f"report must be true or false, got {report!r}")
    grid = data["grid"]
    if not isinstance(grid, list) or not grid:
        raise ConfigError("grid must be a non-empty list of {\"method\": ...} entries")
    keys_by_method = method_keys()
    cells: list[CellSpec] = []
    seen: dict[str, str] = {}
    for i, entry in enumerate(grid):
        if not isinstance(entry, dict) or "method" not in entry:
            raise ConfigError(f"grid[{i}] must be an object with a 'method' key, got {entry!r}")
        method = entry["method"]
        if method not in METHODS:
            raise UnknownChoiceError("method", str(method), METHODS)
        where = _where(i, entry)
        valid_keys = keys_by_method[method]
        all_keys = set(itertools.chain.from_iterable(keys_by_method.values()))
        for key in entry:
            if key in valid_keys:
                continue
            if key in all_keys:
                raise ConfigError(f"{where}: {key!r} does not apply to {method}; its keys are: {', '.join(valid_keys)}")
            raise UnknownChoiceError(f"grid[{i}] key", str(key), valid_keys)
        features = entry.get("features")
        if features is not None and (not isinstance(features, str) or not features):
            raise ConfigError(f"{where}: features must be an encoder name such as 'quick', 'bow' or 'quick+bow'")
        label = entry.get("name") or (f"{method}-{features}" if features else method)
        label = _safe_label(label, where)
        params = entry.get("params", {})
        if not isinstance(params, dict):
            raise ConfigError(f"{where}: params must be an object of {method} options, got {params!r}")
        for key in params:
            if key not in PARAMS.get(method, ()):
                raise UnknownChoiceError(f"{method} option in grid[{i}].params", str(key), PARAMS.get(method, ()))
        entry_train = _check_train(entry.get("train", {}), f"grid[{i}].train")
        axes: list[tuple[str, list[Any]]] = []
        for key in SWEEP_KEYS:
            if key not in entry:
                continue
            values = entry[key] if isinstance(entry[key], list) else [entry[key]]
            if not values:
                raise ConfigError(f"{where}: {key} is an empty list")
            values = [_check_value(key, v, where) for v in values]
            if len(set(map(repr, values))) != len(values):
                raise ConfigError(f"{where}: {key} has duplicate values {values}")
            axes.append((key, values))
        if method == "first-b" and "budget" not in entry:
            raise ConfigError(f"{where}: first-b needs 'budget' (DEEPTHINK acts on the first B steps)")
        if method == "londi" and "budget" in entry and "cost_limit" in entry:
            raise ConfigError(f"{where}: use either a hard 'budget' (LONDI-B) or a 'cost_limit' (Lagrangian), "
                              "not both")
        calibrate = entry.get("calibrate", True)
        if not isinstance(calibrate, bool):
            raise ConfigError(f"{where}: calibrate must be true or false, got {calibrate!r}")
        for combo in itertools.product(*(values for _, values in axes)):
            options = {key: value for (key, _), value in zip(axes, combo)}
            if "calibrate" in entry:
                options["calibrate"] = calibrate
            param_str = "-".join(f"{k}{_format_value(options[k])}" for k in SWEEP_KEYS if k in options) or "default"
            for seed in seeds:
                cell_name = f"{label}__{param_str}__seed{seed}"
                if cell_name in seen:
                    raise ConfigError(f"{where} and {seen[cell_name]} both give the cell {cell_name!r}; "
                                      "give one of them another 'name'")
                seen[cell_name] = where
                train_cfg = None
                if method == "londi":
                    merged = {**train, **entry_train, "env": env, "quick": quick, "deepthink": deepthink,
                              "features": features or TrainConfig.features, "seed": seed,
                              **{k: options[k] for k in ("cost", "budget", "cost_limit") if k in options}}
                    try:
                        train_cfg = TrainConfig(**merged).validate().to_dict()
                    except (ConfigError, UnknownChoiceError) as exc:
                        raise ConfigError(f"{where}: {exc}") from None
                cells.append(CellSpec(
                    sweep=sweep_name, name=cell_name, method=method, label=label, seed=seed, env=env,
                    episodes=episodes, quick=quick, deepthink=deepthink, policy_factory=factory, options=options,
                    features=(features or TrainConfig.features) if method == "londi" else None, params=dict(params),
                    calibration_episodes=n_cal if method in ("uncertainty", "router", "londi") else None, train=train_cfg,
                ))
    return SweepConfig(name=sweep_name, env=env, quick=quick, deepthink=deepthink, episodes=episodes, seeds=seeds,
                       grid=grid, description=str(data.get("description", "")), policy_factory=factory,
                       calibration_episodes=n_cal, train=train, report=report, cells=cells)


# ------------------------------------------------------------------------------------ policies
def load_lm_pair(quick: str, deepthink: str) -> tuple[Any, Any]:
    """The default policy factory: :func:`londi.agents.lm.load_policy` for both names."""
    from londi.agents.lm import load_policy

    return load_policy(quick), load_policy(deepthink)


def resolve_policy_factory(spec: str | PolicyFactory | None) -> PolicyFactory:
    """A policy factory from ``"module:function"``, a callable, or ``None`` (the shipped loader)."""
    if spec is None:
        return load_lm_pair
    if callable(spec):
        return spec
    module_name, _, attr = str(spec).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LondiError(f"policy_factory {spec!r}: cannot import {module_name!r} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise LondiError(f"policy_factory {spec!r}: {module_name} has no callable {attr!r}")
    return factory


#: Policies already loaded in this process, per (factory, quick, deepthink).
_POLICY_CACHE: dict[tuple[Any, str, str], tuple[Any, Any]] = {}


def _policies(factory: PolicyFactory, quick: str, deepthink: str) -> tuple[Any, Any]:
    key = (factory, quick, deepthink)
    if key not in _POLICY_CACHE:
        _POLICY_CACHE[key] = factory(quick, deepthink)
    return _POLICY_CACHE[key]


# ------------------------------------------------------------------------------------ one cell
def cell_dir(out: str | os.PathLike[str], cell: CellSpec) -> Path:
    return Path(out) / CELLS_DIR / cell.name


def is_finished(folder: Path) -> bool:
    """A cell is finished when its ``results.json`` exists and reads as a results file."""
    path = folder / RESULTS_FILE
    if not path.is_file():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return isinstance(data.get("methods"), dict) and data.get("valid", True) is not False
    except (OSError, ValueError, AttributeError):
        logger.warning("%s is unreadable; the cell will be run again", path)
        return False


def _trained_switch(cells_root: Path, config: Any) -> Path | None:
    """The ``switch`` folder of another cell whose finished training used exactly ``config``."""
    from londi.io import read_json
    from londi.train import CONFIG_FILE, MODEL_FILE, TrainConfig

    wanted = config.to_dict()
    for run_dir in sorted(cells_root.glob(f"*/{SWITCH_DIR}")):
        if not (run_dir / MODEL_FILE).is_file() or not (run_dir / CONFIG_FILE).is_file():
            continue
        try:
            if TrainConfig.from_dict(read_json(run_dir / CONFIG_FILE)).to_dict() == wanted:
                return run_dir
        except Exception:  # an unreadable or foreign config: not a match
            continue
    return None


def _build_method(cell: CellSpec, folder: Path, quick: Any, deepthink: Any) -> tuple[Any, dict[str, Any]]:
    from londi.evaluate import Method
    from londi.rules import AlwaysDeepthink, AlwaysQuick

    budget = cell.options.get("budget")
    extra: dict[str, Any] = {}
    if cell.method == "londi":
        from londi.train import TrainConfig, train_switch

        config = TrainConfig.from_dict(cell.train)
        shared = _trained_switch(folder.parent, config)
        if shared is not None and shared.parent != folder:
            # e.g. the same switch evaluated at its trained cost and at calibrated rates
            from londi.train import load_switch

            model, _ = load_switch(shared, quick=quick, deepthink=deepthink)
            extra["train"] = {"steps": config.steps, "wall_seconds": 0.0,
                              "run_dir": f"../{shared.parent.name}/{shared.name}", "shared": True}
            logger.info("%s: uses the switch trained by %s (same training config)", cell.name, shared.parent.name)
        else:
            t0 = time.perf_counter()
            model = train_switch(config, folder / SWITCH_DIR, quick=quick, deepthink=deepthink, progress=False)
            model.get_env().close()  # evaluation builds its own env; stop this one's simulator now
            extra["train"] = {"steps": config.steps, "wall_seconds": time.perf_counter() - t0,
                              "run_dir": SWITCH_DIR}
        from londi.calibrated import learned_switch_rule

        rule = learned_switch_rule(model, config, quick=quick, deepthink=deepthink, env_id=cell.env, seed=cell.seed,
                                   budget=budget, rate=cell.options.get("rate"),
                                   calibrate_limit=cell.options.get("calibrate", True),
                                   calibration_episodes=cell.calibration_episodes, name=cell.label)
        return Method(rule, quick, deepthink, budget), extra
    if cell.method == "expert":
        from londi.agents.expert import OracleExpert

        oracle = OracleExpert()
        return Method(AlwaysQuick(), oracle, oracle), extra
    if cell.method == "always-quick":
        return Method(AlwaysQuick(), quick, deepthink, budget), extra
    if cell.method == "always-deepthink":
        return Method(AlwaysDeepthink(), quick, deepthink, budget), extra
    from londi.baselines import make_baseline

    method = make_baseline(cell.method, quick=quick, deepthink=deepthink, env_id=cell.env, seed=cell.seed,
                           rate=cell.options.get("rate"), budget=budget, threshold=cell.options.get("threshold"),
                           calibration_episodes=cell.calibration_episodes, params=cell.params, progress=False)
    return method, extra


def run_cell(cell: CellSpec, out: str | os.PathLike[str], factory: str | PolicyFactory | None = None) -> dict[str, Any]:
    """Run one cell into ``out/cells/<name>/`` (config first, results last); returns a summary.

    A finished cell is not run again. ``factory`` overrides the config's ``policy_factory``.
    """
    from londi.evaluate import evaluate_methods
    from londi.io import atomic_write_json

    folder = cell_dir(out, cell)
    if is_finished(folder):
        return {"cell": cell.name, "status": "skipped"}
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / CONFIG_FILE, cell.to_config())
    if cell.method == "expert":  # the expert (an oracle) plays alone: no LM to load
        quick = deepthink = None
    else:
        quick, deepthink = _policies(resolve_policy_factory(factory if factory is not None else cell.policy_factory),
                                     cell.quick, cell.deepthink)
    method, extra = _build_method(cell, folder, quick, deepthink)
    t1 = time.perf_counter()
    results = evaluate_methods({cell.label: method}, env_id=cell.env, episodes=cell.episodes, seed=cell.seed,
                               progress=False, extra={"sweep": cell.sweep, "cell": cell.name})
    entry = results["methods"][cell.label]
    entry.update(extra)
    if cell.method not in CORE_METHODS:
        from londi.baselines import rule_offline_info

        entry.update(rule_offline_info(method.rule))  # after the evaluation: it counts heuristic triggers
    results["wall_seconds"] = {"build": t1 - t0, "eval": time.perf_counter() - t1, "total": time.perf_counter() - t0}
    atomic_write_json(folder / RESULTS_FILE, results)
    (folder / ERROR_FILE).unlink(missing_ok=True)
    return {"cell": cell.name, "status": "done", "success": entry["success"],
            "deepthink_call_frac": entry["deepthink_call_frac"], "wall_seconds": results["wall_seconds"]["total"]}


def _run_cell_guarded(cell: CellSpec, out: str, factory: Any) -> dict[str, Any]:
    """:func:`run_cell` that reports a failure instead of raising (it writes ``error.txt``)."""
    try:
        return run_cell(cell, out, factory)
    except Exception as exc:
        from londi.io import atomic_write_text

        text = "".join(traceback.format_exception(exc))
        try:
            atomic_write_text(cell_dir(out, cell) / ERROR_FILE, text)
        except OSError:
            pass
        return {"cell": cell.name, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def _init_worker(threads: int, level: int) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=level, format="%(levelname)s %(name)s [worker]: %(message)s")
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # torch is a dependency; this only keeps the worker alive without it
        pass


# ------------------------------------------------------------------------------------ the grid
@dataclass
class SweepSummary:
    """What :func:`run_sweep` did."""

    total: int
    skipped: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    remaining: list[str] = field(default_factory=list)
    report: Path | None = None

    @property
    def finished(self) -> bool:
        return not self.failed and not self.remaining


def _with_full_train(cell_config: dict[str, Any]) -> dict[str, Any]:
    """``cell_config`` with its ``train`` entry read as a :class:`~londi.train.TrainConfig`, so that
    a cell written before a TrainConfig field existed compares by what it ran (the field's
    meaning for old files, see ``TrainConfig.from_dict``)."""
    from londi.train import TrainConfig

    train = cell_config.get("train")
    if not isinstance(train, dict):
        return cell_config
    try:
        full = TrainConfig.from_dict(train).to_dict()
    except (LondiError, TypeError, ValueError):  # a foreign or broken entry: compared as written
        return cell_config
    return {**cell_config, "train": full}


def _check_existing(config: SweepConfig, out: Path) -> None:
    """Fail early if a cell folder holds a config that differs from this sweep's."""
    from londi.io import read_json

    for cell in config.cells:
        path = cell_dir(out, cell) / CONFIG_FILE
        if not path.is_file():
            continue
        saved = _with_full_train(read_json(path))
        new = _with_full_train(cell.to_config())
        if saved != new:
            keys = sorted(k for k in set(saved) | set(new) if saved.get(k) != new.get(k))
            raise ConfigError(f"{path.parent} was run with another config (differs in: {', '.join(keys)}); "
                              "use another --out folder, or delete that cell folder to rerun it")


def run_sweep(
    config: SweepConfig | str | os.PathLike[str] | Mapping[str, Any],
    out: str | os.PathLike[str],
    *,
    workers: int = 2,
    max_cells: int | None = None,
    policy_factory: str | PolicyFactory | None = None,
    progress: bool = True,
    report: bool | None = None,
) -> SweepSummary:
    """Run the unfinished cells of a sweep into ``out``; finished cells are skipped.

    Args:
        config: a :class:`SweepConfig`, a config file or a config dict.
        out: the sweep folder (cells go to ``out/cells/``).
        workers: processes running cells in parallel; 1 runs them in this process.
        max_cells: run at most this many unfinished cells, then stop (rerun to continue).
        policy_factory: overrides the config's ``policy_factory``: a callable
            ``(quick, deepthink) -> (QUICK, DEEPTHINK)`` (picklable, i.e. a module-level
            function, when ``workers > 1``) or ``"module:function"``.
        progress: show a progress bar over cells.
        report: write the report at the end (default: the config's ``report``).

    With ``workers > 1`` the cells run in spawned processes, so a script that calls this must
    guard its entry point with ``if __name__ == "__main__":`` (as for any ``multiprocessing``).
    Each cell's ``results.json`` holds the evaluation entry of its method, plus, for baselines,
    what the rule learned and the metered cost of its calibration/training episodes
    (``offline_cost``, kept apart from the evaluation's numbers) and, for LONDI cells, the
    training wall time (``train``).
    """
    from tqdm.auto import tqdm

    from londi.io import atomic_write_json

    if not isinstance(config, SweepConfig):
        config = load_config(config)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    if max_cells is not None and (isinstance(max_cells, bool) or not isinstance(max_cells, int) or max_cells < 0):
        raise ConfigError(f"max_cells must be a non-negative integer, got {max_cells!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_existing(config, out)
    factory = policy_factory if policy_factory is not None else config.policy_factory
    if isinstance(factory, str):
        resolve_policy_factory(factory)  # fail early on a bad import path
    elif factory is not None and workers > 1:
        try:
            pickle.dumps(factory)
        except Exception as exc:
            raise ConfigError(f"policy_factory must be a module-level function to run with workers > 1 ({exc}); "
                              "use workers=1") from None
    atomic_write_json(out / "sweep.json", {"name": config.name, "description": config.description,
                                           "env": config.env, "quick": config.quick, "deepthink": config.deepthink,
                                           "episodes": config.episodes, "seeds": config.seeds,
                                           "grid": config.grid, "cells": [c.name for c in config.cells]})
    summary = SweepSummary(total=len(config.cells))
    pending: list[CellSpec] = []
    for cell in config.cells:
        if is_finished(cell_dir(out, cell)):
            summary.skipped.append(cell.name)
        else:
            pending.append(cell)
    todo = pending if max_cells is None else pending[:max_cells]
    summary.remaining = [c.name for c in pending[len(todo):]]
    if summary.skipped:
        logger.info("%d of %d cells already finished; running %d", len(summary.skipped), summary.total, len(todo))
    bar = tqdm(total=summary.total, initial=len(summary.skipped), desc=f"sweep {config.name}", unit="cell",
               disable=not progress)

    def record(result: dict[str, Any]) -> None:
        bar.update(1)
        if result["status"] == "failed":
            summary.failed[result["cell"]] = result["error"]
            logger.error("cell %s failed: %s (see its %s)", result["cell"], result["error"], ERROR_FILE)
        else:
            summary.ran.append(result["cell"])

    try:
        if workers == 1 or len(todo) <= 1:
            for cell in todo:
                bar.set_postfix_str(cell.name, refresh=False)
                record(_run_cell_guarded(cell, str(out), factory))
        else:
            # the workers use this process's torch thread count (`londi --threads`), else share the cores
            torch = sys.modules.get("torch")
            threads = torch.get_num_threads() if torch is not None else max(1, (os.cpu_count() or 1) // workers)
            ctx = multiprocessing.get_context("spawn")  # fork is unsafe once torch has started threads
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx, initializer=_init_worker,
                                     initargs=(threads, logging.getLogger().level or logging.WARNING)) as pool:
                futures: dict[Future, CellSpec] = {pool.submit(_run_cell_guarded, c, str(out), factory): c
                                                   for c in todo}
                try:
                    not_done = set(futures)
                    while not_done:
                        done, not_done = wait(not_done, return_when=FIRST_COMPLETED)
                        for fut in done:
                            try:
                                record(fut.result())
                            except BrokenProcessPool as exc:
                                record({"cell": futures[fut].name, "status": "failed",
                                        "error": f"worker process died: {exc}"})
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        bar.close()
    if report if report is not None else config.report:
        summary.report = _write_report(out)
    return summary


def _write_report(out: Path) -> Path | None:
    from londi.report import write_report

    try:
        return write_report(out)
    except LondiError as exc:
        logger.warning("no report written: %s", exc)
        return None


__all__ = [
    "CORE_METHODS",
    "METHODS",
    "SWEEP_KEYS",
    "TOP_KEYS",
    "CellSpec",
    "SweepConfig",
    "SweepSummary",
    "load_config",
    "load_lm_pair",
    "method_keys",
    "resolve_policy_factory",
    "run_cell",
    "run_sweep",
]
