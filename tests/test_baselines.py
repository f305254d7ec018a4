"""Baseline switch rules (londi.rules.*) and the method registry (londi.evaluation.registry), checked with the controlled (oracle-derived) test pair:
QUICK plays the expert's action on easy states and a stuck ``toggle`` with a flat distribution
on hard ones; DEEPTHINK always plays the expert's action."""
from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

from londi.core.errors import ConfigError, UnknownChoiceError
from londi.core.seeds import HELDOUT_SEED_BASE, heldout_seeds, training_seeds
from londi.envs.base import TextObservation
from londi.evaluation.registry import build_method, method_info
from londi.rules.heuristic import HeuristicSwitch
from londi.rules.oracle import HindsightOracle
from londi.rules.router import LogisticRegression
from londi.rules.simple import FirstBSwitch, PeriodicSwitch, RandomSwitch
from londi.rules.task_router import TaskRouter, factorize_scores
from londi.rules.threshold import UncertaintySwitch, calibrate_threshold
from londi.switch.accounting import DEEPTHINK, QUICK, EpisodeAccounting
from londi.switch.context import StepContext
from londi.switch.rollout import build_switch_env, run_rule

ENV = "londi/BabyAIText-GoToLocal-v0"
MASK = {"features": np.zeros(4, np.float32), "action_mask": np.array([1.0, 1.0], np.float32)}


def call_frac(episodes) -> float:
    return sum(e.deepthink_calls for e in episodes) / sum(e.steps for e in episodes)


# ------------------------------------------------------------------------------------ seeds
def test_training_seeds_are_disjoint_from_heldout_and_reproducible():
    seeds = training_seeds(3, 50, "router-train")
    assert len(set(seeds)) == 50 and all(0 <= s < HELDOUT_SEED_BASE for s in seeds)
    assert seeds == training_seeds(3, 50, "router-train")
    assert seeds != training_seeds(3, 50, "router-calibration")
    assert not set(seeds) & set(heldout_seeds(3, 50))


# ------------------------------------------------------------------------------------ random / first-B
def test_random_hits_its_rate_and_is_reproducible(controlled_pair):
    quick, deep = controlled_pair
    env = build_switch_env(ENV, quick, deep, features=None)
    seeds = heldout_seeds(0, 12)
    eps = run_rule(RandomSwitch(rate=0.3, seed=0), env, seeds, progress=False)
    assert call_frac(eps) == pytest.approx(0.3, abs=0.06)
    again = run_rule(RandomSwitch(rate=0.3, seed=0), env, list(reversed(seeds)), progress=False)
    # the choices depend on (run seed, episode seed), not on the order of the episodes
    assert [e.deepthink_calls for e in eps] == [e.deepthink_calls for e in reversed(again)]
    other = run_rule(RandomSwitch(rate=0.3, seed=1), env, seeds, progress=False)
    assert [e.deepthink_calls for e in eps] != [e.deepthink_calls for e in other]
    assert call_frac(run_rule(RandomSwitch(rate=0.0), env, seeds[:3], progress=False)) == 0.0
    assert call_frac(run_rule(RandomSwitch(rate=1.0), env, seeds[:3], progress=False)) == 1.0


def _called_steps(rule, env, seed: int) -> tuple[list[int], int]:
    obs, _ = env.reset(seed=seed)
    rule.reset()
    called, t, done = [], 0, False
    while not done:
        obs, _, terminated, truncated, info = env.step(rule.choose(obs, env.step_context()))
        if info["choice"] == "deepthink":
            called.append(t)
        t, done = t + 1, terminated or truncated
    return called, t


@pytest.mark.parametrize("rate, period", [(0.5, 2), (0.25, 4), (1 / 3, 3), (1.0, 1)])
def test_periodic_calls_every_period_from_the_first_step(controlled_pair, rate, period):
    quick, deep = controlled_pair
    env = build_switch_env(ENV, quick, deep, features=None)
    rule = build_method("periodic", quick=quick, deepthink=deep, rate=rate).rule
    assert isinstance(rule, PeriodicSwitch)
    for seed in heldout_seeds(0, 4):
        called, steps = _called_steps(rule, env, seed)
        assert called == list(range(0, steps, period))


def test_periodic_respects_the_budget_and_rate_zero(controlled_pair):
    quick, deep = controlled_pair
    env = build_switch_env(ENV, quick, deep, features=None, budget=2)
    for seed in heldout_seeds(0, 4):
        called, steps = _called_steps(PeriodicSwitch(rate=0.5), env, seed)
        assert called == [0, 2][: (steps + 1) // 2]
        assert _called_steps(PeriodicSwitch(rate=0.0), env, seed)[0] == []
    with pytest.raises(ConfigError):
        PeriodicSwitch(rate=1.5)


def test_first_b_calls_on_the_first_b_steps(controlled_pair):
    quick, deep = controlled_pair
    method = build_method("first-b", quick=quick, deepthink=deep, budget=2)
    assert isinstance(method.rule, FirstBSwitch) and method.budget == 2
    env = build_switch_env(ENV, quick, deep, features=None, budget=method.budget)
    for e in run_rule(method.rule, env, heldout_seeds(0, 6), progress=False):
        assert e.deepthink_calls == min(2, e.steps)


# ------------------------------------------------------------------------------------ heuristic
class _Episode:
    """Drives a rule through a constructed episode: texts seen and actions executed."""

    def __init__(self, rule):
        self.rule = rule
        self.acc = EpisodeAccounting()
        self.text_obs = self._obs("start")
        rule.reset()

    def ctx(self) -> StepContext:
        return StepContext(text_obs=self.text_obs, quick_decision=None, accounting=self.acc,
                           budget_left=float("inf"), consults_quick=False)

    @staticmethod
    def _obs(text: str) -> TextObservation:
        return TextObservation(goal="go to the red ball", text=text, admissible_actions=("turn left", "toggle"))

    def step(self, action: str, next_text: str, *, invalid: bool = False, reward: float = 0.0) -> int:
        choice = self.rule.choose(MASK, self.ctx())
        self.acc.invalid_actions += int(invalid)
        self.text_obs = self._obs(next_text)
        self.rule.observe({"accounting": self.acc, "text_obs": self.text_obs, "executed_action": action,
                           "env_reward": reward, "choice": "deepthink" if choice == DEEPTHINK else "quick"})
        return choice


def test_heuristic_escalates_after_two_failed_actions_then_returns_to_quick():
    rule = HeuristicSwitch(fail_limit=2, fail_window=3, deepthink_steps=2, loop_window=0, repeat_limit=0, patience=0)
    ep = _Episode(rule)
    # one failed action (the observation does not change) is not enough
    assert ep.step("toggle", "start") == QUICK
    assert ep.step("turn left", "a") == QUICK
    # a second failure within the window of 3 triggers DEEPTHINK for 2 steps, then QUICK again
    assert ep.step("toggle", "a") == QUICK
    assert [ep.step("turn left", t) for t in ("b", "c", "d")] == [DEEPTHINK, DEEPTHINK, QUICK]
    assert rule.trigger_counts["failed actions"] == 1


def test_heuristic_escalates_after_two_invalid_actions():
    rule = HeuristicSwitch(fail_limit=2, deepthink_steps=1, loop_window=0, repeat_limit=0, patience=0)
    ep = _Episode(rule)
    # the text changes, but the env counted a non-admissible answer twice
    assert ep.step("turn left", "a", invalid=True) == QUICK
    assert ep.step("turn left", "b", invalid=True) == QUICK
    assert ep.step("turn left", "c") == DEEPTHINK
    assert ep.step("turn left", "d") == QUICK


def test_heuristic_loop_repeat_and_no_reward_triggers():
    loop = _Episode(HeuristicSwitch(loop_window=8, repeat_limit=0, patience=0, deepthink_steps=1))
    choices = [loop.step("turn left", t) for t in ("n", "e", "s", "start", "n", "e")]
    # four left turns bring back the start view; the 5th (start, turn left) pair closes the loop
    assert choices == [QUICK] * 5 + [DEEPTHINK]
    assert loop.rule.trigger_counts["loop"] == 1

    rep = _Episode(HeuristicSwitch(loop_window=0, repeat_limit=3, patience=0, deepthink_steps=1))
    assert [rep.step("go forward", t) for t in "abcd"] == [QUICK, QUICK, QUICK, DEEPTHINK]

    dry = _Episode(HeuristicSwitch(loop_window=0, repeat_limit=0, patience=3, deepthink_steps=1))
    actions = ("turn left", "go forward", "toggle", "turn left")
    assert [dry.step(a, t) for a, t in zip(actions, "abcd")] == [QUICK, QUICK, QUICK, DEEPTHINK]
    rewarded = _Episode(HeuristicSwitch(loop_window=0, repeat_limit=0, patience=3, deepthink_steps=1))
    rewards = (0.0, 0.0, 0.5, 0.0)
    assert [rewarded.step(a, t, reward=r) for a, t, r in zip(actions, "abcd", rewards)] == [QUICK] * 4


def test_heuristic_rescues_a_stuck_quick(controlled_pair):
    quick, deep = controlled_pair
    method = build_method("heuristic", quick=quick, deepthink=deep)
    assert method.rule.features is None  # it does not consult QUICK in advance
    env = build_switch_env(ENV, quick, deep, features=None)
    seeds = heldout_seeds(0, 6)
    eps = run_rule(method.rule, env, seeds, progress=False)
    from londi.rules import AlwaysQuick

    stuck = run_rule(AlwaysQuick(), env, seeds, progress=False)
    assert np.mean([e.success for e in eps]) > np.mean([e.success for e in stuck])
    assert method.rule.trigger_counts["failed actions"] > 0
    with pytest.raises(ConfigError, match="fail_limit"):
        HeuristicSwitch(fail_limit=0)


# ------------------------------------------------------------------------------------ uncertainty
def test_calibrate_threshold_randomises_ties():
    t, q = calibrate_threshold([0.0, 0.0, 1.0, 1.0, 1.0, 1.0], 0.5)
    assert t == 1.0 and q == pytest.approx(0.75)  # 4 scores at 1: escalating 3 of them gives 3/6
    rng = np.random.default_rng(0)
    for scores in (np.arange(10.0), rng.integers(0, 4, 37).astype(float), rng.normal(size=50)):
        for rate in (0.05, 0.3, 0.77):
            t, q = calibrate_threshold(scores, rate)
            expected = (np.sum(scores > t) + q * np.sum(scores == t)) / len(scores)
            assert expected == pytest.approx(rate)
    assert calibrate_threshold([1.0], 0.0) == (math.inf, 0.0)
    assert calibrate_threshold([1.0], 1.0) == (-math.inf, 1.0)
    with pytest.raises(ConfigError):
        calibrate_threshold([1.0], 1.5)


def test_uncertainty_calibrated_to_its_target_rate_on_calibration_episodes(controlled_pair):
    quick, deep = controlled_pair
    method = build_method("uncertainty", quick=quick, deepthink=deep, rate=0.25, calibration_episodes=8, seed=0)
    rule = method.rule
    assert isinstance(rule, UncertaintySwitch) and rule.features == "quick"
    cal = rule.calibration
    assert cal["target_rate"] == 0.25
    assert cal["achieved_rate"] == pytest.approx(0.25, abs=0.05)
    # the reported rate is what the rule really does on those (training-range) episodes
    seeds = training_seeds(0, 8, "uncertainty-calibration")
    assert all(s < HELDOUT_SEED_BASE for s in seeds)
    env = build_switch_env(ENV, quick, deep, features="quick")
    assert call_frac(run_rule(rule, env, seeds, progress=False)) == pytest.approx(cal["achieved_rate"])
    # the calibration's LM calls are metered and reported apart from the evaluation
    info = method_info(method)
    cost = info["offline_cost"][0]
    assert cost["calls"]["quick"] > 0 and cost["device_seconds"]["quick"] > 0
    assert set(cost["env_seeds"]) == set(seeds)


def test_uncertainty_fixed_threshold_escalates_on_flat_distributions(controlled_pair):
    quick, deep = controlled_pair
    method = build_method("uncertainty", quick=quick, deepthink=deep, threshold=0.5, measure="margin")
    assert method.rule.offline_cost == []  # a fixed threshold needs no calibration episodes
    env = build_switch_env(ENV, quick, deep, features="quick")
    # QUICK is flat exactly on the hard states, where it is wrong: this acts like the oracle
    eps = run_rule(method.rule, env, heldout_seeds(0, 5), progress=False)
    assert all(e.success for e in eps)
    assert [e.deepthink_calls for e in eps] == [e.quick_oracle_disagreements for e in eps]


# ------------------------------------------------------------------------------------ router
def test_logistic_regression_learns_and_handles_one_class():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = (x[:, 0] - 0.5 * x[:, 2] > 0).astype(int)
    model = LogisticRegression(l2=0.1).fit(x, y)
    assert np.mean((model.predict_proba(x) > 0.5) == y) > 0.95
    const = LogisticRegression().fit(x[:10], np.zeros(10))
    assert np.allclose(const.predict_proba(x[:3]), 0.5 / 11)


def test_router_learns_where_quick_is_wrong(controlled_pair):
    quick, deep = controlled_pair
    method = build_method("router", quick=quick, deepthink=deep, seed=0, train_episodes=6)
    rule = method.rule
    assert rule.features == "quick" and rule.threshold == 0.5
    assert rule.train_stats["states"] > 0 and 0 < rule.train_stats["quick_wrong_frac"] < 1
    logged = rule.offline_cost[0]
    assert logged.env_seeds and all(s < HELDOUT_SEED_BASE for s in logged.env_seeds)
    env = build_switch_env(ENV, quick, deep, features="quick")
    eps = run_rule(rule, env, heldout_seeds(0, 6), progress=False)
    assert np.mean([e.success for e in eps]) >= 5 / 6
    calls = sum(e.deepthink_calls for e in eps)
    wrong = sum(e.quick_oracle_disagreements for e in eps)
    assert 0 < calls <= 1.5 * wrong


# ------------------------------------------------------------------------------------ task router
def test_factorization_predicts_a_missing_entry():
    rng = np.random.default_rng(1)
    b, c = rng.normal(0, 0.2, 6), rng.normal(0, 0.2, 6)
    u, v = rng.normal(0, 0.5, 6), rng.normal(0, 0.5, 6)
    truth = 0.5 + b[:, None] + c[None, :] + np.outer(u, v)
    weights = np.ones_like(truth)
    weights[2, 3] = 0.0
    fact = factorize_scores(np.where(weights > 0, truth, 0.0), weights, rank=1, l2=1e-4, iterations=300)
    assert fact.predict()[2, 3] == pytest.approx(truth[2, 3], abs=0.05)
    with pytest.raises(ValueError):
        factorize_scores(np.zeros((2, 2)), np.zeros((2, 2)))


def test_task_router_allocates_deepthink_by_predicted_gain():
    records = []
    for task, (q_succ, d_succ) in {"easy": (9, 10), "mid": (5, 10), "hard": (0, 10)}.items():
        for i in range(10):
            records.append(("quick", task, i < q_succ, 10))
            records.append(("deepthink", task, i < d_succ, 10))
    free = TaskRouter(min_gain=0.3).fit(records)
    assert free.deepthink_prob == {"easy": 0.0, "hard": 1.0, "mid": 1.0}
    rated = TaskRouter(rate=0.5).fit(records)
    # equal lengths: rate 0.5 = half of the episodes; the hard task first, then half of "mid"
    assert rated.deepthink_prob["hard"] == 1.0 and rated.deepthink_prob["easy"] == 0.0
    assert rated.deepthink_prob["mid"] == pytest.approx(0.5, abs=1e-3)
    single = TaskRouter(rate=0.25).fit([r for r in records if r[1] == "hard"])
    assert single.tasks == ["hard"] and single.deepthink_prob["hard"] == pytest.approx(0.25, abs=1e-3)


@pytest.mark.parametrize("env_id", [ENV, "londi/BabyAIText-MixedTrainLocal-v0"])
def test_task_router_picks_one_model_per_episode(controlled_pair, env_id):
    quick, deep = controlled_pair
    method = build_method("task-router", quick=quick, deepthink=deep, env_id=env_id, rate=0.3,
                           train_episodes=6)
    rule = method.rule
    levels = {"londi/BabyAIText-GoToLocal-v0": {"GoToLocal"}}.get(env_id, {"GoToLocal", "PickupLoc", "PutNextLocal"})
    assert set(rule.tasks) <= levels and rule.tasks  # one column for a single-level env
    env = build_switch_env(env_id, quick, deep, features=None)
    eps = run_rule(rule, env, heldout_seeds(0, 8), progress=False)
    assert all(e.deepthink_calls in (0, e.steps) for e in eps)
    assert method_info(method)["task_matrix"]["tasks"] == rule.tasks


# ------------------------------------------------------------------------------------ oracle
def test_hindsight_oracle_calls_exactly_where_quick_disagrees(controlled_pair):
    quick, deep = controlled_pair
    method = build_method("oracle", quick=quick, deepthink=deep)
    assert isinstance(method.rule, HindsightOracle) and method.rule.is_oracle and method.rule.features == "quick"
    env = build_switch_env(ENV, quick, deep, features="quick")
    eps = run_rule(method.rule, env, heldout_seeds(0, 8), progress=False)
    assert sum(e.deepthink_calls for e in eps) > 0
    assert [e.deepthink_calls for e in eps] == [e.quick_oracle_disagreements for e in eps]
    assert [e.taken_oracle_disagreements for e in eps] == [0] * len(eps)
    assert all(e.success for e in eps)


# ------------------------------------------------------------------------------------ factory / CLI
def test_build_method_errors_name_valid_choices(controlled_pair):
    quick, deep = controlled_pair
    with pytest.raises(UnknownChoiceError, match="random"):
        build_method("randm", quick=quick, deepthink=deep)
    with pytest.raises(ConfigError, match="rate"):
        build_method("random", quick=quick, deepthink=deep, rate=1.5)
    with pytest.raises(ConfigError, match="budget"):
        build_method("first-b", quick=quick, deepthink=deep)
    with pytest.raises(UnknownChoiceError, match="deepthink_steps"):
        build_method("heuristic", quick=quick, deepthink=deep, deepthink_step=2)
    with pytest.raises(UnknownChoiceError, match="env id"):
        build_method("oracle", quick=quick, deepthink=deep, env_id="londi/Nope-v0")


def test_cli_builds_every_baseline_from_eval_args(controlled_pair):
    from londi.cli import build_method, method_names

    quick, deep = controlled_pair
    assert {"random", "periodic", "first-b", "heuristic", "uncertainty", "router", "task-router",
            "oracle"} <= set(method_names())
    args = argparse.Namespace(env=None, seed=0, rate=0.2, budget=None, switch=None, no_progress=True)
    method = build_method("random", args, quick, deep)
    assert method.rule.rate == 0.2 and method.budget is None
    args.budget = 3
    method = build_method("first-b", args, quick, deep)
    assert method.rule.budget == 3 and method.budget == 3


class _Deterministic:
    """A non-oracle policy whose answer depends only on what it sees (so it may be cached)."""

    @staticmethod
    def make(name: str, seconds: float):
        import zlib

        from londi.agents.base import Decision, TextPolicy
        from londi.core.meter import CallRecord

        class Policy(TextPolicy):
            def __init__(self):
                self.name, self.calls = name, 0

            def act(self, obs):
                self.calls += 1
                h = zlib.crc32((obs.text + name).encode())
                probs = np.full(len(obs.admissible_actions), 1.0)
                probs[h % len(probs)] += (h >> 8) % 7  # flat to peaked, depending on the state
                probs /= probs.sum()
                action = obs.admissible_actions[int(np.argmax(probs))]
                return Decision(action=action, probs=probs,
                                record=CallRecord(model=name, device="sim", device_seconds=seconds,
                                                  wall_seconds=seconds, device_measured=True))

        return Policy()


def test_offline_calls_are_cached_and_metered_honestly():
    quick = _Deterministic.make("q", 0.01)
    deep = _Deterministic.make("d", 0.1)
    method = build_method("uncertainty", quick=quick, deepthink=deep, rate=0.3, calibration_episodes=3)
    cost = method_info(method)["offline_cost"][0]
    # repeated questions (every round replays the same episodes) are answered from the cache ...
    assert cost["cache_hits"]["quick"] > 0 and quick.calls == cost["calls"]["quick"] - cost["cache_hits"]["quick"]
    # ... and only the real calls cost device-seconds
    assert cost["device_seconds"]["quick"] == pytest.approx(0.01 * quick.calls)
    assert cost["device_seconds"]["deepthink"] == pytest.approx(0.1 * deep.calls)
    assert method.quick is quick and method.deepthink is deep  # the evaluation uses the uncached pair
