"""Keeping the best switch on selection episodes (londi.learn.selection)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import sigkill_after_checkpoint

from londi.core.errors import ConfigError
from londi.core.io import read_json
from londi.learn.dqn import LondiDQN
from londi.learn.selection import selection_objective
from londi.learn.train import TrainConfig, load_switch, train_switch


def test_selection_objective_is_the_mean_of_return_minus_weighted_calls():
    # (0.9 - 0.1 * 3) and (0.0 - 0.1 * 1): mean of 0.6 and -0.1
    assert selection_objective([0.9, 0.0], [3, 1], 0.1) == pytest.approx(0.25)
    assert selection_objective([0.5], [10], 0.0) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        selection_objective([0.5], [1, 2], 0.1)


def _params(model):
    return [p.detach().clone() for p in model.policy.parameters()]


def test_selection_keeps_the_best_evaluated_weights_and_leaves_training_alone(controlled_pair, tmp_path):
    quick, deep = controlled_pair
    base = dict(steps=600, learning_starts=100, checkpoint_every=0, cost=0.05, seed=3)
    plain = train_switch(TrainConfig(**base), tmp_path / "plain", quick=quick, deepthink=deep, progress=False)
    config = TrainConfig(**base, select_every=200, select_episodes=4)
    selected = train_switch(config, tmp_path / "sel", quick=quick, deepthink=deep, progress=False)
    run = tmp_path / "sel"
    for name in ("model.zip", "best_model.zip", "last_model.zip", "selection.json"):
        assert (run / name).is_file(), name

    saved = read_json(run / "selection.json")
    assert [e["step"] for e in saved["evaluations"]] == [200, 400, 600]
    best = max(saved["evaluations"], key=lambda e: e["objective"])
    assert saved["best"]["objective"] == best["objective"]
    assert saved["episodes"] == 4 and len(set(saved["env_seeds"])) == 4
    assert all(s < 500_000 for s in saved["env_seeds"])  # never the held-out episodes
    cost = saved["offline_cost"]
    assert cost["episodes"] == 12 and cost["calls"]["quick"] > 0 and cost["device_seconds"]["total"] > 0

    # the selection episodes took no draws from the training run: its last weights are the plain run's
    last = LondiDQN.load(run / "last_model.zip")
    for a, b in zip(_params(plain), _params(last)):
        assert np.array_equal(a.numpy(), b.numpy())
    # model.zip (what load_switch and londi eval read) is the best evaluation's weights
    loaded, cfg = load_switch(run)
    assert cfg == config
    kept = LondiDQN.load(run / "best_model.zip")
    for a, b, c in zip(_params(loaded), _params(kept), _params(selected)):
        assert np.array_equal(a.numpy(), b.numpy()) and np.array_equal(a.numpy(), c.numpy())
    if best["step"] != 600:
        assert any(not np.array_equal(a.numpy(), b.numpy()) for a, b in zip(_params(loaded), _params(last)))


@pytest.mark.parametrize("fields, message", [
    ({"select_every": 100, "cost_limit": 4.0}, "does not combine with cost_limit"),
    ({"select_every": -1}, "select_every must be >= 0"),
    ({"select_episodes": 0}, "select_episodes must be positive"),
])
def test_bad_selection_settings_are_clear_errors(fields, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**fields).validate()


def test_selection_defaults_and_old_config_files():
    assert TrainConfig().select_every == 2000 and TrainConfig(budget=3).select_every == 2000
    assert TrainConfig(cost_limit=2.0).select_every == 0  # a Lagrangian weight is calibrated afterwards
    # a config.json written before selection existed ran without it, and loads that way
    old = TrainConfig(select_every=0).to_dict()
    del old["select_every"], old["select_episodes"]
    assert TrainConfig.from_dict(old).select_every == 0
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


def test_a_run_no_longer_than_the_interval_keeps_its_only_candidate(controlled_pair, tmp_path):
    quick, deep = controlled_pair
    config = TrainConfig(steps=300, learning_starts=100, checkpoint_every=0, cost=0.05, select_every=300)
    train_switch(config, tmp_path / "run", quick=quick, deepthink=deep, progress=False)
    assert (tmp_path / "run" / "model.zip").is_file()
    assert not (tmp_path / "run" / "selection.json").exists() and not (tmp_path / "run" / "best_model.zip").exists()


def test_selection_resumes_after_sigkill_without_repeating_evaluations(tmp_path):
    run = tmp_path / "run"
    child = [sys.executable, str(Path(__file__).with_name("_train_child.py")), str(run), "1200", "400", "3"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(child, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sigkill_after_checkpoint(proc, run / "checkpoint" / "state.json", 600)
    assert [e["step"] for e in read_json(run / "selection.json")["evaluations"]][:1] == [400]
    out = subprocess.run(child, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    saved = read_json(run / "selection.json")
    assert [e["step"] for e in saved["evaluations"]] == [400, 800, 1200]  # each step judged once
    assert saved["offline_cost"]["episodes"] == 9
    loaded, _ = load_switch(run)
    kept = LondiDQN.load(run / "best_model.zip")
    for a, b in zip(_params(loaded), _params(kept)):
        assert np.array_equal(a.numpy(), b.numpy())
    assert not list(run.rglob("*.tmp"))
