"""``LondiAgent``: a trained switch in a user's own loop makes the choices ``londi eval`` makes,
and a saved switch describes itself (``switch.json``) and refuses other policies."""
from __future__ import annotations

import json

import pytest

from londi.agent import LondiAgent
from londi.agents.lm import load_policy
from londi.cli import main
from londi.core.errors import ConfigError
from londi.core.seeds import heldout_seeds
from londi.envs import make_env
from londi.learn.train import TrainConfig, load_switch, train_switch
from londi.switch.card import SWITCH_FILE, read_description

ENV = "londi/BabyAIText-GoToLocal-v0"
EPISODES = 6


@pytest.fixture(scope="module")
def pair():
    return load_policy("quick-dagger"), load_policy("deepthink-dagger")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, pair):
    """A switch from a short real run on the default pair (a mechanism test: its quality is moot)."""
    quick, deep = pair
    folder = tmp_path_factory.mktemp("agent") / "run"
    config = TrainConfig(env=ENV, steps=400, learning_starts=100, select_every=0, checkpoint_every=0, seed=0)
    model = train_switch(config, folder, quick=quick, deepthink=deep, progress=False)
    model.get_env().close()
    return folder


def _play(agent: LondiAgent, seed: int) -> dict:
    env = make_env(ENV)
    try:
        _, info = env.reset(seed=seed)
        agent.reset(seed=seed)
        choices, actions, done = [], [], False
        while not done:
            step = agent.act(info["text_obs"])
            choices.append(step.choice)
            actions.append(step.action)
            _, reward, term, trunc, info = env.step(step.action)
            agent.feedback(reward)
            done = term or trunc
        return {"success": bool(info["success"]), "steps": len(actions), "choices": choices, "actions": actions,
                "deepthink_calls": step.accounting.calls["deepthink"]}
    finally:
        env.close()


def test_the_run_describes_itself(run_dir, pair):
    description = read_description(run_dir)
    assert description is not None and (run_dir / SWITCH_FILE).is_file()
    assert description["features"]["spec"] == TrainConfig().features
    model, _ = load_switch(run_dir)
    assert description["features"]["dim"] == model.observation_space["features"].shape[0]
    env = make_env(ENV)
    env.reset(seed=0)
    assert description["max_steps"] == env.unwrapped.max_steps == 64 and description["step_limits"] == [64]
    assert description["budget"] == {"budget": None, "cost": TrainConfig().cost, "cost_limit": None}
    quick, deep = pair
    assert description["policies"]["quick"] == quick.fingerprint()
    assert description["policies"]["deepthink"]["sha256"] == deep.fingerprint()["sha256"]
    assert description["policies"]["quick"]["sha256"] != description["policies"]["deepthink"]["sha256"]


def test_agent_makes_the_choices_of_londi_eval(run_dir, pair, tmp_path):
    out = tmp_path / "r.json"
    assert main(["eval", "--method", "londi", "--switch", str(run_dir), "--episodes", str(EPISODES),
                 "--seed", "0", "--no-progress", "--out", str(out)]) == 0
    per_episode = json.loads(out.read_text())["methods"]["londi"]["per_episode"]
    quick, deep = pair
    agent = LondiAgent.from_pretrained(run_dir, quick=quick, deepthink=deep)
    assert agent.max_steps == read_description(run_dir)["max_steps"]
    played = [_play(agent, s) for s in heldout_seeds(0, EPISODES)]
    for mine, theirs in zip(played, per_episode):
        assert (mine["success"], mine["steps"], mine["deepthink_calls"]) == (
            theirs["success"], theirs["steps"], theirs["deepthink_calls"])
    assert any(p["deepthink_calls"] for p in played) and any(p["steps"] > p["deepthink_calls"] for p in played)
    # the same seed gives the same episode again: the sampling policies are reseeded by reset(seed=...)
    again = _play(agent, heldout_seeds(0, 1)[0])
    assert (again["choices"], again["actions"]) == (played[0]["choices"], played[0]["actions"])


def test_act_before_reset_raises(run_dir, pair):
    quick, deep = pair
    agent = LondiAgent.from_run(run_dir, quick=quick, deepthink=deep)  # the old name still loads
    _, info = make_env(ENV).reset(seed=1)
    with pytest.raises(RuntimeError, match="reset"):
        agent.act(info["text_obs"])
    with pytest.raises(ValueError, match="seed"):
        agent.reset(seed=-1)


def test_other_policies_are_refused_unless_allowed(run_dir, pair, tmp_path, caplog):
    quick, deep = pair
    with pytest.raises(ConfigError, match="QUICK is deepthink-dagger"):
        LondiAgent.from_pretrained(run_dir, quick=deep, deepthink=deep)
    agent = LondiAgent.from_pretrained(run_dir, quick=deep, deepthink=deep, allow_policy_mismatch=True)
    assert "allowed by allow_policy_mismatch" in caplog.text
    assert _play(agent, 3)["steps"] > 0
    args = ["eval", "--method", "londi", "--switch", str(run_dir), "--quick", "deepthink-dagger", "--episodes", "1",
            "--no-progress"]
    assert main(args) == 2
    assert main([*args, "--allow-policy-mismatch"]) == 0


def test_resuming_a_run_with_other_policies_is_an_error(run_dir, pair, tmp_path):
    quick, deep = pair
    config = TrainConfig(env=ENV, steps=400, learning_starts=100, select_every=0, checkpoint_every=0, seed=0)
    with pytest.raises(ConfigError, match="other policies"):
        train_switch(config, run_dir, quick=deep, deepthink=deep, progress=False)


def test_a_switch_saved_before_the_layers_loads_and_plays_as_it_did(tmp_path):
    """A run folder from the flat layout (``londi.learner`` in its model.zip, no switch.json)."""
    import shutil
    from pathlib import Path

    fixture = Path(__file__).parent / "data" / "switch_0_1_layout"
    run = tmp_path / "old_run"
    shutil.copytree(fixture, run)
    expected = json.loads((run / "expected.json").read_text())["per_episode"]
    out = tmp_path / "r.json"
    assert main(["eval", "--method", "londi", "--switch", str(run), "--episodes", str(len(expected)), "--seed", "0",
                 "--no-progress", "--out", str(out)]) == 0
    got = json.loads(out.read_text())["methods"]["londi"]["per_episode"]
    assert [{k: e[k] for k in ("success", "steps", "deepthink_calls")} for e in got] == expected
