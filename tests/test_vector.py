"""Episodes played side by side (``--num-envs``): batched LM calls, the same per-episode results.

The shipped pair on real BabyAI-Text episodes: one forward scores several prompts as the
unbatched calls do; ``evaluate_methods(num_envs=N)`` gives ``num_envs=1``'s episodes for every
kind of rule (stateless, random, with memory, learned, under a hard budget), also with the games
in worker processes; HTTP backends send a batch as concurrent requests, bounded.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import babyai_observations

from londi.agents.base import act_batch
from londi.agents.cache import CachedPolicy
from londi.agents.fallback import FallbackPolicy
from londi.agents.http import HTTPPolicy
from londi.agents.lm import load_policy
from londi.cli import main
from londi.core.errors import EnvCrashError, ModelCallError
from londi.envs import DEFAULT_ENV_ID, make_env
from londi.envs.worker import SubprocessEnv
from londi.evaluation.loop import evaluate_methods
from londi.evaluation.registry import build_method
from londi.switch.rollout import build_switch_env
from londi.switch.vector import SwitchEnvBatch, run_rule_batched

SWITCH_FIXTURE = Path(__file__).parent / "data" / "switch_0_1_layout"
EPISODE_KEYS = ("success", "return", "steps", "quick_calls", "deepthink_calls", "quick_oracle_disagreements",
                "taken_oracle_disagreements")


@pytest.fixture(scope="module")
def pair():
    return load_policy("quick-dagger"), load_policy("deepthink-dagger")


@pytest.fixture(scope="module")
def observations():
    obs = []
    for seed in (3, 4, 5):
        obs += babyai_observations(n_steps=5, seed=seed)
    return obs


def episodes(results, name):
    return [{k: e.get(k) for k in EPISODE_KEYS} for e in results["methods"][name]["per_episode"]]


# ------------------------------------------------------------------------------ one forward
@pytest.mark.parametrize("model", ["quick-dagger", "deepthink-dagger"])
def test_one_forward_scores_every_prompt_as_its_own_call_does(pair, observations, model):
    policy = pair[0] if model == "quick-dagger" else pair[1]
    single = [policy.score(o) for o in observations]
    batched = policy.score_batch(observations)
    assert len(batched) == len(single)
    for (s_scores, s_hidden, s_counts), (b_scores, b_hidden, b_counts) in zip(single, batched):
        np.testing.assert_allclose(b_scores, s_scores, atol=1e-4)
        np.testing.assert_allclose(b_hidden, s_hidden, atol=1e-4)
        assert b_counts["input_tokens"] == s_counts["input_tokens"]


def test_a_batch_draws_each_item_from_its_own_stream_and_shares_out_the_time(pair, observations):
    quick = pair[0]
    gens = [np.random.default_rng(i) for i in range(len(observations))]
    answers = quick.act_batch(observations, gens)
    for i, (obs, answer) in enumerate(zip(observations, answers)):
        quick.set_seed(i)
        alone = quick.act(obs)
        assert answer.decision.action == alone.action  # the same draw from the same stream
        assert answer.error is None and answer.timing.process_cpu_seconds >= 0
    total = sum(a.timing.wall_seconds for a in answers)
    assert total > 0 and all(a.timing.wall_seconds < total for a in answers)


def test_multi_token_actions_fall_back_to_one_call_each(tmp_path, observations):
    from conftest import save_random_gpt2

    from londi.agents.hf import HFPolicy

    policy = HFPolicy(save_random_gpt2(tmp_path / "gpt2", observations), sample=False)
    single = [policy.score(o)[0] for o in observations[:4]]
    batched = [s for s, _, _ in policy.score_batch(observations[:4])]
    for a, b in zip(single, batched):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ the same episodes
def test_num_envs_gives_the_per_episode_results_of_one_env(pair):
    quick, deepthink = pair
    names = ["always-quick", "always-deepthink", "random", "heuristic", "uncertainty"]

    def methods():  # fresh rules for each run: a rule draws new coins for an episode seed it met before
        out = {n: build_method(n, quick=quick, deepthink=deepthink, seed=0, rate=0.3) for n in names}
        out["londi"] = build_method("londi", quick=quick, deepthink=deepthink, switch=str(SWITCH_FIXTURE),
                                    allow_policy_mismatch=True)
        return out

    one = evaluate_methods(methods(), episodes=14, seed=9, progress=False)
    four = evaluate_methods(methods(), episodes=14, seed=9, progress=False, num_envs=4)
    assert four["num_envs"] == 4
    for name in one["methods"]:
        assert episodes(four, name) == episodes(one, name), name
        assert four["methods"][name]["faults"] == one["methods"][name]["faults"]
    # the batched run is metered: every role that acted was billed
    assert four["methods"]["londi"]["device_seconds"]["quick"] > 0
    assert four["methods"]["londi"]["device_seconds"]["switch"] > 0


def test_the_hard_budget_holds_in_every_batched_episode(pair):
    from londi.rules.base import Method, SwitchRule

    class AskAlways(SwitchRule):  # asks for DEEPTHINK even where the mask rules it out
        name = "ask-always"

        def choose(self, obs, ctx):
            return 1

    quick, deepthink = pair
    method = Method(AskAlways(), quick, deepthink, budget=2)
    one = evaluate_methods({"b": method}, episodes=10, seed=1, progress=False)
    five = evaluate_methods({"b": method}, episodes=10, seed=1, progress=False, num_envs=5)
    assert episodes(five, "b") == episodes(one, "b")
    assert all(e["deepthink_calls"] <= 2 for e in five["methods"]["b"]["per_episode"])
    assert five["methods"]["b"]["faults"]["masked_overrides"] > 0


def test_games_in_worker_processes_give_the_same_episodes(pair):
    quick, deepthink = pair
    def method():
        return build_method("random", quick=quick, deepthink=deepthink, seed=0, rate=0.3)

    one = evaluate_methods({"r": method()}, episodes=6, seed=2, progress=False)
    procs = evaluate_methods({"r": method()}, episodes=6, seed=2, progress=False, num_envs=3, env_processes=True)
    assert procs["env_processes"] is True
    assert episodes(procs, "r") == episodes(one, "r")


def test_more_envs_than_episodes_and_results_in_seed_order(pair):
    quick, deepthink = pair
    method = build_method("always-quick", quick=quick, deepthink=deepthink)
    one = evaluate_methods({"q": method}, episodes=3, seed=4, progress=False)
    many = evaluate_methods({"q": method}, episodes=3, seed=4, progress=False, num_envs=8)
    assert episodes(many, "q") == episodes(one, "q")


def test_a_batch_needs_shared_policies_with_their_own_streams(pair):
    quick, deepthink = pair
    other = load_policy("quick-dagger")
    a = build_switch_env(DEFAULT_ENV_ID, quick, deepthink, own_streams=True)
    b = build_switch_env(DEFAULT_ENV_ID, other, deepthink, own_streams=True)
    c = build_switch_env(DEFAULT_ENV_ID, quick, deepthink)
    with pytest.raises(ValueError, match="share"):
        SwitchEnvBatch([a, b])
    with pytest.raises(ValueError, match="own_streams"):
        SwitchEnvBatch([a, c])
    with pytest.raises(ValueError, match="num_envs"):
        evaluate_methods({}, episodes=1, num_envs=0)


def test_cli_num_envs(tmp_path):
    outs = {}
    for n in (1, 3):
        out = tmp_path / f"r{n}.json"
        assert main(["eval", "--method", "always-quick,random", "--rate", "0.3", "--episodes", "5", "--seed", "3",
                     "--num-envs", str(n), "--no-progress", "--out", str(out)]) == 0
        outs[n] = json.loads(out.read_text())
    for name in ("always-quick", "random"):
        assert episodes(outs[3], name) == episodes(outs[1], name)


# ------------------------------------------------------------------------------ the games' processes
def test_a_game_in_a_worker_process_plays_as_in_this_one():
    local = make_env(DEFAULT_ENV_ID)
    remote = SubprocessEnv(DEFAULT_ENV_ID)
    try:
        for seed in (11, 12):
            _, a = local.reset(seed=seed)
            _, b = remote.reset(seed=seed)
            assert a["text_obs"] == b["text_obs"]
            assert remote.max_steps == local.unwrapped.max_steps
            for _ in range(6):
                action = a["text_obs"].oracle_action or "turn left"
                ra = local.step(local.unwrapped.action_index(action))
                rb = remote.step(action)  # a text action is mapped in the worker
                assert ra[1:4] == rb[1:4] and ra[4]["text_obs"] == rb[4]["text_obs"]
                a = ra[4]
                if ra[2] or ra[3]:
                    break
        with pytest.raises(ValueError, match="action"):
            remote.step(99)  # the worker's exception, raised here with its type
    finally:
        remote.close()
        local.close()


def test_a_dead_game_worker_truncates_the_episode_and_is_counted(pair):
    quick, deepthink = pair
    envs = [build_switch_env(DEFAULT_ENV_ID, quick, deepthink, features=None, own_streams=True, in_subprocess=True)
            for _ in range(2)]
    batch = SwitchEnvBatch(envs)
    try:
        assert batch.asynchronous
        batch.reset([0, 1], [5, 6])
        envs[1].env._process.kill()
        envs[1].env._process.wait()
        results = batch.step([0, 1], [0, 0])
        _, _, _, truncated, info = results[1]
        assert truncated and info["accounting"].env_errors == 1 and "env_error" in info
        assert not results[0][3] or results[0][2]  # the live game went on as usual
        with pytest.raises(EnvCrashError):
            envs[1].env.reset(seed=1)
    finally:
        batch.close()


# ------------------------------------------------------------------------------ served models
class _SlowCompletions(BaseHTTPRequestHandler):
    """``/v1/completions`` answering "turn left" after a delay, counting requests in flight."""

    lock = threading.Lock()
    in_flight = 0
    most = 0
    fail = False

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        cls = type(self)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with cls.lock:
            cls.in_flight += 1
            cls.most = max(cls.most, cls.in_flight)
        time.sleep(0.15)
        with cls.lock:
            cls.in_flight -= 1
        if cls.fail:
            self.send_response(500)
            self.end_headers()
            return
        body = json.dumps({"choices": [{"text": "turn left"}], "model": "slow",
                           "usage": {"prompt_tokens": 5, "completion_tokens": 2}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def slow_server():
    _SlowCompletions.in_flight = _SlowCompletions.most = 0
    _SlowCompletions.fail = False
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowCompletions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_a_served_model_gets_a_batch_as_concurrent_requests_bounded(slow_server, observations):
    batch = observations[:6]
    policy = HTTPPolicy(base_url=slow_server, model="slow", api="completions", max_concurrency=3, max_retries=0)
    t0 = time.perf_counter()
    answers = policy.act_batch(batch)
    elapsed = time.perf_counter() - t0
    assert [a.decision.action for a in answers] == ["turn left"] * 6
    assert _SlowCompletions.most == 3  # never more than the bound in flight
    assert elapsed < 6 * 0.15  # faster than one after another
    assert all(a.timing.wall_seconds >= 0.15 for a in answers)  # each timed as its own request
    assert policy.calls == 6
    with pytest.raises(ValueError, match="max_concurrency"):
        HTTPPolicy(base_url=slow_server, max_concurrency=0)


def test_cache_and_fallback_wrappers_batch_too(slow_server, observations, pair):
    quick = pair[0]
    primary = HTTPPolicy(base_url=slow_server, model="slow", api="completions", max_concurrency=4, max_retries=0)
    cached = CachedPolicy(primary)
    first = act_batch(cached, observations[:4])
    again = act_batch(cached, observations[:4])
    assert [a.decision.action for a in first] == [a.decision.action for a in again]
    assert all(a.decision.record.cache_hit for a in again) and primary.calls == 4
    _SlowCompletions.fail = True
    fallback = FallbackPolicy(HTTPPolicy(base_url=slow_server, model="slow", api="completions", max_retries=0), quick)
    answers = fallback.act_batch(observations[4:8], [np.random.default_rng(i) for i in range(4)])
    assert all(a.error is None and a.decision.record.error.startswith("fallback:") for a in answers)
    assert fallback.total.fallbacks == 4 and fallback.total.errors == 4
    bare = HTTPPolicy(base_url=slow_server, model="slow", api="completions", max_retries=0)
    assert all(isinstance(a.error, ModelCallError) for a in bare.act_batch(observations[:3]))


def test_an_http_deepthink_in_a_batched_evaluation(slow_server, pair, tmp_path):
    quick = pair[0]
    deepthink = FallbackPolicy(HTTPPolicy(base_url=slow_server, model="slow", api="completions", max_retries=0,
                                          list_actions=False), quick)
    method = build_method("always-deepthink", quick=quick, deepthink=deepthink)
    results = evaluate_methods({"dt": method}, episodes=4, seed=5, progress=False, num_envs=4,
                               env_kwargs={"max_steps": 6})
    eps = results["methods"]["dt"]["per_episode"]
    assert all(e["deepthink_calls"] == e["steps"] for e in eps)
    assert _SlowCompletions.most >= 2  # the four episodes' calls overlapped
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_run_rule_batched_calls_on_episode_in_seed_order(pair):
    quick, deepthink = pair
    method = build_method("always-quick", quick=quick, deepthink=deepthink)
    envs = [build_switch_env(DEFAULT_ENV_ID, quick, deepthink, features=None, own_streams=True) for _ in range(3)]
    seen = []
    run_rule_batched(method.rule, SwitchEnvBatch(envs), [500_000 + i for i in range(7)], progress=False,
                     on_episode=lambda i, stats, info: seen.append(i))
    assert seen == list(range(7))


def test_a_candidate_filtering_policy_filters_in_a_batch_as_in_one_call():
    """The ScienceWorld checkpoints score only a candidate list (``CandidatePolicy``)."""
    from londi.envs.base import TextObservation

    policy = load_policy("scienceworld-quick")
    actions = ("look around", "open door to kitchen", "go to kitchen", "focus on red box", "pick up thermometer",
               "wait", "inventory", "move red box to table", "connect battery to wire", "read recipe")
    observations = [TextObservation(goal="Your task is to find a living thing.", text=f"You are in room {i}.",
                                    admissible_actions=actions[i % 3:], step=i) for i in range(6)]
    gens = [np.random.default_rng(i) for i in range(len(observations))]
    answers = policy.act_batch(observations, gens)
    for i, (obs, answer) in enumerate(zip(observations, answers)):
        policy.set_seed(i)
        alone = policy.act(obs)
        assert answer.decision.action == alone.action
        np.testing.assert_allclose(answer.decision.probs, alone.probs, atol=1e-6)
        assert len(answer.decision.probs) == len(obs.admissible_actions)


def test_a_batched_run_whose_endpoint_fails_stops_with_a_clear_error(slow_server, pair):
    from londi.core.errors import EndpointFailureError

    _SlowCompletions.fail = True
    quick = pair[0]
    deepthink = HTTPPolicy(base_url=slow_server, model="slow", api="completions", max_retries=0, list_actions=False)
    method = build_method("always-deepthink", quick=quick, deepthink=deepthink)
    with pytest.raises(EndpointFailureError, match="DEEPTHINK calls to") as caught:
        evaluate_methods({"dt": method}, episodes=8, seed=5, progress=False, num_envs=4)
    assert caught.value.partial_results["valid"] is False
