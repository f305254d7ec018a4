"""The switch learner on a controlled case, save/load, and the train CLI's errors."""
import numpy as np
import pytest

from londi.cli import main
from londi.core.errors import LondiError
from londi.learn.train import TrainConfig, build_learner, load_switch, train_switch
from londi.rules import LearnedSwitch
from londi.switch.rollout import build_switch_env

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
    """Switches trained at two costs on the controlled pair (QUICK stuck on every turn). At
    c = 2 a call costs more than an episode can earn (reward <= 1), so calling never pays.
    The controlled QUICK makes episodes long and the reward sparse, the case n-step targets are
    for: with one-step targets (the default, chosen for the short episodes of the default pair)
    4,000 steps leave the switch calling on about half of the hard states."""
    from conftest import ControlledPolicy

    out = {}
    for cost in (0.1, 2.0):
        quick = ControlledPolicy(name="controlled-quick", fail_on_hard=True)
        deep = ControlledPolicy(name="controlled-deepthink", fail_on_hard=False, seconds=0.02)
        env = build_switch_env(ENV, quick, deep, call_cost=cost)
        model = build_learner(TrainConfig(cost=cost, steps=4000, seed=0, n_steps=16), env)
        model.learn(4000)
        out[cost] = (model, env)
    return out


@pytest.fixture
def untrained(controlled_pair):
    """A learner with its initial weights: the mechanism tests (re-weighting, the numpy copy,
    save/load) need values, not good ones."""
    quick, deep = controlled_pair
    env = build_switch_env(ENV, quick, deep, call_cost=0.1)
    return build_learner(TrainConfig(cost=0.1, seed=0), env), env


@pytest.mark.slow
def test_switch_calls_deepthink_where_it_is_needed(trained):
    model, env = trained[0.1]
    on_hard, on_easy, _ = greedy_stats(model, env)
    assert on_hard >= 0.8, on_hard
    assert on_easy <= 0.2, on_easy


@pytest.mark.slow
def test_raising_the_cost_lowers_the_call_rate(trained):
    low = greedy_stats(*trained[0.1])[2]
    high = greedy_stats(*trained[2.0])[2]
    assert high < low


def test_changing_c_reweights_without_relearning(untrained):
    """``set_call_cost`` changes the weight on Q_c in every greedy choice and leaves the learned
    values alone. (Whether a new c changes the decisions depends on the values: in this case
    QUICK's stuck states make the calls unavoidable, so Q_c already favours calling there.)"""
    import torch as th

    model, env = untrained
    states = []
    for s in EVAL_SEEDS[:10]:
        obs, _ = env.reset(seed=s)
        done = False
        while not done:
            states.append(obs)
            obs, _, term, trunc, _ = env.step(int(model.predict(obs, deterministic=True)[0]))
            done = term or trunc
    batch = {k: th.as_tensor(np.stack([np.asarray(o[k]) for o in states])) for k in states[0]}
    with th.no_grad():
        q_r, q_c = model.q_net.reward_cost_values(batch)
    mask = batch["action_mask"].numpy() > 0.5
    try:
        for c in (0.0, 3.0, 100.0):
            model.set_call_cost(c)
            want = np.where(mask, (q_r - c * q_c).numpy(), -np.inf).argmax(axis=1)
            got = np.array([int(model.predict(o, deterministic=True)[0]) for o in states])
            np.testing.assert_array_equal(got, want)
            # the evaluation's direct greedy path makes the same choices, masks included
            fast = np.array([model.greedy_action(o) for o in states])
            np.testing.assert_array_equal(fast, want)
            spent = [{**o, "action_mask": np.array([1.0, 0.0], np.float32)} for o in states]
            assert all(model.greedy_action(o) == 0 for o in spent)
            assert model._greedy_cache[2] is not None  # the numpy copy served these, not the fallback
            with th.no_grad():
                np.testing.assert_allclose(model.q_net(batch).numpy()[mask], (q_r - c * q_c).numpy()[mask], rtol=1e-5)
    finally:
        model.set_call_cost(0.1)
    with th.no_grad():
        after = model.q_net.reward_cost_values(batch)
    assert th.equal(after[0], q_r) and th.equal(after[1], q_c)


def test_greedy_action_follows_weight_updates(untrained):
    """The numpy copy behind ``greedy_action`` is rebuilt when a weight changes in place (an
    optimizer step, a loaded state dict), so it never acts on stale values."""
    import torch as th

    model, env = untrained
    obs, _ = env.reset(seed=500_003)
    before = model.greedy_action(obs)
    last = model.q_net.q_net[-1]
    saved = {k: v.clone() for k, v in model.q_net.state_dict().items()}
    try:
        with th.no_grad():  # make the other action win by a wide margin, in place
            last.bias[1 - before] += 1e6
        assert model.greedy_action(obs) == 1 - before == int(model.predict(obs, deterministic=True)[0])
    finally:
        model.q_net.load_state_dict(saved)
    assert model.greedy_action(obs) == before


def test_saved_and_reloaded_switch_makes_the_same_decisions(untrained, tmp_path):
    from londi.learn.dqn import LondiDQN

    model, env = untrained
    model.save(tmp_path / "m.zip")
    again = LondiDQN.load(tmp_path / "m.zip")
    obs, _ = env.reset(seed=500_001)
    for _ in range(20):
        a1 = model.predict(obs, deterministic=True)[0]
        a2 = again.predict(obs, deterministic=True)[0]
        assert int(a1) == int(a2) == again.greedy_action(obs)
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
    env = build_switch_env(ENV, quick, deep, features=cfg.features)
    obs, _ = env.reset(seed=3)
    assert rule.choose(obs, env.step_context()) == int(model.predict(obs, deterministic=True)[0])
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


def _filled_cost_buffer(n_steps, rewards, costs, dones, timeouts=None, size=32):
    """A CostReplayBuffer holding one env's transitions; observation i is the number i."""
    from gymnasium import spaces

    from londi.learn.dqn import CostReplayBuffer

    obs_space = spaces.Dict({"features": spaces.Box(-1e6, 1e6, (1,), np.float32)})
    buf = CostReplayBuffer(size, obs_space, spaces.Discrete(2), device="cpu", n_steps=n_steps,
                           gamma=0.5, cost_gamma=0.9)
    timeouts = timeouts or [False] * len(rewards)
    for i, (r, c, d, t) in enumerate(zip(rewards, costs, dones, timeouts)):
        info = {"env_reward": r, "deepthink_cost": c, "TimeLimit.truncated": t}
        buf.add({"features": np.array([[i]], np.float32)}, {"features": np.array([[i + 1]], np.float32)},
                np.array([[c > 0]]), np.array([r - c]), np.array([d]), [info])
    return buf


def test_n_step_targets_sum_rewards_and_costs_up_to_the_episode_end():
    # Episode A: steps 0-3 (ends with reward 1 at step 3); episode B: steps 4-6, still running.
    rewards = [0, 0, 0, 1, 0, 2, 0]
    costs = [1, 0, 1, 0, 1, 1, 0]
    dones = [False, False, False, True, False, False, False]
    buf = _filled_cost_buffer(3, rewards, costs, dones)
    data = buf._get_samples(np.array([0, 1, 3, 4, 5, 6]))
    got_r = data.rewards.numpy().ravel()
    got_c = data.costs.numpy().ravel()
    # from 0: steps 0,1,2 -> r 0, c 1 + 0 + 0.81; bootstrap from obs 3 with 0.5**3 / 0.9**3
    # from 1: steps 1,2,3 (3 ends the episode) -> r 0.25, c 0.9, done
    # from 3: the last step alone -> r 1, c 0, done
    # from 4: steps 4,5,6 -> r 2*0.5 = 1, c 1 + 0.9; bootstraps (6 is the newest, not an end)
    # from 5: steps 5,6 (6 is the newest transition: cut there) -> r 2, c 1
    # from 6: step 6 alone
    np.testing.assert_allclose(got_r, [0, 0.25, 1, 1, 2, 0], atol=1e-6)
    np.testing.assert_allclose(got_c, [1.81, 0.9, 0, 1.9, 1, 0], atol=1e-6)
    np.testing.assert_allclose(data.reward_discounts.numpy().ravel(), [0.125, 0.125, 0.5, 0.125, 0.25, 0.5])
    np.testing.assert_allclose(data.cost_discounts.numpy().ravel(), [0.729, 0.729, 0.9, 0.729, 0.81, 0.9], atol=1e-6)
    np.testing.assert_array_equal(data.dones.numpy().ravel(), [0, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(data.next_observations["features"].numpy().ravel(), [3, 4, 4, 7, 7, 7])


def test_n_step_targets_bootstrap_through_a_timeout_and_one_step_is_plain_dqn():
    rewards, costs, dones, timeouts = [0, 1, 0], [0, 0, 1], [False, True, False], [False, True, False]
    data = _filled_cost_buffer(4, rewards, costs, dones, timeouts)._get_samples(np.array([0]))
    assert data.rewards.item() == pytest.approx(0.5) and data.dones.item() == 0  # truncated: bootstrap
    assert data.next_observations["features"].item() == 2
    one = _filled_cost_buffer(1, [0, 0, 1], [1, 1, 0], [False, False, True])._get_samples(np.array([0, 1, 2]))
    np.testing.assert_allclose(one.rewards.numpy().ravel(), [0, 0, 1])
    np.testing.assert_allclose(one.reward_discounts.numpy().ravel(), [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(one.dones.numpy().ravel(), [0, 0, 1])


def test_n_steps_must_be_a_positive_integer():
    with pytest.raises(LondiError, match="n_steps"):
        TrainConfig(n_steps=0).validate()
