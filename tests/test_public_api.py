"""The public API of ``londi``: the names the README's Python section uses."""
from __future__ import annotations

import subprocess
import sys

import londi


def test_public_names_import_from_the_package():
    from londi import LondiAgent, LondiDQN, SwitchEnv, TrainConfig, load_switch, train_switch

    assert SwitchEnv.__module__ == "londi.switch.env" and LondiDQN.__module__ == "londi.learn.dqn"
    assert LondiAgent.__module__ == "londi.agent"
    assert {TrainConfig.__module__, train_switch.__module__, load_switch.__module__} == {"londi.learn.train"}
    assert set(londi.__all__) >= {"SwitchEnv", "LondiDQN", "LondiAgent", "TrainConfig", "train_switch", "load_switch"}
    assert "LondiDQN" in dir(londi)


def test_an_unknown_name_is_an_attribute_error():
    try:
        londi.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected an AttributeError")


def test_importing_the_envs_does_not_load_the_learner():
    code = "import sys, londi.envs; print('stable_baselines3' in sys.modules, 'londi.learn.dqn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_the_stable_baselines3_path(controlled_pair, tmp_path):
    """``LondiDQN("MultiInputPolicy", SwitchEnv(...)).learn(n)``, saved and loaded back."""
    from londi import LondiDQN, SwitchEnv
    from londi.envs import make_env

    quick, deep = controlled_pair
    env = SwitchEnv(make_env("londi/BabyAIText-GoToLocal-v0"), quick, deep, call_cost=0.05)
    model = LondiDQN("MultiInputPolicy", env, call_cost=0.05, learning_starts=50, seed=0).learn(200)
    assert model.num_timesteps == 200
    model.save(tmp_path / "model.zip")
    loaded = LondiDQN.load(tmp_path / "model.zip", env=env)
    obs, _ = env.reset(seed=1)
    assert loaded.greedy_action(obs) == model.greedy_action(obs)
