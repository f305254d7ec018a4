"""LONDI-B's hard cap and the Lagrangian expected-cost limit."""
import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

from londi.agents.base import Decision, TextPolicy
from londi.core.errors import ConfigError
from londi.core.meter import CallRecord
from londi.envs import make_env
from londi.envs.base import TextObservation
from londi.evaluation.metrics import summarize
from londi.learn.dqn import LondiDQN
from londi.learn.train import TrainConfig, build_learner
from londi.rules import SwitchRule
from londi.rules.calibrated import CostCalibratedSwitch, calibrate_switch
from londi.switch.env import SwitchEnv
from londi.switch.rollout import build_switch_env, run_rule

ENVS = ["londi/BabyAIText-GoToLocal-v0", "londi/BabyAIText-PickupLoc-v0", "londi/BabyAIText-MixedTrainLocal-v0"]


class RandomRule(SwitchRule):
    """Asks for DEEPTHINK with probability p, ignoring the mask (the env must enforce the cap)."""

    def __init__(self, p, seed):
        self.p = p
        self.rng = np.random.default_rng(seed)
        self.name = f"random-{p:.2f}"

    def choose(self, obs, ctx):
        return int(self.rng.random() < self.p)


class StubTextEnv(gym.Env):
    """A text game that is nothing but its shape: each episode lasts 1-40 steps (drawn at the
    reset) over 2-6 admissible actions. The hard cap is a property of the switch, not the
    game, so a stub checks it at thousands of episodes in seconds."""

    observation_space = spaces.Box(0, 1, (1,), np.float32)
    action_space = spaces.Discrete(6)
    max_steps = 40

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._length = int(self.np_random.integers(1, self.max_steps + 1))
        self._t = 0
        return np.zeros(1, np.float32), {"text_obs": self._text_obs()}

    def _text_obs(self):
        n = 2 + self._t % 5
        return TextObservation(goal="reach the end", text=f"step {self._t}", step=self._t,
                               admissible_actions=tuple(f"a{i}" for i in range(n)))

    def step(self, action):
        self._t += 1
        done = self._t >= self._length
        return np.zeros(1, np.float32), float(done), done, False, {"text_obs": self._text_obs(), "success": done}


class InstantPolicy(TextPolicy):
    """Answers at once with the first admissible action."""

    def __init__(self, name):
        self.name = name

    def act(self, obs):
        return Decision(action=obs.admissible_actions[0],
                        record=CallRecord(model=self.name, device="sim", device_measured=True))


EPISODES_PER_EXAMPLE = 25
EXAMPLES = 60  # 60 x 25 = 1500 episodes in all


@settings(max_examples=EXAMPLES, deadline=None)
@given(budget=st.integers(0, 6), p=st.floats(0.0, 1.0), seed=st.integers(0, 10_000), features=st.sampled_from([None, "bow"]))
def test_hard_cap_is_never_exceeded(budget, p, seed, features):
    env = SwitchEnv(StubTextEnv(), InstantPolicy("quick"), InstantPolicy("deepthink"), features=features, budget=budget)
    episodes = run_rule(RandomRule(p, seed), env, [seed * 100 + i for i in range(EPISODES_PER_EXAMPLE)],
                        progress=False)
    assert all(e.deepthink_calls <= budget for e in episodes)
    summary = summarize(episodes, seed=0, n_resamples=200)
    assert summary["max_deepthink_calls"] <= budget
    if p == 1.0:  # a switch that always asks spends the whole budget where the episode is long enough
        assert all(e.deepthink_calls == min(budget, e.steps) for e in episodes)


def test_hard_cap_holds_on_the_real_envs(controlled_pair):
    """The same property on BabyAI-Text levels, a few episodes each (the stub covers the space)."""
    quick, deep = controlled_pair
    for env_id in ENVS:
        env = build_switch_env(env_id, quick, deep, features="quick", budget=2, env_kwargs={"max_steps": 16})
        episodes = run_rule(RandomRule(0.7, 1), env, range(40, 46), progress=False)
        assert all(e.deepthink_calls <= 2 for e in episodes)


def test_learner_respects_the_mask_while_exploring_and_acting(controlled_pair):
    quick, deep = controlled_pair
    env = build_switch_env(ENVS[0], quick, deep, features="quick", budget=1, call_cost=0.0)
    config = TrainConfig(steps=600, learning_starts=200, budget=1, cost=0.0, exploration_fraction=1.0,
                         exploration_final_eps=1.0)
    model = build_learner(config, env)
    overrides = []

    from stable_baselines3.common.callbacks import BaseCallback

    class Watch(BaseCallback):
        def _on_step(self):
            for info in self.locals["infos"]:
                overrides.append(info["accounting"].masked_overrides)
            return True

    model.learn(600, callback=Watch())
    # epsilon = 1 throughout: every choice is random, yet never DEEPTHINK once the budget is spent
    assert overrides and max(overrides) == 0
    # greedy choice honours the mask too
    obs = {"features": np.zeros((1,) + env.observation_space["features"].shape, np.float32),
           "action_mask": np.array([[1.0, 0.0]], np.float32)}
    action, _ = model.predict(obs, deterministic=True)
    assert int(action[0]) == 0


def test_bootstrap_target_uses_only_allowed_actions(controlled_pair):
    quick, deep = controlled_pair
    env = build_switch_env(ENVS[0], quick, deep, budget=1)
    model = build_learner(TrainConfig(steps=10), env)
    net = model.q_net
    with np.errstate(all="ignore"):
        import torch as th

        obs = {"features": th.zeros((2,) + env.observation_space["features"].shape),
               "action_mask": th.tensor([[1.0, 1.0], [1.0, 0.0]])}
        q_r, q_c = net.reward_cost_values(obs)
        q_r = q_r.clone()
        q_r[:, 1] = 100.0  # DEEPTHINK looks best for both states...
        score = net.combined(q_r, q_c, obs)
        best = score.argmax(dim=1)
    assert best.tolist() == [1, 0]  # ...but is excluded where masked


def test_lambda_rises_while_violated_and_falls_back(controlled_pair):
    quick, deep = controlled_pair
    env = build_switch_env(ENVS[0], quick, deep)
    model = LondiDQN(env=env, cost_limit=2.0, lambda_lr=0.1, lagrangian_upper_bound=5.0, seed=0)
    from stable_baselines3.common.logger import configure

    model.set_logger(configure(None, []))
    lams = [model.lagrangian_multiplier]
    for calls in [6, 6, 6, 6]:  # over the limit: lambda climbs
        model._episode_calls.append(calls)
        model._dual_update()
        lams.append(model.lagrangian_multiplier)
    assert all(b > a for a, b in zip(lams, lams[1:]))
    model._episode_calls.clear()
    for calls in [0] * 30:  # under the limit: lambda falls back, never below 0
        model._episode_calls.append(calls)
        model._dual_update()
        lams.append(model.lagrangian_multiplier)
    assert lams[-1] == 0.0 and min(lams) >= 0.0
    assert float(model.q_net.cost_weight) == pytest.approx(model.call_cost + lams[-1])
    for _ in range(200):
        model._episode_calls.append(50)
        model._dual_update()
    assert model.lagrangian_multiplier == pytest.approx(5.0)  # the upper bound holds


@pytest.fixture(scope="module")
def lagrangian_switch():
    """A Lagrangian switch (c = 0, limit 1 call per episode) trained on the controlled pair, whose
    stuck QUICK makes episodes long: 16-step targets, as in tests/test_learner.py's fixture."""
    from conftest import ControlledPolicy

    quick = ControlledPolicy(name="controlled-quick", fail_on_hard=True, seconds=0.001)
    deep = ControlledPolicy(name="controlled-deepthink", fail_on_hard=False, seconds=0.02)
    env = build_switch_env(ENVS[0], quick, deep, call_cost=0.0)
    config = TrainConfig(steps=3000, cost=0.0, cost_limit=1.0, lambda_lr=0.05, learning_starts=300, features="quick",
                         n_steps=16)
    model = build_learner(config, env)
    model.learn(config.steps)
    return model, config, quick, deep


def test_lagrangian_training_lowers_calls_towards_the_limit(lagrangian_switch):
    """Controlled case: with c = 0 an unconstrained switch calls DEEPTHINK freely; a limit of
    1 call per episode drives lambda up during training and the greedy switch calls less."""
    model, _, quick, deep = lagrangian_switch
    assert model.lagrangian_multiplier > 0.0
    episodes = run_rule(_Greedy(model), build_switch_env(ENVS[0], quick, deep), list(range(500_000, 500_040)),
                        progress=False)
    mean_calls = np.mean([e.deepthink_calls for e in episodes])
    assert mean_calls <= 2.5


def test_break_even_rule_at_the_trained_weight_is_the_greedy_switch(lagrangian_switch):
    """CostCalibratedSwitch with threshold c + lambda and no tie coin makes the learner's own
    greedy choice wherever a call adds expected cost (its definition of the break-even weight)."""
    model, config, quick, deep = lagrangian_switch
    rule = CostCalibratedSwitch(model, features=config.features)
    assert rule.threshold == pytest.approx(model.cost_weight)
    env = build_switch_env(ENVS[0], quick, deep)
    checked = 0
    for s in range(500_100, 500_110):
        obs, _ = env.reset(seed=s)
        rule.reset()
        done = False
        while not done:
            greedy = int(model.predict(obs, deterministic=True)[0])
            if math.isfinite(rule.break_even_weight(obs)):
                assert rule.choose(obs, env.step_context()) == greedy
                checked += 1
            obs, _, term, trunc, _ = env.step(greedy)
            done = term or trunc
    assert checked > 20


@pytest.mark.parametrize("limit", [0.5, 2.0])
def test_calibrated_lagrangian_switch_meets_its_limit(lagrangian_switch, limit):
    """After training, the weight on Q_c is calibrated to L calls per episode on training-range
    episodes; it reaches L there and stays near it on held-out episodes."""
    model, config, quick, deep = lagrangian_switch
    rule = calibrate_switch(model, features=config.features, quick=quick, deepthink=deep, env_id=ENVS[0], seed=0,
                            calls_per_episode=limit, calibration_episodes=16)
    cal = rule.calibration
    assert cal["target_calls_per_episode"] == limit
    assert cal["achieved_calls_per_episode"] == pytest.approx(limit, rel=0.15)
    assert cal["trained_weight"] == pytest.approx(model.cost_weight)
    assert rule.offline_cost and rule.offline_cost[0].episodes > 0  # metered apart from evaluation
    episodes = run_rule(rule, build_switch_env(ENVS[0], quick, deep), list(range(500_000, 500_060)), progress=False)
    held_out = np.mean([e.deepthink_calls for e in episodes])
    assert held_out == pytest.approx(limit, rel=0.35), held_out


def test_calibration_targets_are_checked(lagrangian_switch):
    model, config, quick, deep = lagrangian_switch
    kw = dict(features=config.features, quick=quick, deepthink=deep, env_id=ENVS[0])
    with pytest.raises(ConfigError, match="exactly one"):
        calibrate_switch(model, **kw)
    with pytest.raises(ConfigError, match="calls per episode"):
        calibrate_switch(model, calls_per_episode=-1.0, **kw)
    with pytest.raises(ConfigError, match="rate"):
        calibrate_switch(model, rate=1.5, **kw)


class _Greedy(SwitchRule):
    features = "quick"

    def __init__(self, model):
        self.model = model

    def choose(self, obs, ctx):
        return int(self.model.predict(obs, deterministic=True)[0])


@pytest.mark.parametrize("kwargs, match", [
    ({"budget": -1}, "budget"),
    ({"budget": 1.5}, "budget"),
    ({"cost": -0.1}, "cost"),
    ({"cost_limit": -2.0}, "cost_limit"),
    ({"budget": 2, "cost_limit": 1.0}, "either"),
    ({"env": "londi/Nope-v0"}, "env id"),
])
def test_bad_budget_config(kwargs, match):
    with pytest.raises((ConfigError, ValueError), match=match):
        TrainConfig(**kwargs).validate()


def test_switch_env_rejects_bad_budget(controlled_pair):
    quick, deep = controlled_pair
    with pytest.raises(ValueError, match="budget"):
        SwitchEnv(make_env(ENVS[0]), quick, deep, budget=-3)
