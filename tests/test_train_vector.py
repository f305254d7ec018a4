"""``londi train --num-envs N``: training on several episodes at once through ``SwitchVecEnv``.

The vec env must behave as SB3's ``DummyVecEnv`` does over the same envs (auto-reset, terminal
observations, timeouts), its episodes must start on distinct training seeds, and a run must keep
the replay ratio, the hard budget, checkpoints and resumption, the Lagrangian updates and the
saved switch's description of one env.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

from londi.cli import main
from londi.core.errors import ConfigError
from londi.core.seeds import LEGACY_RUN_SEEDS, OFFLINE_SEED_END, SEED_STRIDE, heldout_seeds, training_env_seed
from londi.learn.callbacks import CHECKPOINT_DIR, MODEL_FILE
from londi.learn.selection import SELECTION_PURPOSE
from londi.learn.train import TrainConfig, load_switch, train_switch, training_env_seeds
from londi.learn.vec_env import SwitchVecEnv
from londi.switch.card import read_description
from londi.switch.env import SwitchEnv
from londi.switch.rollout import build_switch_env

ENV = "londi/BabyAIText-GoToLocal-v0"


def _envs(pair, n, **kwargs):
    quick, deep = pair
    return [build_switch_env(ENV, quick, deep, own_streams=True, **kwargs) for _ in range(n)]


def _small(**kwargs) -> TrainConfig:
    base = dict(env=ENV, features="quick", steps=60, learning_starts=12, checkpoint_every=0, select_every=0,
                batch_size=16, target_update_interval=20)
    return TrainConfig(**{**base, **kwargs})


# ------------------------------------------------------------------------------ the vec env
def test_vec_env_steps_as_sb3s_dummy_vec_env_does(controlled_pair):
    """Same envs, seeds and actions: the observations, rewards, dones, terminal observations and
    timeout flags of DummyVecEnv, and each finished env has started its next episode."""
    n, seeds = 3, [11, 12, 13]
    vec = SwitchVecEnv(_envs(controlled_pair, n))
    ref_envs = _envs(controlled_pair, n)
    ref = DummyVecEnv([lambda e=e: e for e in ref_envs])
    assert (vec.num_envs, vec.observation_space, vec.action_space) == (n, ref.observation_space, ref.action_space)
    vec.seed(seeds)
    ref.seed(seeds[0])  # SB3's rule: seed + i
    ref._seeds = list(seeds)
    obs, ref_obs = vec.reset(), ref.reset()
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(120):
        for k in obs:
            assert obs[k].shape == (n, *vec.observation_space[k].shape) and obs[k].dtype == np.float32
            np.testing.assert_array_equal(obs[k], ref_obs[k])
        actions = rng.integers(0, 2, size=n)
        obs, rewards, dones, infos = vec.step(actions)
        ref_obs, ref_rewards, ref_dones, ref_infos = ref.step(actions)
        np.testing.assert_array_equal(rewards, ref_rewards)
        np.testing.assert_array_equal(dones, ref_dones)
        assert rewards.dtype == np.float32 and dones.dtype == bool and len(infos) == n
        for i in range(n):
            assert infos[i]["TimeLimit.truncated"] == ref_infos[i]["TimeLimit.truncated"]
            assert ("terminal_observation" in infos[i]) == bool(dones[i])
            if dones[i]:
                finished += 1
                final = infos[i]["terminal_observation"]
                assert vec.observation_space.contains(final)
                for k in final:
                    np.testing.assert_array_equal(final[k], ref_infos[i]["terminal_observation"][k])
                assert vec.envs[i].accounting.steps == 0  # reset at once: the next episode's first state
                assert vec.reset_infos[i]["accounting"].steps == 0
    assert finished >= n  # every env played an episode to its end and went on
    vec.close()
    ref.close()


def test_vec_env_reaches_its_switch_envs(controlled_pair):
    vec = SwitchVecEnv(_envs(controlled_pair, 2, call_cost=0.1))
    assert vec.get_attr("call_cost") == [0.1, 0.1]
    vec.env_method("set_call_cost", 0.3, indices=[1])
    assert vec.get_attr("call_cost") == [0.1, 0.3]
    vec.set_call_cost(0.2)
    vec.set_attr("call_cost", 0.4, indices=0)
    assert vec.get_attr("call_cost") == [0.4, 0.2]
    assert vec.env_is_wrapped(SwitchEnv) == [True, True] and vec.env_is_wrapped(Monitor) == [False, False]
    assert vec.seed(5) == [5, 6]  # SB3's rule for one int
    assert vec.seed([7, None]) == [7, None]
    with pytest.raises(ValueError, match="2 envs"):
        vec.seed([1, 2, 3])
    vec.reset()
    assert vec.quick is controlled_pair[0] and vec.deepthink is controlled_pair[1]
    assert vec.step_limits_seen == {64}
    vec.set_options({"x": 1})
    with pytest.raises(NotImplementedError):
        vec.reset()
    vec.close()


# ------------------------------------------------------------------------------ seeds and config
@pytest.mark.parametrize("seed", [0, 3, 9, 10, 2**33])
def test_training_env_seeds_are_distinct_training_seeds(seed):
    config = TrainConfig(seed=seed, num_envs=16)
    seeds = training_env_seeds(config)
    assert len(set(seeds)) == 16 and seeds[0] == training_env_seed(seed)
    assert all(LEGACY_RUN_SEEDS <= s < OFFLINE_SEED_END for s in seeds[1:])
    held = set().union(*(heldout_seeds(s, SEED_STRIDE) for s in (*range(10), seed)))
    assert not held & set(seeds)
    from londi.core.seeds import training_seeds

    assert not set(training_seeds(seed, config.select_episodes, SELECTION_PURPOSE)) & set(seeds)
    assert training_env_seeds(TrainConfig(seed=seed, num_envs=4)) == seeds[:4]  # env i's seed is its own
    assert training_env_seeds(TrainConfig(seed=seed)) == [training_env_seed(seed)]


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "2", 10**6])
def test_num_envs_is_validated(value):
    with pytest.raises(ConfigError, match="num_envs"):
        TrainConfig(num_envs=value).validate()


def test_old_config_files_train_one_env():
    data = TrainConfig().to_dict()
    assert data["num_envs"] == 1
    del data["num_envs"]
    assert TrainConfig.from_dict(data).num_envs == 1


# ------------------------------------------------------------------------------ training runs
def test_a_vec_run_starts_each_env_on_its_seed_and_keeps_the_replay_ratio(controlled_pair, tmp_path, monkeypatch):
    begin = SwitchEnv.begin_reset
    seen: list[int] = []

    def recording(self, *, seed=None, options=None):
        if seed is not None:
            seen.append(int(seed))
        return begin(self, seed=seed, options=options)

    monkeypatch.setattr(SwitchEnv, "begin_reset", recording)
    quick, deep = controlled_pair
    config = _small(num_envs=4, seed=3)
    model = train_switch(config, tmp_path / "run", quick=quick, deepthink=deep, progress=False)
    assert seen == training_env_seeds(config)  # each env's first episode, then no more reseeding
    assert isinstance(model.get_env(), VecMonitor) and isinstance(model.get_env().unwrapped, SwitchVecEnv)
    assert model.num_timesteps == 60 and model.n_envs == 4
    # one gradient step per transition after learning_starts, as with one env: 60 - 12
    assert model._n_updates == 60 - 12
    assert json.loads((tmp_path / "run" / "config.json").read_text())["num_envs"] == 4
    assert read_description(tmp_path / "run")["max_steps"] == 64
    model.get_env().close()

    one = train_switch(_small(seed=3), tmp_path / "one", quick=quick, deepthink=deep, progress=False)
    assert isinstance(one.get_env(), DummyVecEnv)  # one env: the lone-env path as before
    assert one._n_updates == 60 - 12 and (one.train_freq.frequency, one.gradient_steps) == (1, 1)

    seen.clear()
    again = train_switch(config, tmp_path / "again", quick=quick, deepthink=deep, progress=False)
    for a, b in zip(model.policy.parameters(), again.policy.parameters()):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())  # same seed, same run


def test_replay_schedule_with_a_train_freq():
    from londi.learn.train import _replay_schedule

    assert _replay_schedule(TrainConfig(train_freq=4)) == {}
    assert _replay_schedule(TrainConfig(train_freq=1, num_envs=8)) == {"train_freq": 1, "gradient_steps": 8}
    assert _replay_schedule(TrainConfig(train_freq=4, num_envs=8)) == {"train_freq": 1, "gradient_steps": 2}
    assert _replay_schedule(TrainConfig(train_freq=4, num_envs=2)) == {"train_freq": 2, "gradient_steps": 1}
    assert _replay_schedule(TrainConfig(train_freq=3, num_envs=2)) == {"train_freq": 3, "gradient_steps": 2}


def test_a_vec_run_checkpoints_off_multiples_and_resumes(controlled_pair, tmp_path):
    """3 envs step the count by 3: checkpoints every 21 transitions land on 21 and 42; a run
    that lost its model after the one at 42 resumes there and finishes."""
    quick, deep = controlled_pair
    config = _small(num_envs=3, checkpoint_every=21)
    run = tmp_path / "run"
    train_switch(config, run, quick=quick, deepthink=deep, progress=False).get_env().close()
    state = json.loads((run / CHECKPOINT_DIR / "state.json").read_text())
    assert state["num_timesteps"] == 42
    (run / MODEL_FILE).unlink()  # as if killed after the last checkpoint
    resumed = train_switch(config, run, quick=quick, deepthink=deep, progress=False)
    assert resumed.num_timesteps == 60 and resumed.replay_buffer.n_envs == 3
    # the checkpoint is written in the step's callback, before SB3 stores that step (as with one
    # env): 13 steps of 3 envs restored, 6 more played
    assert resumed.replay_buffer.pos == 19
    resumed.get_env().close()


def test_a_vec_run_with_selection_evaluates_on_crossing(controlled_pair, tmp_path):
    quick, deep = controlled_pair
    config = _small(num_envs=4, steps=48, select_every=30, select_episodes=2)
    train_switch(config, tmp_path / "run", quick=quick, deepthink=deep, progress=False).get_env().close()
    steps = [e["step"] for e in json.loads((tmp_path / "run" / "selection.json").read_text())["evaluations"]]
    assert steps == [32, 48]


def test_a_lagrangian_vec_run_moves_lambda(controlled_pair, tmp_path):
    quick, deep = controlled_pair
    config = _small(num_envs=3, steps=150, cost=0.0, cost_limit=0.0, lambda_lr=0.05)
    model = train_switch(config, tmp_path / "run", quick=quick, deepthink=deep, progress=False)
    assert model.lagrangian_multiplier > 0  # random warm-up calls exceed a limit of 0
    assert len(model._episode_calls) > 3
    model.get_env().close()


def test_a_budgeted_vec_run_never_exceeds_its_cap(controlled_pair, tmp_path, monkeypatch):
    step_wait = SwitchVecEnv.step_wait
    calls: list[int] = []

    def recording(self):
        out = step_wait(self)
        calls.extend(info["accounting"].calls["deepthink"] for info in out[3])
        for k, mask in enumerate(out[0]["action_mask"]):  # a new episode's mask, or the one at the cap
            assert mask[1] == (1.0 if self.envs[k].budget_left > 0 else 0.0)
        return out

    monkeypatch.setattr(SwitchVecEnv, "step_wait", recording)
    quick, deep = controlled_pair
    model = train_switch(_small(num_envs=4, budget=2, steps=200, learning_starts=40), tmp_path / "run",
                         quick=quick, deepthink=deep, progress=False)
    assert len(calls) == 200 and max(calls) == 2  # the cap was reached, never passed
    model.get_env().close()


# ------------------------------------------------------------------------------ the shipped pair
@pytest.fixture(scope="module")
def dagger_pair():
    from londi.agents.lm import load_policy

    return load_policy("quick-dagger"), load_policy("deepthink-dagger")


def test_a_real_vec_run_trains_a_switch_that_loads_and_evaluates(dagger_pair, tmp_path):
    from londi.evaluation.loop import evaluate_methods
    from londi.evaluation.registry import build_method

    quick, deep = dagger_pair
    run = tmp_path / "run"
    config = TrainConfig(env=ENV, num_envs=4, steps=300, learning_starts=100, select_every=0, checkpoint_every=0)
    model = train_switch(config, run, quick=quick, deepthink=deep, progress=False)
    model.get_env().close()
    assert (run / MODEL_FILE).is_file()
    description = read_description(run)
    assert description["max_steps"] == 64 and description["step_limits"] == [64]
    assert description["policies"]["quick"]["sha256"] == quick.fingerprint()["sha256"]
    loaded, loaded_config = load_switch(run, quick=quick, deepthink=deep)
    assert loaded_config == config
    method = build_method("londi", quick=quick, deepthink=deep, env_id=ENV, switch=(loaded, loaded_config))
    results = evaluate_methods({"londi": method}, env_id=ENV, episodes=4, seed=0, progress=False, num_envs=2)
    entry = results["methods"]["londi"]
    assert entry["episodes"] == 4 and len(entry["per_episode"]) == 4


def test_cli_train_with_num_envs(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--env", ENV, "--num-envs", "2", "--steps", "200", "--select-every", "0",
                 "--no-progress", "--out", str(run)]) == 0
    assert "trained switch written" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["num_envs"] == 2
    assert (run / MODEL_FILE).is_file() and read_description(run)["max_steps"] == 64
    with pytest.raises(SystemExit):
        main(["train", "--num-envs", "0", "--no-progress"])
