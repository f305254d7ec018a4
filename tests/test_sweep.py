"""``londi sweep``: config validation, resumable grids, the CLI. The LM pair is the controlled
(oracle-derived) test pair, injected with a policy factory."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ControlledPolicy

from londi.cli import main
from londi.core.errors import ConfigError, LondiError, UnknownChoiceError
from londi.evaluation.sweep import run_sweep
from londi.evaluation.sweep_config import CORE_METHODS, METHODS, load_config

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "experiments" / "smoke.json"


def controlled_factory(quick: str, deepthink: str):
    """Policy factory for tests: the controlled pair, whatever the names."""
    return (ControlledPolicy(name=f"controlled-{quick}", fail_on_hard=True, seconds=0.001),
            ControlledPolicy(name=f"controlled-{deepthink}", fail_on_hard=False, seconds=0.02))


def failing_factory(quick: str, deepthink: str):
    raise RuntimeError("no LMs here")


def tiny(**overrides) -> dict:
    config = {"name": "tiny", "episodes": 2, "seeds": [0], "grid": [{"method": "always-quick"}, {"method": "oracle"}]}
    config.update(overrides)
    return config


# ------------------------------------------------------------------------------------ configs
def test_shipped_configs_are_valid():
    from londi.evaluation.registry import method_names

    assert set(METHODS) == set(method_names()) and set(CORE_METHODS) <= set(METHODS)
    names = {p.stem for p in (ROOT / "experiments").glob("*.json")}
    assert {"cost_sweep", "budget_sweep", "budget_sweep_first_pair", "encoder_swap", "lm_swap", "baselines",
            "baselines_first_pair", "smoke",
            "strong_pair", "mix_baselines", "mix_budget"} <= names
    for name in names:
        config = load_config(ROOT / "experiments" / f"{name}.json")
        assert config.cells and config.name == name
    smoke = load_config(SMOKE)
    assert {c.method for c in smoke.cells} == set(METHODS) - {"expert"}
    baselines = load_config(ROOT / "experiments" / "baselines.json")
    assert {c.method for c in baselines.cells} == set(METHODS) and baselines.seeds == [0, 1, 2]
    mix = load_config(ROOT / "experiments" / "mix_baselines.json")
    assert {c.method for c in mix.cells} == set(METHODS) and mix.seeds == [0, 1, 2]
    assert {c.env for c in mix.cells} == {"londi/BabyAIText-MixedTrainLocal-v0"}
    encoders = {c.features for c in load_config(ROOT / "experiments" / "encoder_swap.json").cells if c.features}
    assert encoders == {"quick", "minilm", "bow"}
    budget = load_config(ROOT / "experiments" / "budget_sweep.json")
    by_method = {}
    for c in budget.cells:
        by_method.setdefault(c.label, set()).add(c.options.get("budget", c.options.get("cost_limit")))
    assert by_method["londi-b"] == by_method["random"] == by_method["first-b"] == by_method["londi-lag"]


@pytest.mark.parametrize(
    "config, error, match",
    [
        (tiny(grid=[{"method": "randm"}]), UnknownChoiceError, "did you mean 'random'"),
        (tiny(episode=3), UnknownChoiceError, "episodes"),
        (tiny(grid=[{"method": "random", "cost": 0.1}]), ConfigError, "'cost' does not apply to random; its keys are: "
                                                                       "method, name, rate, budget"),
        (tiny(grid=[{"method": "random", "rat": 0.1}]), UnknownChoiceError, "grid.0. key 'rat'; did you mean 'rate'"),
        (tiny(grid=[{"method": "random", "colour": 0.1}]), UnknownChoiceError, "valid choices: budget, method, name"),
        (tiny(grid=[{"method": "londi", "cost": -1}]), ConfigError, "cost must be >= 0"),
        (tiny(grid=[{"method": "londi", "cost": [0.1, float("nan")]}]), ConfigError, "finite"),
        (tiny(grid=[{"method": "always-quick", "budget": -2}]), ConfigError, "budget must be a non-negative integer"),
        (tiny(grid=[{"method": "random", "rate": 1.5}]), ConfigError, r"rate must be in \[0, 1\]"),
        (tiny(grid=[{"method": "first-b"}]), ConfigError, "first-b needs 'budget'"),
        (tiny(grid=[{"method": "londi", "budget": 2, "cost_limit": 2}]), ConfigError, "not both"),
        (tiny(grid=[{"method": "londi", "cost_limit": 2, "calibrate": "yes"}]), ConfigError,
         "calibrate must be true or false"),
        (tiny(grid=[{"method": "londi", "rate": 1.2}]), ConfigError, r"rate must be in \[0, 1\]"),
        (tiny(grid=[{"method": "londi", "features": "bagofwords"}]), ConfigError, "feature encoder"),
        (tiny(grid=[{"method": "heuristic", "params": {"patiense": 3}}]), UnknownChoiceError, "patience"),
        (tiny(grid=[{"method": "random"}, {"method": "random"}]), ConfigError, "another 'name'"),
        (tiny(train={"cost": 0.1}), ConfigError, "train.cost is set by the sweep"),
        (tiny(train={"stepz": 10}), UnknownChoiceError, "steps"),
        (tiny(env="londi/Nope-v0"), UnknownChoiceError, "env id"),
        (tiny(seeds=[0, 0]), ConfigError, "duplicates"),
        (tiny(episodes=0), ConfigError, "episodes"),
        (tiny(grid=[]), ConfigError, "non-empty"),
    ],
)
def test_config_errors_name_the_valid_choices(config, error, match):
    with pytest.raises(error, match=match):
        load_config(config)


def test_unreadable_config_files(tmp_path):
    with pytest.raises(LondiError, match="does not exist"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{\"grid\": [")
    with pytest.raises(LondiError, match="not valid JSON"):
        load_config(bad)


def test_cells_are_the_grid_product():
    config = load_config(tiny(seeds=[0, 1], grid=[{"method": "random", "rate": [0.1, 0.5], "budget": [1, 2]},
                                                   {"method": "londi", "name": "londi-bow", "features": "bow",
                                                    "cost": 0.02, "train": {"steps": 50}}]))
    names = [c.name for c in config.cells]
    assert "random__budget1-rate0.1__seed0" in names and "random__budget2-rate0.5__seed1" in names
    assert "londi-bow__cost0.02__seed1" in names and len(names) == 10
    londi = next(c for c in config.cells if c.method == "londi")
    assert londi.train["features"] == "bow" and londi.train["steps"] == 50 and londi.train["cost"] == 0.02
    assert londi.to_config()["method"] == "londi-bow"


# ------------------------------------------------------------------------------------ running
def _mtimes(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*/results.json")}


def test_stopped_sweep_resumes_without_repeating_finished_cells(tmp_path):
    config = load_config(SMOKE)
    out = tmp_path / "sweep"
    first = run_sweep(config, out, workers=1, max_cells=4, policy_factory=controlled_factory, progress=False,
                      report=False)
    assert len(first.ran) == 4 and len(first.remaining) == len(config.cells) - 4 and not first.failed
    done = _mtimes(out)
    assert set(done) == set(first.ran)
    # a cell that was stopped after writing its config (no results yet) is run again
    started = config.cells[-1]
    (out / "cells" / started.name).mkdir(parents=True)
    (out / "cells" / started.name / "config.json").write_text(json.dumps(started.to_config()))
    time.sleep(0.01)
    second = run_sweep(config, out, workers=1, policy_factory=controlled_factory, progress=False)
    assert sorted(second.skipped) == sorted(first.ran)
    assert sorted(second.ran) == sorted(first.remaining) and second.finished
    after = _mtimes(out)
    assert {k: after[k] for k in done} == done  # finished cells were not rewritten
    assert len(after) == len(config.cells)
    assert (out / "report.md").is_file()
    # a third run has nothing to do
    third = run_sweep(config, out, workers=1, policy_factory=controlled_factory, progress=False, report=False)
    assert third.ran == [] and len(third.skipped) == len(config.cells)

    results = {c.name: json.loads((out / "cells" / c.name / "results.json").read_text()) for c in config.cells}
    for cell in config.cells:
        entry = results[cell.name]["methods"][cell.label]
        assert entry["episodes"] == config.episodes
        saved = json.loads((out / "cells" / cell.name / "config.json").read_text())
        assert saved["method"] == cell.label and saved["seed"] == 0
    assert results["oracle__default__seed0"]["methods"]["oracle"]["oracle"] is True
    assert (out / "cells" / "londi__cost0.05__seed0" / "switch" / "model.zip").is_file()
    # the same training config is trained once: londi-rate evaluates londi's switch at a calibrated rate
    rated = results["londi-rate__cost0.05-rate0.3__seed0"]["methods"]["londi-rate"]
    assert rated["train"]["shared"] is True and rated["train"]["run_dir"] == "../londi__cost0.05__seed0/switch"
    assert not (out / "cells" / "londi-rate__cost0.05-rate0.3__seed0" / "switch").exists()
    assert rated["calibration"]["target_rate"] == 0.3 and rated["offline_cost"][0]["episodes"] > 0
    lag = results["londi-lag__cost_limit1-cost0__seed0"]["methods"]["londi-lag"]
    assert lag["calibration"]["target_calls_per_episode"] == 1.0
    assert "shared" not in lag["train"]  # another training config: its own switch
    assert results["heuristic__default__seed0"]["methods"]["heuristic"]["heuristic_triggers"]["failed actions"] > 0
    assert results["task-router__rate0.3__seed0"]["methods"]["task-router"]["task_matrix"]["tasks"] == ["GoToLocal"]
    cal = results["uncertainty__rate0.3__seed0"]["methods"]["uncertainty"]
    assert cal["calibration"]["target_rate"] == 0.3 and cal["offline_cost"][0]["episodes"] > 0


def test_killed_sweep_process_resumes(tmp_path):
    # a real `londi sweep` process killed (SIGKILL) part-way, then the same sweep run again
    cfg = tmp_path / "kill.json"
    cfg.write_text(json.dumps(tiny(seeds=[0, 1], episodes=4, policy_factory="test_sweep:controlled_factory",
                                   grid=[{"method": "always-quick"}, {"method": "always-deepthink"},
                                         {"method": "oracle"}, {"method": "random", "rate": [0.2, 0.5, 0.8]}])))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "londi.cli", "sweep", str(cfg), "--out", str(out), "--workers", "1",
                             "--no-progress", "--no-report"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(_mtimes(out)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done = _mtimes(out)
    assert 2 <= len(done) < 12, "the sweep was not stopped part-way"
    summary = run_sweep(load_config(cfg), out, workers=1, policy_factory=controlled_factory, progress=False,
                        report=False)
    assert sorted(summary.skipped) == sorted(done) and len(summary.ran) == 12 - len(done) and summary.finished
    after = _mtimes(out)
    assert {k: after[k] for k in done} == done


def test_changed_config_is_refused(tmp_path):
    out = tmp_path / "sweep"
    run_sweep(tiny(), out, workers=1, policy_factory=controlled_factory, progress=False, report=False)
    with pytest.raises(ConfigError, match="episodes"):
        run_sweep(tiny(episodes=3), out, workers=1, policy_factory=controlled_factory, progress=False)


def test_failed_cells_are_reported_and_others_kept(tmp_path):
    out = tmp_path / "sweep"
    summary = run_sweep(tiny(), out, workers=1, policy_factory=failing_factory, progress=False)
    assert set(summary.failed) == {"always-quick__default__seed0", "oracle__default__seed0"}
    assert "no LMs here" in (out / "cells" / "oracle__default__seed0" / "error.txt").read_text()
    assert summary.report is None
    fixed = run_sweep(tiny(), out, workers=1, policy_factory=controlled_factory, progress=False, report=False)
    assert fixed.finished and not (out / "cells" / "oracle__default__seed0" / "error.txt").exists()


@pytest.mark.slow
def test_parallel_workers(tmp_path):
    # spawned workers import londi and torch afresh: ~10-20 s on the shared 2-core machine
    out = tmp_path / "sweep"
    config = tiny(grid=[{"method": "always-quick"}, {"method": "oracle"}, {"method": "random", "rate": 0.5}])
    summary = run_sweep(config, out, workers=2, policy_factory=controlled_factory, progress=False, report=False)
    assert summary.finished and len(summary.ran) == 3
    assert len(_mtimes(out)) == 3


def test_cli_sweep(tmp_path, capsys):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny(policy_factory="test_sweep:controlled_factory")))
    out = tmp_path / "out"
    assert main(["sweep", str(cfg), "--out", str(out), "--workers", "1", "--no-progress", "--no-report"]) == 0
    assert "2 run now" in capsys.readouterr().out
    assert main(["sweep", str(cfg), "--out", str(out), "--dry-run"]) == 0
    assert "oracle__default__seed0" in capsys.readouterr().out
    assert main(["sweep", str(cfg), "--out", str(out), "--workers", "1", "--no-progress", "--no-report"]) == 0
    assert "2 already finished, 0 run now" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tiny(grid=[{"method": "londi", "cost": -0.1}])))
    assert main(["sweep", str(bad), "--out", str(out)]) == 2
    assert "cost must be >= 0" in capsys.readouterr().err


def test_cells_written_before_a_train_field_existed_compare_by_what_they_ran(tmp_path):
    """A cell folder whose ``train`` lacks ``select_every`` ran without selection: it matches a
    Lagrangian cell (no selection now either) and is refused for a per-cost cell (selection now)."""
    from londi.evaluation.sweep import CONFIG_FILE, _check_existing, cell_dir

    for entry, matches in (({"method": "londi", "cost_limit": 2.0}, True), ({"method": "londi", "cost": 0.1}, False)):
        config = load_config(tiny(grid=[entry], train={"steps": 50}))
        out = tmp_path / str(matches)
        (cell,) = config.cells
        old = cell.to_config()
        del old["train"]["select_every"], old["train"]["select_episodes"]
        cell_dir(out, cell).mkdir(parents=True)
        (cell_dir(out, cell) / CONFIG_FILE).write_text(json.dumps(old))
        if matches:
            _check_existing(config, out)
        else:
            with pytest.raises(ConfigError, match="differs in: train"):
                _check_existing(config, out)


def test_any_non_negative_run_seed_is_a_valid_sweep_seed():
    config = load_config({"name": "s", "episodes": 2, "seeds": [0, 42, 10**6], "grid": [{"method": "always-quick"}]})
    assert sorted({c.seed for c in config.cells}) == [0, 42, 10**6]
    with pytest.raises(ConfigError, match="non-negative"):
        load_config({"name": "s", "episodes": 2, "seeds": [-1], "grid": [{"method": "always-quick"}]})
