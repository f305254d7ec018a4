"""Faults are counted, not hidden: expected failures fall back, bugs raise, and a model that
fails on most of its calls stops the run with an error naming it."""
from __future__ import annotations

import json

import pytest

from londi.agents.base import Decision, TextPolicy
from londi.core.errors import EndpointFailureError, ModelCallError
from londi.core.meter import CallRecord
from londi.envs import make_env
from londi.evaluation.loop import evaluate_methods
from londi.rules import AlwaysDeepthink
from londi.rules.base import Method
from londi.switch.env import DEEPTHINK, SwitchEnv

ENV = "londi/BabyAIText-GoToLocal-v0"


class Flaky(TextPolicy):
    """Fails (with ``error``) on every ``every``-th call, else plays the first admissible action."""

    def __init__(self, error: BaseException, every: int = 1) -> None:
        self.name, self.error, self.every, self.calls = "flaky", error, every, 0

    @property
    def endpoint(self) -> str:
        return "http://127.0.0.1:9/v1 (test)"

    def act(self, obs):
        self.calls += 1
        if self.calls % self.every == 0:
            raise self.error
        return Decision(action=obs.admissible_actions[0], record=CallRecord(model=self.name))


def _switch_env(quick, deep, **kwargs) -> SwitchEnv:
    return SwitchEnv(make_env(ENV, disable_env_checker=True), quick, deep, **kwargs)


def _play(env: SwitchEnv, steps: int) -> None:
    env.reset(seed=0)
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(DEEPTHINK)
        if term or trunc:
            env.reset()


def test_a_bug_in_a_policy_raises_instead_of_counting_as_a_fault(controlled_pair):
    quick, _ = controlled_pair
    env = _switch_env(quick, Flaky(AttributeError("'NoneType' object has no attribute 'x'")))
    env.reset(seed=0)
    with pytest.raises(AttributeError):
        env.step(DEEPTHINK)


def test_a_bug_in_the_env_raises(controlled_pair):
    quick, deep = controlled_pair
    env = _switch_env(quick, deep)
    env.reset(seed=0)
    env.env.step = lambda action: (_ for _ in ()).throw(KeyError("bug"))
    with pytest.raises(KeyError):
        env.step(DEEPTHINK)


@pytest.mark.parametrize("error", [ConnectionError("refused"), TimeoutError("slow"), ModelCallError("HTTP 503")])
def test_transient_faults_fall_back_and_are_counted(controlled_pair, error):
    quick, _ = controlled_pair
    deep = Flaky(error, every=4)  # a quarter of the calls fail: below the stop share
    env = _switch_env(quick, deep)
    _play(env, 40)
    assert env.run_calls["deepthink"] == 40
    assert env.run_failures["deepthink"] == 10


def test_a_model_that_fails_on_most_calls_stops_the_run_naming_it(controlled_pair):
    quick, _ = controlled_pair
    env = _switch_env(quick, Flaky(ConnectionError("connection refused")))
    with pytest.raises(EndpointFailureError) as err:
        _play(env, 40)
    message = str(err.value)
    assert "10 of 10 DEEPTHINK calls" in message
    assert "http://127.0.0.1:9/v1" in message and "connection refused" in message


def test_the_stop_share_and_minimum_are_settings(controlled_pair):
    quick, _ = controlled_pair
    env = _switch_env(quick, Flaky(ConnectionError("x"), every=2), max_failure_rate=0.4, min_failure_calls=4)
    with pytest.raises(EndpointFailureError, match="2 of 4 DEEPTHINK calls"):
        _play(env, 10)
    never = _switch_env(quick, Flaky(ConnectionError("x")), max_failure_rate=1.0)
    _play(never, 30)
    assert never.run_failures["deepthink"] == 30
    with pytest.raises(ValueError, match="max_failure_rate"):
        _switch_env(quick, Flaky(ConnectionError("x")), max_failure_rate=1.5)


def test_evaluation_of_a_dead_endpoint_writes_no_valid_result(controlled_pair, tmp_path):
    quick, _ = controlled_pair
    methods = {"always-deepthink": Method(AlwaysDeepthink(), quick, Flaky(ConnectionError("refused")))}
    with pytest.raises(EndpointFailureError) as err:
        evaluate_methods(methods, env_id=ENV, episodes=5, seed=0, progress=False)
    partial = err.value.partial_results
    assert partial["valid"] is False and "refused" in partial["error"]
    assert partial["methods"] == {}


def test_cli_eval_against_a_dead_server_exits_with_a_clear_error(tmp_path, capsys, monkeypatch):
    from londi.cli import main

    monkeypatch.setenv("LONDI_MODEL", "deepthink")  # else the missing /v1/models answer is the error

    out = tmp_path / "results.json"
    # port 9 (discard) on loopback: nothing listens, every call is refused
    rc = main(["eval", "--method", "always-deepthink", "--deepthink", "http://127.0.0.1:9/v1",
               "--http-api", "completions", "--episodes", "3", "--no-progress", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "DEEPTHINK calls to http://127.0.0.1:9/v1" in err and "failed" in err
    data = json.loads(out.read_text())
    assert data["valid"] is False and data["methods"] == {}
