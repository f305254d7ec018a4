"""The Ray executor of ``londi sweep`` (``--executor ray``): each cell a Ray task.

:func:`run_cells_ray` runs the unfinished cells that :func:`londi.evaluation.sweep.run_sweep`
hands it, one Ray task per cell (:func:`londi.evaluation.cells.run_cell`, as the local executor
runs them), so the cell folder layout, the atomic writes, "a finished cell is never rerun" and
``error.txt`` are the same. A task asks for ``cpus_per_cell`` CPUs (its torch thread count) and
``gpus_per_cell`` GPUs (a fraction shares a GPU between cells whose local models run on CUDA;
with 0, Ray leaves ``CUDA_VISIBLE_DEVICES`` as it finds it). A task that raises, or whose worker
dies, is retried up to ``max_retries`` times by Ray, then reported as failed.

Without ``address`` a local Ray instance is started with every core of this machine and shut
down at the end; with one (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``) the sweep
connects to that cluster (and disconnects at the end). If Ray is already initialised in this
process it is used as it is and left running. The workers write the cell results themselves,
so on a cluster the sweep folder must be a path on a filesystem every node shares, at the
same path.

Ray is an optional dependency (``pip install 'londi[ray]'``): it is imported only here, and
only when the executor runs.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from londi.core.errors import ConfigError, LondiError
from londi.core.io import atomic_write_text
from londi.evaluation.cells import ERROR_FILE, _init_worker, _write_error, cell_dir, run_cell
from londi.evaluation.sweep_config import CellSpec

logger = logging.getLogger(__name__)

#: CPUs a cell's Ray task asks for (and its torch threads), unless told otherwise.
DEFAULT_CPUS_PER_CELL = 1.0
#: GPUs a cell's Ray task asks for, unless told otherwise.
DEFAULT_GPUS_PER_CELL = 0.0
#: Retries of a failed cell task, unless told otherwise.
DEFAULT_MAX_RETRIES = 2

INSTALL_HINT = "pip install 'londi[ray]'"


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`ConfigError` that names the install command."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"--executor ray needs Ray, which is not installed ({exc}); install it with: "
                          f"{INSTALL_HINT}") from None
    return ray


def resolve_options(cpus_per_cell: float | None, gpus_per_cell: float | None,
                    max_retries: int | None) -> tuple[float, float, int]:
    """The Ray options with their defaults filled in, checked (a :class:`ConfigError` if out of range)."""
    cpus = DEFAULT_CPUS_PER_CELL if cpus_per_cell is None else cpus_per_cell
    gpus = DEFAULT_GPUS_PER_CELL if gpus_per_cell is None else gpus_per_cell
    retries = DEFAULT_MAX_RETRIES if max_retries is None else max_retries
    for name, value, low in (("cpus_per_cell", cpus, "> 0"), ("gpus_per_cell", gpus, ">= 0")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < 0 or (value == 0 and low == "> 0"):
            raise ConfigError(f"{name} must be a number {low}, got {value!r}")
        if value > 1 and not float(value).is_integer():
            raise ConfigError(f"{name} above 1 must be a whole number (Ray's rule for fractions), got {value!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"max_retries must be a non-negative integer, got {retries!r}")
    return float(cpus), float(gpus), retries


def _cell_task(cell: CellSpec, out: str, factory: Any, threads: int, level: int) -> dict[str, Any]:
    """One cell, in a Ray worker: :func:`run_cell`; a failure writes ``error.txt`` and raises (so
    that Ray retries it)."""
    _init_worker(threads, level)
    try:
        return run_cell(cell, out, factory)
    except Exception as exc:
        _write_error(out, cell, exc)
        raise


def _start(ray: Any, address: str | None) -> bool:
    """Initialise Ray unless it is already; True if this call did (and so shuts it down at the end)."""
    if ray.is_initialized():
        if address is not None:
            logger.warning("Ray is already initialised in this process; address %r is not used", address)
        return False
    # Ray's own INFO lines (and the dashboard) are noise for a sweep; its warnings still show
    quiet = {"include_dashboard": False, "logging_level": max(logging.WARNING, logging.getLogger().level),
             "log_to_driver": True}
    try:
        if address is None:
            cores = os.cpu_count() or 1
            logger.info("starting a local Ray instance with %d CPUs", cores)
            ray.init(address="local", num_cpus=cores, **quiet)
        else:
            logger.info("connecting to the Ray cluster at %s", address)
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "start a local Ray instance" if address is None else f"connect to the Ray cluster at {address!r}"
        raise LondiError(f"could not {where}: {type(exc).__name__}: {exc}") from exc
    return True


def _check_fits(ray: Any, cpus: float, gpus: float, started_locally: bool) -> None:
    """Fail early (a local instance) or warn (a cluster, which may grow) when a cell asks for more
    than the whole cluster has: Ray would wait for it for ever."""
    total = ray.cluster_resources()
    for name, want in (("CPU", cpus), ("GPU", gpus)):
        have = float(total.get(name, 0.0))
        if want > have:
            message = f"a cell asks for {want:g} {name}s but the Ray cluster has {have:g}"
            if started_locally:
                option = "--cpus-per-cell" if name == "CPU" else "--gpus-per-cell"
                raise ConfigError(f"{message}; lower {option}")
            logger.warning("%s: its cells wait until the cluster has enough", message)


def _failure(ray: Any, exc: BaseException, attempts: int) -> str:
    cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None else exc
    return f"{type(cause).__name__}: {cause} (tried {attempts} times)"


def run_cells_ray(
    cells: list[CellSpec],
    out: str | os.PathLike[str],
    factory: Any,
    record: Callable[[dict[str, Any]], None],
    *,
    address: str | None = None,
    cpus_per_cell: float | None = None,
    gpus_per_cell: float | None = None,
    max_retries: int | None = None,
) -> None:
    """Run ``cells`` as Ray tasks into ``out``, calling ``record`` with each one's summary (a
    :func:`run_cell` summary, or ``{"cell", "status": "failed", "error"}``) as it finishes.

    ``out`` is made absolute here: the workers write to it, so on a cluster it must be on a
    filesystem that every node mounts at the same path. ``factory`` is shipped to the workers
    with cloudpickle (a ``"module:function"`` string, or a function whose module the workers can
    import). Ctrl-C cancels the tasks still running; the cells they leave unfinished run again
    next time.
    """
    cpus, gpus, retries = resolve_options(cpus_per_cell, gpus_per_cell, max_retries)
    if not cells:
        return
    ray = import_ray()
    out = str(Path(out).resolve())
    started = _start(ray, address)
    try:
        _check_fits(ray, cpus, gpus, started_locally=started and address is None)
        task = ray.remote(_cell_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=retries,
                                              retry_exceptions=True, name="londi-sweep-cell")
        threads = max(1, math.floor(cpus))
        level = logging.getLogger().level or logging.WARNING
        refs = {task.remote(cell, out, factory, threads, level): cell for cell in cells}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    cell = refs[ref]
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # the task raised (every try), or its worker or node died
                        result = {"cell": cell.name, "status": "failed", "error": _failure(ray, exc, retries + 1)}
                        if not isinstance(exc, ray.exceptions.RayTaskError):  # no worker wrote error.txt
                            try:
                                atomic_write_text(cell_dir(out, cell) / ERROR_FILE, f"{result['error']}\n\n{exc}\n")
                            except OSError:
                                pass
                    record(result)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()


__all__ = [
    "DEFAULT_CPUS_PER_CELL",
    "DEFAULT_GPUS_PER_CELL",
    "DEFAULT_MAX_RETRIES",
    "INSTALL_HINT",
    "import_ray",
    "resolve_options",
    "run_cells_ray",
]
