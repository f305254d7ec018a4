"""One cell of a sweep: its folder, its policies, running it and recording its failure.

Shared by the executors of :mod:`londi.evaluation.sweep` (the local process pool) and
:mod:`londi.evaluation.executors` (Ray tasks), so that a cell runs the same way whichever runs it.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from londi.agents.lm import load_policy
from londi.core.errors import LondiError
from londi.core.io import atomic_write_json, atomic_write_text, read_json
from londi.evaluation.loop import evaluate_methods
from londi.evaluation.registry import build_method
from londi.evaluation.sweep_config import CellSpec
from londi.learn.callbacks import CONFIG_FILE as RUN_CONFIG_FILE
from londi.learn.callbacks import MODEL_FILE
from londi.learn.train import TrainConfig, load_switch, train_switch

logger = logging.getLogger(__name__)

#: A LONDI cell's trained switch, inside its cell folder (shared by cells with the same training config).
SWITCH_DIR = "switch"

CELLS_DIR = "cells"
CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
ERROR_FILE = "error.txt"


PolicyFactory = Callable[[str, str], tuple[Any, Any]]


# ------------------------------------------------------------------------------------ policies
def load_lm_pair(quick: str, deepthink: str) -> tuple[Any, Any]:
    """The default policy factory: :func:`londi.agents.lm.load_policy` for both names."""

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

    wanted = config.to_dict()
    for run_dir in sorted(cells_root.glob(f"*/{SWITCH_DIR}")):
        if not (run_dir / MODEL_FILE).is_file() or not (run_dir / RUN_CONFIG_FILE).is_file():
            continue
        try:
            if TrainConfig.from_dict(read_json(run_dir / RUN_CONFIG_FILE)).to_dict() == wanted:
                return run_dir
        except Exception:  # an unreadable or foreign config: not a match
            continue
    return None


def _build_method(cell: CellSpec, folder: Path, quick: Any, deepthink: Any) -> tuple[Any, dict[str, Any]]:
    """The cell's method, built by the registry; a LONDI cell's switch is trained first (or taken
    from another cell trained with the same config). Returns the method and the entries its
    ``results.json`` adds (``train``)."""
    options: dict[str, Any] = {"seed": cell.seed, "calibration_episodes": cell.calibration_episodes,
                               **cell.options, **cell.params}
    extra: dict[str, Any] = {}
    if cell.method == "londi":
        config = TrainConfig.from_dict(cell.train)
        shared = _trained_switch(folder.parent, config)
        if shared is not None and shared.parent != folder:
            # e.g. the same switch evaluated at its trained cost and at calibrated rates
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
        for key in ("cost", "cost_limit"):  # training settings, in the switch's config already
            options.pop(key, None)
        # the rule's name keys its calibration seeds: the cell's label
        options.update(switch=(model, config), name=cell.label)
    method = build_method(cell.method, quick=quick, deepthink=deepthink, env_id=cell.env, progress=False, **options)
    return method, extra


def run_cell(cell: CellSpec, out: str | os.PathLike[str], factory: str | PolicyFactory | None = None) -> dict[str, Any]:
    """Run one cell into ``out/cells/<name>/`` (config first, results last); returns a summary.

    A finished cell is not run again. ``factory`` overrides the config's ``policy_factory``.
    """

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
    entry.update(extra)  # the rule's info() is in the entry already (evaluate_methods reads it after the evaluation)
    results["wall_seconds"] = {"build": t1 - t0, "eval": time.perf_counter() - t1, "total": time.perf_counter() - t0}
    atomic_write_json(folder / RESULTS_FILE, results)
    (folder / ERROR_FILE).unlink(missing_ok=True)
    return {"cell": cell.name, "status": "done", "success": entry["success"],
            "deepthink_call_frac": entry["deepthink_call_frac"], "wall_seconds": results["wall_seconds"]["total"]}


def _write_error(out: str | os.PathLike[str], cell: CellSpec, exc: BaseException) -> None:
    """The traceback of ``exc`` into the cell's ``error.txt`` (best effort)."""
    try:
        atomic_write_text(cell_dir(out, cell) / ERROR_FILE, "".join(traceback.format_exception(exc)))
    except OSError:
        pass


def _run_cell_guarded(cell: CellSpec, out: str, factory: Any) -> dict[str, Any]:
    """:func:`run_cell` that reports a failure instead of raising (it writes ``error.txt``)."""
    try:
        return run_cell(cell, out, factory)
    except Exception as exc:
        _write_error(out, cell, exc)
        return {"cell": cell.name, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def _init_worker(threads: int, level: int) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=level, format="%(levelname)s %(name)s [worker]: %(message)s")
    import torch  # in the worker, where the cell's models run

    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------ the grid
