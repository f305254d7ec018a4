"""``londi sweep CONFIG --out DIR``: run a grid of methods x parameters x seeds, resumably.

Each cell of the grid (one method, one parameter setting, one run seed) is evaluated on the
held-out episodes of its seed (:func:`londi.evaluation.loop.heldout_seeds`) and writes
``DIR/cells/<method>__<params>__seed<k>/config.json`` (the resolved cell config, first) and
``results.json`` (last), both atomically. A cell whose ``results.json`` exists is finished and
never run again, so a sweep that was stopped (Ctrl-C, a crash, ``--max-cells``) is continued
by running the same command. LONDI cells train their switch into the cell folder
(``switch/``), which :func:`londi.learn.train.train_switch` resumes from its last checkpoint. Cells
run in ``--workers`` processes (default 2; 1 runs them in this process), or, with ``--executor
ray``, as Ray tasks on this machine or a Ray cluster (:mod:`londi.evaluation.executors`; the
same cell folders, retried ``--max-retries`` times); a cell that fails writes ``error.txt`` and
the others go on. At the end ``londi report`` is written to ``DIR``.

The config file format and its validation (:func:`load_config`, :class:`CellSpec`) are in
:mod:`londi.evaluation.sweep_config`; they are re-exported here.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import sys
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from londi.core.errors import ConfigError, LondiError, UnknownChoiceError
from londi.core.io import atomic_write_json, read_json
from londi.evaluation.cells import (
    CELLS_DIR,
    CONFIG_FILE,
    ERROR_FILE,
    RESULTS_FILE,
    SWITCH_DIR,
    PolicyFactory,
    _init_worker,
    _run_cell_guarded,
    cell_dir,
    is_finished,
    load_lm_pair,
    resolve_policy_factory,
    run_cell,
)
from londi.evaluation.report import write_report
from londi.evaluation.sweep_config import (
    CORE_METHODS,
    METHODS,
    SWEEP_KEYS,
    TOP_KEYS,
    CellSpec,
    SweepConfig,
    load_config,
    method_keys,
)
from londi.learn.train import TrainConfig

logger = logging.getLogger(__name__)
#: Where the cells run: ``local`` (a process pool) or ``ray`` (Ray tasks, :mod:`londi.evaluation.executors`).
EXECUTORS: tuple[str, ...] = ("local", "ray")

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
    """``cell_config`` with its ``train`` entry read as a :class:`~londi.learn.train.TrainConfig`, so that
    a cell written before a TrainConfig field existed compares by what it ran (the field's
    meaning for old files, see ``TrainConfig.from_dict``)."""

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
    executor: str = "local",
    address: str | None = None,
    cpus_per_cell: float | None = None,
    gpus_per_cell: float | None = None,
    max_retries: int | None = None,
) -> SweepSummary:
    """Run the unfinished cells of a sweep into ``out``; finished cells are skipped.

    Args:
        config: a :class:`SweepConfig`, a config file or a config dict.
        out: the sweep folder (cells go to ``out/cells/``).
        workers: processes running cells in parallel; 1 runs them in this process (the local
            executor's option).
        max_cells: run at most this many unfinished cells, then stop (rerun to continue).
        policy_factory: overrides the config's ``policy_factory``: a callable
            ``(quick, deepthink) -> (QUICK, DEEPTHINK)`` (picklable, i.e. a module-level
            function, when ``workers > 1``) or ``"module:function"``.
        progress: show a progress bar over cells.
        report: write the report at the end (default: the config's ``report``).
        executor: ``"local"`` (a process pool on this machine) or ``"ray"`` (each cell a Ray task,
            :mod:`londi.evaluation.executors`; needs ``pip install 'londi[ray]'``).
        address: the Ray cluster to connect to (``ray.init(address=...)``); default: start a
            local Ray instance with every core, shut down at the end. Ray only.
        cpus_per_cell: CPUs (and torch threads) of a cell's Ray task (default 1). Ray only.
        gpus_per_cell: GPUs of a cell's Ray task, a fraction to share one (default 0). Ray only.
        max_retries: retries of a Ray task that failed before its cell is reported as failed
            (default 2). Ray only.

    With ``workers > 1`` the cells run in spawned processes, so a script that calls this must
    guard its entry point with ``if __name__ == "__main__":`` (as for any ``multiprocessing``).
    Each cell's ``results.json`` holds the evaluation entry of its method, plus, for baselines,
    what the rule learned and the metered cost of its calibration/training episodes
    (``offline_cost``, kept apart from the evaluation's numbers) and, for LONDI cells, the
    training wall time (``train``).
    """
    from tqdm.auto import tqdm


    if executor not in EXECUTORS:
        raise UnknownChoiceError("executor", str(executor), EXECUTORS)
    ray_options = {"address": address, "cpus_per_cell": cpus_per_cell, "gpus_per_cell": gpus_per_cell,
                   "max_retries": max_retries}
    if executor == "ray":
        from londi.evaluation import executors

        executors.resolve_options(cpus_per_cell, gpus_per_cell, max_retries)  # fail early on bad values
        executors.import_ray()  # and without Ray installed
    elif any(v is not None for v in ray_options.values()):
        given = ", ".join(k for k, v in ray_options.items() if v is not None)
        raise ConfigError(f"{given}: options of the ray executor, not of executor={executor!r} (use --executor ray)")
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
    elif factory is not None and workers > 1 and executor == "local":  # Ray ships it with cloudpickle
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
        if executor == "ray":
            executors.run_cells_ray(todo, out, factory, record, **ray_options)
        elif workers == 1 or len(todo) <= 1:
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

    try:
        return write_report(out)
    except LondiError as exc:
        logger.warning("no report written: %s", exc)
        return None


__all__ = [
    "CELLS_DIR",
    "CONFIG_FILE",
    "CORE_METHODS",
    "ERROR_FILE",
    "RESULTS_FILE",
    "SWITCH_DIR",
    "EXECUTORS",
    "METHODS",
    "SWEEP_KEYS",
    "TOP_KEYS",
    "CellSpec",
    "cell_dir",
    "is_finished",
    "SweepConfig",
    "SweepSummary",
    "load_config",
    "load_lm_pair",
    "method_keys",
    "resolve_policy_factory",
    "run_cell",
    "run_sweep",
]
