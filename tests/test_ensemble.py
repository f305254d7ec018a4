"""SwitchEnsemble: mean values, masks, loading several run folders, and the eval CLI."""
import json

import numpy as np
import pytest

from londi.agent import LondiAgent
from londi.cli import main
from londi.core.errors import ConfigError
from londi.envs import make_env
from londi.learn.ensemble import SwitchEnsemble
from londi.learn.train import TrainConfig, load_switches, train_switch
from londi.rules import LearnedSwitch
from londi.rules.calibrated import CostCalibratedSwitch
from londi.switch.rollout import build_switch_env

ENV = "londi/BabyAIText-GoToLocal-v0"


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Three tiny switches trained alike on the controlled pair, seeds 0-2."""
    from conftest import ControlledPolicy

    quick = ControlledPolicy(name="controlled-quick", fail_on_hard=True, seconds=0.001)
    deep = ControlledPolicy(name="controlled-deepthink", fail_on_hard=False, seconds=0.002)
    root = tmp_path_factory.mktemp("ensemble")
    dirs = []
    for seed in range(3):
        config = TrainConfig(steps=400, learning_starts=100, checkpoint_every=0, cost=0.05, seed=seed)
        train_switch(config, root / f"seed{seed}", quick=quick, deepthink=deep, progress=False)
        dirs.append(root / f"seed{seed}")
    return dirs, quick, deep


def visited_states(env, n_episodes=4):
    states = []
    for s in range(n_episodes):
        obs, _ = env.reset(seed=500_000 + s)
        for _ in range(15):
            states.append(obs)
            obs, _, term, trunc, _ = env.step(s % 2)
            if term or trunc:
                break
    return states


def test_ensemble_acts_on_the_members_mean_values(members):
    dirs, quick, deep = members
    ensemble, config = load_switches(",".join(str(d) for d in dirs))
    assert isinstance(ensemble, SwitchEnsemble) and len(ensemble) == 3
    assert config.seed == 0 and ensemble.cost_weight == pytest.approx(0.05)
    env = build_switch_env(ENV, quick, deep, features=config.features)
    rule = LearnedSwitch(ensemble, features=config.features)
    for obs in visited_states(env):
        pairs = [m.values(obs) for m in ensemble.members]
        q_r = np.mean([r for r, _ in pairs], axis=0)
        q_c = np.mean([c for _, c in pairs], axis=0)
        want = int(np.argmax(q_r - 0.05 * q_c))
        assert int(ensemble.predict(obs)[0]) == want == rule.choose(obs, env.step_context())
        got_r, got_c = ensemble.values(obs)
        np.testing.assert_allclose(got_r, q_r, rtol=1e-6)
        np.testing.assert_allclose(got_c, q_c, rtol=1e-6)
    # a calibrated switch reads the same mean values
    cal = CostCalibratedSwitch(ensemble, features=config.features)
    obs = visited_states(env, 1)[0]
    q_r, q_c = ensemble.values(obs)
    d_r, d_c = q_r[1] - q_r[0], q_c[1] - q_c[0]
    if d_c > 1e-9:
        assert cal.break_even_weight(obs) == pytest.approx(d_r / d_c, rel=1e-5)


def test_ensemble_honours_the_mask_and_acts_greedily_only(members):
    dirs, quick, deep = members
    ensemble, config = load_switches(dirs)
    env = build_switch_env(ENV, quick, deep, features=config.features, budget=0)
    obs, _ = env.reset(seed=500_000)
    assert obs["action_mask"][1] == 0
    ensemble.set_call_cost(0.0)  # calling would look free; the mask must still win
    assert int(ensemble.predict(obs)[0]) == 0
    with pytest.raises(ValueError, match="greedily"):
        ensemble.predict(obs, deterministic=False)


def test_call_cost_reweights_every_member(members):
    dirs, _, _ = members
    single, _ = load_switches(dirs[0], call_cost=0.3)
    assert single.cost_weight == pytest.approx(0.3)
    ensemble, _ = load_switches(dirs, call_cost=0.2)
    assert [m.call_cost for m in ensemble.members] == [0.2, 0.2, 0.2]
    with pytest.raises(ConfigError, match="call_cost"):
        load_switches(dirs, call_cost=-1.0)


def test_members_trained_differently_are_refused(members, tmp_path):
    dirs, quick, deep = members
    other = TrainConfig(steps=400, learning_starts=100, checkpoint_every=0, cost=0.5, seed=5)
    train_switch(other, tmp_path / "other", quick=quick, deepthink=deep, progress=False)
    with pytest.raises(ConfigError, match="differ in 'cost'"):
        load_switches([dirs[0], tmp_path / "other"])
    with pytest.raises(ConfigError, match="at least one member"):
        SwitchEnsemble([])


def test_cli_eval_with_an_ensemble_and_a_cost(members, tmp_path, capsys, monkeypatch):
    dirs, quick, deep = members
    from londi import cli

    monkeypatch.setattr(cli, "load_pair", lambda args: (quick, deep))
    out = tmp_path / "r.json"
    rc = main(["eval", "--method", "londi", "--switch", ",".join(str(d) for d in dirs), "--cost", "0.0",
               "--episodes", "3", "--no-progress", "--out", str(out)])
    assert rc == 0
    entry = json.loads(out.read_text())["methods"]["londi"]
    assert entry["episodes"] == 3 and 0.0 <= entry["deepthink_call_frac"] <= 1.0
    # --cost is about a trained switch: refused for other methods
    assert main(["eval", "--method", "always-quick", "--cost", "0.1", "--episodes", "1"]) != 0
    assert "--cost" in capsys.readouterr().err


def test_londi_agent_runs_an_ensemble_in_a_plain_game_loop(members):
    """``LondiAgent.from_run`` with several folders, a budget and a cost: admissible actions,
    the cap held, every step metered."""
    dirs, quick, deep = members
    agent = LondiAgent.from_run(dirs, quick=quick, deepthink=deep, budget=2, call_cost=0.0)
    assert isinstance(agent.switch.model, SwitchEnsemble)
    env = make_env(ENV)
    try:
        for seed in (500_003, 500_004):
            _, info = env.reset(seed=seed)
            agent.reset()
            done, steps = False, 0
            while not done:
                observation = info["text_obs"]
                step = agent.act(observation)
                assert step.action in observation.admissible_actions
                _, reward, term, trunc, info = env.step(step.action)
                agent.feedback(reward)
                steps += 1
                done = term or trunc
            calls = step.accounting.calls
            assert calls["deepthink"] <= 2 and step.budget_left == 2 - calls["deepthink"]
            assert calls["quick"] == steps  # QUICK is consulted at every step for the features
    finally:
        env.close()
