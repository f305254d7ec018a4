"""Sweep configs for ``londi sweep``: the JSON schema, its validation, and the cells it lists.

:func:`load_config` reads a config file (or dict), rejects anything it cannot run with a message
naming the valid choices, and expands the grid into :class:`CellSpec` s, one per method x
parameter setting x seed. Running them is :mod:`londi.evaluation.sweep`'s job; this module only
decides *what* runs, so a config can be checked (``londi sweep --dry-run``) without loading a
model.

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

A grid entry has ``method`` (one of :data:`METHODS`, the registry's), an optional ``name`` (the label in
results and plots, and the cell folder prefix; default the method, or ``method-features`` when
``features`` is set) and the method's options. The swept options, each a number or a list of
numbers (the entry's cells are their Cartesian product), are ``cost`` (LONDI's per-call cost,
>= 0), ``budget`` (hard cap B on DEEPTHINK calls per episode, an integer >= 0; LONDI-B for
``londi``), ``cost_limit`` (LONDI's Lagrangian limit L on expected calls per episode, >= 0),
``rate`` (target call rate in [0, 1] of ``random``, ``uncertainty``, ``router``,
``task-router``, and of ``londi``, whose trained switch then acts at the cost weight calibrated
to it, see :mod:`londi.rules.calibrated`) and ``threshold`` (a fixed threshold of
``uncertainty``/``router``). Fixed options are ``features`` (LONDI's switch features: quick,
choice, goal, bow, minilm, oracle (an oracle, see :mod:`londi.switch.features`) or a ``+``
combination), ``calibrate`` (``londi`` with a ``cost_limit``: calibrate the weight to the limit
after training, the default, or keep the trained ``c + lambda`` with ``false``), ``train`` (TrainConfig overrides for this entry's LONDI cells) and ``params``
(rule options of a baseline, see :data:`londi.evaluation.registry.METHODS`). :func:`method_keys` lists
which keys each method takes; anything else is rejected with a message naming the valid keys.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from londi.agents.checkpoints import default_pair
from londi.core.errors import ConfigError, LondiError, UnknownChoiceError
from londi.core.seeds import SEED_STRIDE
from londi.envs import DEFAULT_ENV_ID, env_ids
from londi.evaluation.registry import METHODS as METHOD_SPECS
from londi.evaluation.registry import method_names
from londi.learn.train import TrainConfig

#: Methods a grid entry may name: the core ones of ``londi eval`` and the baselines.
CORE_METHODS: tuple[str, ...] = ("londi", "always-quick", "always-deepthink", "expert")

#: Options that a grid entry may sweep (a number or a list of numbers), in cell-name order.
SWEEP_KEYS: tuple[str, ...] = ("budget", "cost_limit", "cost", "rate", "threshold")

#: Top-level keys of a sweep config.
TOP_KEYS: tuple[str, ...] = ("name", "description", "env", "quick", "deepthink", "policy_factory", "episodes",
                             "seeds", "calibration_episodes", "train", "report", "grid")

#: TrainConfig fields that the sweep sets itself (from the top level or the grid), not ``train``.
RESERVED_TRAIN_KEYS: tuple[str, ...] = ("env", "quick", "deepthink", "features", "cost", "budget", "cost_limit",
                                        "seed")


#: Grid keys of ``londi`` besides its registry options: the sweep trains its switch.
LONDI_TRAIN_KEYS: tuple[str, ...] = ("cost_limit", "features", "train")


def method_keys() -> dict[str, tuple[str, ...]]:
    """The keys a grid entry may have, per method: its run options that a grid sets (the swept
    options and ``calibrate``, from :mod:`londi.evaluation.registry`), ``londi``'s training keys,
    and ``params`` where the method has rule options."""
    grid_keys = (*SWEEP_KEYS, "calibrate")
    out: dict[str, tuple[str, ...]] = {}
    for name, spec in METHOD_SPECS.items():
        keys = [o for o in spec.run_options if o in grid_keys]
        if name == "londi":
            keys += LONDI_TRAIN_KEYS
        out[name] = ("method", "name", *keys, *(("params",) if spec.params else ()))
    return out


#: The methods a grid entry may name (the registry's).
METHODS: tuple[str, ...] = tuple(method_names())


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
    default_quick, default_deepthink = default_pair(env)
    quick, deepthink = data.get("quick", default_quick), data.get("deepthink", default_deepthink)
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
            isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"seeds must be a non-empty list of non-negative integers (run seeds, as --seed), got {seeds!r}")
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
        if method not in METHOD_SPECS:
            raise UnknownChoiceError("method", str(method), method_names())
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
            if key not in METHOD_SPECS[method].params:
                raise UnknownChoiceError(f"{method} option in grid[{i}].params", str(key), METHOD_SPECS[method].params)
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
                    calibration_episodes=n_cal if "calibration_episodes" in METHOD_SPECS[method].run_options else None, train=train_cfg,
                ))
    return SweepConfig(name=sweep_name, env=env, quick=quick, deepthink=deepthink, episodes=episodes, seeds=seeds,
                       grid=grid, description=str(data.get("description", "")), policy_factory=factory,
                       calibration_episodes=n_cal, train=train, report=report, cells=cells)


__all__ = [
    "CORE_METHODS",
    "METHODS",
    "RESERVED_TRAIN_KEYS",
    "SWEEP_KEYS",
    "TOP_KEYS",
    "CellSpec",
    "SweepConfig",
    "load_config",
    "method_keys",
]
