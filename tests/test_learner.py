"""The switch learner on a controlled case, save/load, and the train CLI's errors."""
import numpy as np
import pytest

from londi.cli import main
from londi.evaluate import build_switch_env
from londi.rules import LearnedSwitch
from londi.train import TrainConfig, build_learner, load_switch, train_switch
from londi.errors import LondiError

ENV = "londi/BabyAIText-GoToLocal-v0"
EVAL_SEEDS = range(500_000, 500_060)


def greedy_stats(model, env):
    hard = easy = dt_hard = dt_easy = 0
    for s in EVAL_SEEDS:
        obs, _ = env.reset(seed=s)
        done = False
        while not done:
            is_hard = env.text_observation.oracle_action != "go forward"
            a = int(model.predict(obs, deterministic=True)[0])
            hard += is_hard
            easy += not is_hard
            dt_hard += a * is_hard
            dt_easy += a * (not is_hard)
            obs, _, term, trunc, _ = env.step(a)
            done = term or trunc
    return dt_hard / max(hard, 1), dt_easy / max(easy, 1), (dt_hard + dt_easy) / (hard + easy)


@pytest.fixture(scope="module")
def trained(request):
    """Switches trained at two costs on the controlled pair (QUICK stuck on every turn)."""
    from conftest import ControlledPolicy

    out = {}
    for cost in (0.1, 0.6):
        quick = ControlledPolicy(name="controlled-quick", fail_on_hard=True)
        deep = ControlledPolicy(name="controlled-deepthink", fail_on_hard=False, seconds=0.02)
        env = build_switch_env(ENV, quick, deep, call_cost=cost)
        model = build_learner(TrainConfig(cost=cost, steps=4000, seed=0), env)
        model.learn(4000)
        out[cost] = (model, env)
    return out


def test_switch_calls_deepthink_where_it_is_needed(trained):
    model, env = trained[0.1]
    on_hard, on_easy, _ = greedy_stats(model, env)
    assert on_hard >= 0.8, on_hard
    assert on_easy <= 0.2, on_easy


def test_raising_the_cost_lowers_the_call_rate(trained):
    low = greedy_stats(*trained[0.1])[2]
    high = greedy_stats(*trained[0.6])[2]
    assert high < low


def test_changing_c_reweights_without_relearning(trained):
    model, env = trained[0.1]
    import torch as th

    obs, _ = env.reset(seed=500_000)
    q_before = model.q_net.reward_cost_values({k: th.as_tensor(np.asarray(v)[None]) for k, v in obs.items()})
    rate_before = greedy_stats(model, env)[2]
    model.set_call_cost(100.0)  # prohibitive: the same values now say QUICK (almost) everywhere
    try:
        assert greedy_stats(model, env)[2] <= min(0.05, rate_before / 4)
    finally:
        model.set_call_cost(0.1)
    q_after = model.q_net.reward_cost_values({k: th.as_tensor(np.asarray(v)[None]) for k, v in obs.items()})
    assert all(th.equal(a, b) for a, b in zip(q_before, q_after))


def test_saved_and_reloaded_switch_makes_the_same_decisions(trained, tmp_path):
    from londi.learner import LondiDQN

    model, env = trained[0.1]
    model.save(tmp_path / "m.zip")
    again = LondiDQN.load(tmp_path / "m.zip")
    obs, _ = env.reset(seed=500_001)
    for _ in range(20):
        a1 = model.predict(obs, deterministic=True)[0]
        a2 = again.predict(obs, deterministic=True)[0]
        assert int(a1) == int(a2)
        obs, _, term, trunc, _ = env.step(int(a1))
        if term or trunc:
            obs, _ = env.reset()
    assert again.call_cost == model.call_cost


def test_train_switch_writes_a_run_folder_and_loads_back(controlled_pair, tmp_path):
    quick, deep = controlled_pair
    config = TrainConfig(steps=300, learning_starts=100, checkpoint_every=100, cost=0.05)
    model = train_switch(config, tmp_path / "run", quick=quick, deepthink=deep, progress=False)
    for name in ("config.json", "model.zip", "checkpoint/state.json", "checkpoint/replay_buffer.pkl"):
        assert (tmp_path / "run" / name).is_file(), name
    assert list((tmp_path / "run" / "logs").glob("progress.csv"))
    assert list((tmp_path / "run" / "logs").glob("events.out.tfevents.*"))
    loaded, cfg = load_switch(tmp_path / "run")
    assert cfg == config
    rule = LearnedSwitch(loaded, features=cfg.features)
    env = build_switch_env(ENV, quick, deep)
    obs, _ = env.reset(seed=3)
    assert rule.choose(obs, env) == int(model.predict(obs, deterministic=True)[0])
    # same folder, other config: refused rather than mixed
    with pytest.raises(LondiError, match="another config"):
        train_switch(TrainConfig(steps=300, cost=0.5), tmp_path / "run", quick=quick, deepthink=deep)


def test_missing_run_dir_is_a_clear_error(tmp_path):
    with pytest.raises(LondiError, match="does not exist"):
        load_switch(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    with pytest.raises(LondiError, match="model.zip"):
        load_switch(tmp_path / "half")


@pytest.mark.parametrize("argv, message", [
    (["train", "--env", "londi/BabyAIText-GoToLocl-v0", "--steps", "10"], "did you mean"),
    (["train", "--budget", "2", "--cost-limit", "1"], "either"),
    (["train", "--features", "quik"], "feature encoder"),
    (["eval", "--method", "londi", "--switch", "/no/such/run", "--episodes", "2"], "does not exist"),
    (["eval", "--method", "expret"], "did you mean 'expert'"),
])
def test_cli_errors_are_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["train", "--cost", "-1"], ["train", "--budget", "-2"], ["train", "--budget", "1.5"],
                                  ["train", "--cost-limit", "-3"]])
def test_cli_rejects_negative_numbers(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "must be" in err or "expected a non-negative integer" in err


def test_cli_eval_expert_writes_results(tmp_path, capsys):
    import json

    out = tmp_path / "r.json"
    assert main(["eval", "--method", "expert", "--episodes", "20", "--seed", "1", "--out", str(out),
                 "--no-progress"]) == 0
    data = json.loads(out.read_text())
    m = data["methods"]["expert"]
    assert data["env"] == ENV and data["episodes"] == 20 and data["seed"] == 1
    assert m["success"] == 1.0 and m["oracle"] is True
    for key in ("success_ci", "return", "steps", "quick_calls_per_episode", "deepthink_call_frac",
                "deepthink_calls_per_episode", "max_deepthink_calls", "device_seconds"):
        assert key in m
    assert set(m["device_seconds"]) >= {"quick", "deepthink", "switch", "total"}
    assert "success" in capsys.readouterr().out
