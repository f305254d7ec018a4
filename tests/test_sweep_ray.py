"""``londi sweep --executor ray``: on a real local Ray instance (2 CPUs, shared by the tests of
this file), the same results as the local executor, resume, bounded retries, the CLI, and the
errors. The LM pair is the controlled test pair of tests/test_sweep.py."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_sweep import controlled_factory

from londi.cli import main
from londi.core.errors import ConfigError, UnknownChoiceError
from londi.evaluation.sweep import run_sweep
from londi.evaluation.sweep_config import load_config

TESTS = Path(__file__).resolve().parent
#: The workers import the policy factories from this folder (as pytest's driver does).
PYTHONPATH = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)

# Keys left out when the two executors' results.json are compared: they are measured, not
# computed, so they differ from one run to the next on one executor too.
#   wall_seconds                  wall-clock time (of the cell, an evaluation, a calibration, training)
#   device_seconds.switch         the switch's own features and decision, timed on this CPU's clock
#   device_seconds.total          the sum that includes device_seconds.switch
# Everything else is compared, including device_seconds.quick and .deepthink: the controlled
# pair reports fixed simulated seconds per call.
MEASURED_KEYS = {"wall_seconds"}
MEASURED_DEVICE_KEYS = {"switch", "total"}


def without_timings(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: (without_timings({d: t for d, t in v.items() if d not in MEASURED_DEVICE_KEYS})
                    if k == "device_seconds" and isinstance(v, dict) else without_timings(v))
                for k, v in obj.items() if k not in MEASURED_KEYS}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


def counting_failing_factory(quick: str, deepthink: str):
    """Fails every time; ``quick`` is a file that counts the tries."""
    with open(quick, "a") as f:
        f.write("try\n")
    raise RuntimeError("no LMs here")


def flaky_factory(quick: str, deepthink: str):
    """Fails on the first try only (``quick`` is a file that counts the tries), then the controlled pair."""
    with open(quick, "a") as f:
        f.write("try\n")
    if Path(quick).read_text().count("try") == 1:
        raise RuntimeError("first try fails")
    return controlled_factory(quick, deepthink)


def tiny(**overrides: Any) -> dict[str, Any]:
    config = {"name": "tiny", "episodes": 2, "seeds": [0], "policy_factory": "test_sweep:controlled_factory",
              "grid": [{"method": "always-quick"}, {"method": "random", "rate": 0.5}, {"method": "periodic",
                                                                                      "rate": 0.5}]}
    config.update(overrides)
    return config


def _mtimes(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*/results.json")}


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the file's tests; run_sweep finds it initialised and leaves it running."""
    ray = pytest.importorskip("ray")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = PYTHONPATH  # the raylet and its workers inherit it
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
        yield ray
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


# ------------------------------------------------------------------------------------ the CLI
def test_cli_sweep_with_its_own_ray_instance(tmp_path):
    # first in the file, before the shared instance exists: `londi sweep --executor ray` starts a
    # local Ray instance with this machine's cores and shuts it down at the end
    pytest.importorskip("ray")
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny()))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    argv = [sys.executable, "-m", "londi.cli", "sweep", str(cfg), "--out", str(out), "--executor", "ray",
            "--no-progress", "--no-report"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 cells, 0 already finished, 3 run now, 0 failed" in proc.stdout
    assert len(_mtimes(out)) == 3


def test_cli_sweep_connects_to_a_running_cluster(tmp_path, ray_instance):
    # --address: the running instance stands in for a cluster; the sweep only disconnects from it
    address = ray_instance.get_runtime_context().gcs_address
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny()))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    argv = [sys.executable, "-m", "londi.cli", "sweep", str(cfg), "--out", str(out), "--executor", "ray",
            "--address", address, "--cpus-per-cell", "1", "--max-retries", "0", "--no-progress", "--no-report"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 run now, 0 failed" in proc.stdout and len(_mtimes(out)) == 3
    assert ray_instance.get(ray_instance.remote(lambda: 1).remote()) == 1  # still up


def test_cli_sweep_in_process_reports_failures(tmp_path, capsys, ray_instance):
    cfg = tmp_path / "fail.json"
    cfg.write_text(json.dumps(tiny(quick=str(tmp_path / "tries"), policy_factory="test_sweep_ray:counting_failing_factory",
                                   grid=[{"method": "expert"}, {"method": "always-quick"}])))
    out = tmp_path / "out"
    argv = ["sweep", str(cfg), "--out", str(out), "--executor", "ray", "--max-retries", "1", "--no-progress",
            "--no-report"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "1 run now, 1 failed" in captured.out
    assert "failed: always-quick__default__seed0: RuntimeError: no LMs here (tried 2 times)" in captured.err


# ------------------------------------------------------------------------------------ run_sweep
def test_ray_and_local_executors_give_the_same_results(tmp_path, ray_instance):
    config = load_config(tiny(calibration_episodes=2, grid=[
        {"method": "always-quick"},
        {"method": "random", "rate": 0.5},
        {"method": "uncertainty", "rate": 0.3, "params": {"max_rounds": 2}},
        {"method": "londi", "cost": 0.05},
    ], train={"steps": 120, "learning_starts": 40, "batch_size": 16, "buffer_size": 1000,
              "target_update_interval": 40, "checkpoint_every": 60}))
    local = run_sweep(config, tmp_path / "local", workers=1, policy_factory=controlled_factory, progress=False,
                      report=False)
    ray = run_sweep(config, tmp_path / "ray", executor="ray", policy_factory=controlled_factory, progress=False,
                    report=False)
    assert local.finished and ray.finished and sorted(ray.ran) == sorted(local.ran) == sorted(c.name for c in config.cells)
    for cell in config.cells:
        results = {}
        for name in ("local", "ray"):
            folder = tmp_path / name / "cells" / cell.name
            assert (folder / "config.json").read_text() == (tmp_path / "local" / "cells" / cell.name / "config.json").read_text()
            results[name] = json.loads((folder / "results.json").read_text())
        assert without_timings(results["ray"]) == without_timings(results["local"]), cell.name
    assert (tmp_path / "ray" / "cells" / "londi__cost0.05__seed0" / "switch" / "model.zip").is_file()


def test_ray_sweep_resumes_without_rerunning_finished_cells(tmp_path, ray_instance):
    config = load_config(tiny())
    out = tmp_path / "sweep"
    first = run_sweep(config, out, executor="ray", max_cells=2, progress=False, report=False)
    assert len(first.ran) == 2 and len(first.remaining) == 1 and not first.finished
    done = _mtimes(out)
    contents = {name: (out / "cells" / name / "results.json").read_text() for name in done}
    second = run_sweep(config, out, executor="ray", progress=False, report=False)
    assert sorted(second.skipped) == sorted(first.ran) and second.ran == first.remaining and second.finished
    after = _mtimes(out)
    assert {k: after[k] for k in done} == done and len(after) == 3
    assert all((out / "cells" / name / "results.json").read_text() == text for name, text in contents.items())
    # the local executor agrees that the ray executor's cells are finished
    third = run_sweep(config, out, workers=1, progress=False, report=True)
    assert third.ran == [] and len(third.skipped) == 3 and third.report is not None


def test_failed_cells_are_retried_a_bounded_number_of_times(tmp_path, ray_instance):
    tries = tmp_path / "tries"
    config = tiny(quick=str(tries), policy_factory="test_sweep_ray:counting_failing_factory",
                  grid=[{"method": "expert"}, {"method": "always-quick"}])
    out = tmp_path / "sweep"
    summary = run_sweep(config, out, executor="ray", max_retries=2, progress=False, report=False)
    assert summary.ran == ["expert__default__seed0"] and list(summary.failed) == ["always-quick__default__seed0"]
    assert "no LMs here" in summary.failed["always-quick__default__seed0"]
    assert tries.read_text().count("try") == 3  # the first try and 2 retries, no more
    assert "RuntimeError: no LMs here" in (out / "cells" / "always-quick__default__seed0" / "error.txt").read_text()
    assert (out / "cells" / "expert__default__seed0" / "results.json").is_file()
    # a cell that fails once is retried and finishes (and its error.txt goes)
    flaky = tmp_path / "flaky"
    config = tiny(quick=str(flaky), policy_factory="test_sweep_ray:flaky_factory", grid=[{"method": "always-quick"}])
    summary = run_sweep(config, tmp_path / "flaky_sweep", executor="ray", max_retries=1, progress=False, report=False)
    assert summary.finished and flaky.read_text().count("try") == 2
    assert not (tmp_path / "flaky_sweep" / "cells" / "always-quick__default__seed0" / "error.txt").exists()


# ------------------------------------------------------------------------------------ errors
def test_bad_executor_and_options_are_refused(tmp_path, capsys):
    out = tmp_path / "sweep"
    with pytest.raises(UnknownChoiceError, match="did you mean 'ray'"):
        run_sweep(tiny(), out, executor="rya")
    with pytest.raises(UnknownChoiceError, match="valid choices: local, ray"):
        run_sweep(tiny(), out, executor="dask")
    assert not out.exists()
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny()))
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", str(cfg), "--executor", "dask"])
    assert exit_info.value.code == 2 and "choose from 'local', 'ray'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="address: options of the ray executor"):
        run_sweep(tiny(), out, address="auto")
    for options, match in (({"cpus_per_cell": 0}, "cpus_per_cell must be a number > 0"),
                           ({"gpus_per_cell": 1.5}, "whole number"), ({"max_retries": -1}, "max_retries")):
        with pytest.raises(ConfigError, match=match):
            run_sweep(tiny(), out, executor="ray", **options)
    with pytest.raises(SystemExit):
        main(["sweep", str(cfg), "--executor", "ray", "--max-retries", "-1"])
    assert "--max-retries: must be >= 0" in capsys.readouterr().err


def test_cli_defaults_are_run_sweeps():
    import inspect

    from londi.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["sweep"]
    params = inspect.signature(run_sweep).parameters
    for dest in ("executor", "address", "cpus_per_cell", "gpus_per_cell", "max_retries"):
        assert sub.get_default(dest) == params[dest].default, dest


def test_without_ray_installed(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is not installed
    with pytest.raises(ConfigError, match=r"pip install 'londi\[ray\]'"):
        run_sweep(tiny(), tmp_path / "sweep", executor="ray")
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny()))
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "cli"), "--executor", "ray"]) == 2
    assert "pip install 'londi[ray]'" in capsys.readouterr().err
    # the local executor needs no Ray
    summary = run_sweep(tiny(), tmp_path / "local", workers=1, progress=False, report=False)
    assert summary.finished and len(summary.ran) == 3
