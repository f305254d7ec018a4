"""The OpenAI-compatible HTTP backend, the fallback policy and ``londi serve``.

Unit tests talk to ``httpx.MockTransport``; the end-to-end tests start real ``python -m
londi.agents.serving`` processes on loopback with a tiny random GPT-2 checkpoint built on the fly (no
downloads): a healthy one, a slow one, one answering HTTP 500, and one that dies mid-episode.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

import londi.agents.http as http_module
from londi.agents.base import Decision, TextPolicy
from londi.agents.cache import CachedPolicy
from londi.agents.fallback import FallbackPolicy, FallbackStats
from londi.agents.http import HTTPBackendError, HTTPPolicy, HTTPTimeoutError
from londi.agents.http_support import ENV_API_BASE, ENV_API_KEY, ENV_MODEL, cut_at_stop, estimate_tokens
from londi.agents.prompt import build_prompt
from londi.core.errors import ConfigError, UnknownChoiceError
from londi.core.meter import CallRecord
from londi.envs import make_env
from londi.envs.base import TextObservation
from londi.switch.env import EpisodeAccounting

ENV_ID = "londi/BabyAIText-GoToLocal-v0"
MODEL = "tiny-gpt2"
#: A fresh random key per run, so that it cannot appear anywhere by accident.
KEY = f"sk-londi-test-{uuid.uuid4().hex}"
ACTIONS = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")
OBS = TextObservation(goal="go to the red ball", text="You see a wall 2 steps forward", admissible_actions=ACTIONS)


@pytest.fixture(autouse=True)
def _no_endpoint_env(monkeypatch):
    """The developer's own endpoint settings must not leak into the tests."""
    for name in ENV_API_BASE + ENV_API_KEY + ENV_MODEL:
        monkeypatch.delenv(name, raising=False)


class RandomPolicy(TextPolicy):
    """A stand-in QUICK model: a seeded random admissible action."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.calls = 0

    def reset(self) -> None:
        self.rng = random.Random(self.seed)

    def act(self, obs: TextObservation) -> Decision:
        self.calls += 1
        return Decision(action=self.rng.choice(obs.admissible_actions),
                        record=CallRecord(model="random", device="cpu", device_seconds=1e-4, wall_seconds=1e-4))


class Failing(TextPolicy):
    name = "failing"

    def __init__(self) -> None:
        self.calls = 0

    def act(self, obs: TextObservation) -> Decision:
        self.calls += 1
        raise ConnectionError("server unreachable")


def openai_completion(text: str, *, usage: dict | None = None, timings: dict | None = None, chat: bool = False) -> dict:
    choice = {"index": 0, "finish_reason": "stop"}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    body: dict = {"id": "x", "object": "chat.completion" if chat else "text_completion", "choices": [choice]}
    if usage is not None:
        body["usage"] = usage
    if timings is not None:
        body["timings"] = timings
    return body


def mock_policy(handler, **kwargs) -> HTTPPolicy:
    kwargs.setdefault("base_url", "http://127.0.0.1:9/v1")
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("api_key", KEY)
    return HTTPPolicy(transport=httpx.MockTransport(handler), **kwargs)


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Record the backoff delays instead of sleeping."""
    delays: list[float] = []
    monkeypatch.setattr(http_module, "_sleep", delays.append)
    return delays


# ---------------------------------------------------------------------- HTTPPolicy, mocked server
def test_completions_request_and_record() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        usage = {"prompt_tokens": 57, "completion_tokens": 3, "total_tokens": 60}
        timings = {"prompt_ms": 12.0, "predicted_ms": 8.0}
        return httpx.Response(200, json=openai_completion(" Go forward.\nObservation: you see", usage=usage, timings=timings))

    policy = mock_policy(handler, api="completions", n_parameters=1000)
    d = policy.act(OBS)
    (request,) = seen
    body = json.loads(request.content)
    assert request.url.path == "/v1/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert body["prompt"] == build_prompt(OBS) and body["model"] == MODEL
    assert body["stop"] == ["\n"] and body["temperature"] == 0.0 and body["max_tokens"] == 32
    assert d.action == "go forward" and d.probs is None
    assert policy.last_match.kind == "normalised" and policy.match_counts["normalised"] == 1
    r = d.record
    assert (r.model, r.device, r.input_tokens, r.output_tokens, r.retries, r.error) == (MODEL, "http", 57, 3, 0, None)
    assert r.device_seconds == pytest.approx(0.020)  # the server's timings, not the wall latency
    assert r.flops == pytest.approx(2 * 1000 * 60)
    assert r.wall_seconds > 0 and not r.cache_hit


def test_chat_request_and_token_estimate() -> None:
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=openai_completion("I will turn right.", chat=True))

    policy = mock_policy(handler, api="chat", system_prompt="Answer with one action.")
    d = policy.act(OBS)
    body = seen[0]
    assert body["messages"] == [
        {"role": "system", "content": "Answer with one action."},
        {"role": "user", "content": build_prompt(OBS)},
    ]
    assert "stop" not in body
    assert d.action == "turn right" and policy.last_match.kind == "nearest"
    # No usage in the answer: tokens are estimated at CHARS_PER_TOKEN characters a token,
    # and device_seconds falls back to the wall latency of the request.
    assert d.record.output_tokens == math.ceil(len("I will turn right.") / 4) == estimate_tokens("I will turn right.")
    assert d.record.input_tokens == estimate_tokens("Answer with one action.\n" + build_prompt(OBS))
    assert 0 < d.record.device_seconds <= d.record.wall_seconds


def test_model_name_from_the_server() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "served-7b"}, {"id": "other"}]})
        assert json.loads(request.content)["model"] == "served-7b"
        return httpx.Response(200, json=openai_completion("drop", chat=True))

    policy = mock_policy(handler, model=None)
    assert policy.name == "http"
    assert policy.act(OBS).record.model == "served-7b"
    assert policy.model == "served-7b" and policy.name == "served-7b"


def test_retries_with_exponential_backoff(sleeps) -> None:
    statuses = iter([503, 502, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        if status != 200:
            return httpx.Response(status, json={"error": {"message": "busy"}})
        return httpx.Response(200, json=openai_completion("toggle", chat=True))

    policy = mock_policy(handler, max_retries=3, backoff=0.5, backoff_max=8.0)
    d = policy.act(OBS)
    assert d.action == "toggle" and d.record.retries == 2 and d.record.error is None
    assert sleeps == [0.5, 1.0]
    assert (policy.calls, policy.failures, policy.retries) == (1, 0, 2)


def test_retry_after_is_honoured_within_the_cap(sleeps) -> None:
    statuses = iter([429, 429, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        if status == 429:
            return httpx.Response(429, headers={"Retry-After": "5"}, json={"error": {"message": "slow down"}})
        return httpx.Response(200, json=openai_completion("drop", chat=True))

    mock_policy(handler, max_retries=2, backoff=0.1, backoff_max=2.0).act(OBS)
    assert sleeps == [2.0, 2.0]


def test_gives_up_after_the_retries(sleeps) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(500, json={"error": {"message": "boom"}})

    policy = mock_policy(handler, max_retries=2, backoff=0.01)
    with pytest.raises(HTTPBackendError) as info:
        policy.act(OBS)
    err = info.value
    assert len(calls) == 3 and err.status_code == 500 and err.retryable
    assert err.record.retries == 2 and "HTTP 500" in err.record.error and "boom" in err.record.error
    assert err.record.device == "http" and err.record.device_seconds == 0.0
    assert (policy.failures, policy.retries) == (1, 2)


def test_timeout_raises_a_timeout_error(sleeps) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    with pytest.raises(HTTPTimeoutError) as info:
        mock_policy(handler, max_retries=1, timeout=0.5).act(OBS)
    assert isinstance(info.value, TimeoutError) and info.value.status_code is None
    assert "timeout" in str(info.value) and info.value.record.retries == 1


@pytest.mark.parametrize("status, hint", [(401, "LONDI_API_KEY"), (403, "LONDI_API_KEY"), (404, "model name"), (400, "HTTP 400")])
def test_client_errors_are_not_retried(status: int, hint: str, sleeps) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status, json={"error": {"message": "nope"}})

    with pytest.raises(HTTPBackendError, match=hint) as info:
        mock_policy(handler, max_retries=3).act(OBS)
    assert len(calls) == 1 and sleeps == [] and not info.value.retryable


def test_malformed_answer_is_an_error(sleeps) -> None:
    bodies = iter([b"<html>not json</html>", json.dumps({"choices": []}).encode(),
                   json.dumps({"choices": {"0": "x"}}).encode(), json.dumps({"choices": [{"message": "x"}]}).encode()])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=next(bodies))

    policy = mock_policy(handler, max_retries=3)
    for _ in range(4):
        with pytest.raises(HTTPBackendError, match="malformed response"):
            policy.act(OBS)
    assert sleeps == []


def test_deadline_stops_retrying(sleeps) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    with pytest.raises(HTTPBackendError) as info:
        mock_policy(handler, max_retries=10, backoff=0.5, deadline=1.0).act(OBS)
    # The first backoff (0.5 s) fits the deadline; the second (1.0 s) would cross it.
    assert info.value.record.retries == 1 and sleeps == [0.5]


# ---------------------------------------------------------------------- servers that reject a parameter
def test_rejected_stop_is_dropped_cut_client_side_and_remembered(caplog, sleeps) -> None:
    """``transformers serve``: every request with ``stop`` gets HTTP 400 "substring not found"."""
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if "stop" in body:
            return httpx.Response(400, json={"detail": "substring not found"})
        return httpx.Response(200, json=openai_completion("go forward\nObservation: You see a wall"))

    policy = mock_policy(handler, api="completions", seed=7)
    with caplog.at_level(logging.INFO, logger="londi.agents.http"):
        first = policy.act(OBS)
        second = policy.act(OBS)
    assert first.action == second.action == "go forward"
    assert policy.last_text == "go forward" and policy.last_match.kind == "exact"  # cut at "\n"
    assert ["stop" in b for b in bodies] == [True, False, False]  # one probe, then never sent again
    assert all(b["seed"] == 7 for b in bodies)  # only the guilty parameter is left out
    assert policy.unsupported_params == {"stop"}
    assert policy.calls == 2 and policy.failures == 0 and policy.retries == 0 and sleeps == []
    assert first.record.error is None and first.record.retries == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'stop'" in warnings[0].getMessage()
    assert "client side" in warnings[0].getMessage() and "substring not found" in warnings[0].getMessage()


@pytest.mark.parametrize("status, error, param", [
    (422, {"detail": "Unexpected fields in the request: {'seed'}"}, "seed"),          # transformers serve
    (400, {"error": {"message": "unsupported", "type": "invalid_request_error", "param": "stop"}}, "stop"),  # OpenAI
    (422, {"detail": [{"loc": ["body", "seed"], "msg": "Extra inputs are not permitted"}]}, "seed"),  # pydantic
    (400, {"error": {"message": "stop_strings needs a tokenizer"}}, "stop"),
])
def test_a_parameter_the_error_names_is_dropped(status: int, error: dict, param: str, sleeps) -> None:
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if param in body:
            return httpx.Response(status, json=error)
        return httpx.Response(200, json=openai_completion("turn left"))

    policy = mock_policy(handler, api="completions", seed=3)
    assert policy.act(OBS).action == "turn left"
    assert policy.act(OBS).action == "turn left"
    assert policy.unsupported_params == {param}
    assert [param in b for b in bodies] == [True, False, False]
    other = {"stop", "seed"} - {param}
    assert all(p in b for b in bodies for p in other)
    assert policy.failures == 0 and sleeps == []


def test_a_rejection_that_is_not_about_a_parameter_is_still_an_error(sleeps) -> None:
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(400, json={"detail": "prompt is too long for this model"})

    policy = mock_policy(handler, api="completions", seed=1)
    for _ in range(3):
        with pytest.raises(HTTPBackendError, match="prompt is too long") as info:
            policy.act(OBS)
        assert info.value.status_code == 400 and not info.value.retryable
    # Each optional parameter is probed once per policy (stop, then seed), then never again;
    # the failed probes convict nothing and every later request carries both.
    assert [("stop" in b, "seed" in b) for b in bodies] == [
        (True, True), (False, True), (True, False), (True, True), (True, True)
    ]
    assert policy.unsupported_params == set() and policy.failures == 3 and sleeps == []


def test_user_parameters_and_other_statuses_are_never_dropped(sleeps) -> None:
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        status = 401 if body.get("model") == "locked" else 400
        return httpx.Response(status, json={"detail": "stop is not supported"})

    # A stop in extra_body is the user's own: never left out.
    with pytest.raises(HTTPBackendError, match="HTTP 400"):
        mock_policy(handler, api="chat", extra_body={"stop": ["."]}).act(OBS)
    # A 401 that happens to name "stop" is about the key, not the parameter.
    with pytest.raises(HTTPBackendError, match="HTTP 401"):
        mock_policy(handler, api="completions", model="locked").act(OBS)
    assert len(bodies) == 2 and all("stop" in b for b in bodies)


def test_a_probe_that_meets_a_transient_error_is_retried(sleeps) -> None:
    answers = iter([
        httpx.Response(400, json={"detail": "substring not found"}),
        httpx.Response(503),
        httpx.Response(200, json=openai_completion("pick up\n")),
    ])
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return next(answers)

    policy = mock_policy(handler, api="completions", backoff=0.25)
    decision = policy.act(OBS)
    assert decision.action == "pick up" and decision.record.retries == 1 and sleeps == [0.25]
    assert ["stop" in b for b in bodies] == [True, False, False]
    assert policy.unsupported_params == {"stop"}


def test_list_actions_can_be_left_out_of_the_prompt() -> None:
    """For checkpoints trained on the LONDI prompt without the list (every shipped one)."""
    prompts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        prompts.append(json.loads(request.content)["prompt"])
        return httpx.Response(200, json=openai_completion("turn left"))

    listed, unlisted = mock_policy(handler, api="completions"), mock_policy(handler, api="completions", list_actions=False)
    listed.act(OBS)
    unlisted.act(OBS)
    assert "Possible actions" in prompts[0] and "Possible actions" not in prompts[1]
    assert prompts[1] == build_prompt(OBS, list_actions=False) == unlisted.prompt_for(OBS)
    assert listed.cache_namespace != unlisted.cache_namespace
    assert "list_actions" not in listed.cache_namespace  # the keys of existing caches are kept


def test_cut_at_stop() -> None:
    assert cut_at_stop("go forward\nObservation: x. y", ["\n"]) == "go forward"
    assert cut_at_stop("a. b\nc", ["\n", ". "]) == "a"
    assert cut_at_stop("no stop here", ["\n", ""]) == "no stop here"


def test_api_key_never_leaks(caplog, sleeps) -> None:
    """A misbehaving server that echoes the request headers in its error body."""
    caplog.set_level(logging.DEBUG)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text=f"bad gateway; you sent {dict(request.headers)}")

    policy = mock_policy(handler, max_retries=1, backoff=0.0)
    with pytest.raises(HTTPBackendError) as info:
        policy.act(OBS)
    assert "***" in str(info.value)  # the echoed key was redacted, not just absent
    fallback = FallbackPolicy(policy, RandomPolicy())
    d = fallback.act(OBS)
    texts = [
        str(info.value), repr(info.value), json.dumps(info.value.record.to_dict()), repr(policy), str(vars(policy)),
        json.dumps(d.record.to_dict()), str(fallback.last_error), repr(fallback), caplog.text,
    ]
    for text in texts:
        assert KEY not in text
    assert "HTTP 500" in caplog.text  # the failures were logged, without the key


def test_environment_variables(monkeypatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=openai_completion("drop", chat=True))

    monkeypatch.setenv("LONDI_API_BASE", "http://127.0.0.1:8001")
    monkeypatch.setenv("LONDI_MODEL", "from-env")
    monkeypatch.setenv("OPENAI_API_KEY", "openai-key")
    policy = HTTPPolicy(transport=httpx.MockTransport(handler))
    policy.act(OBS)
    assert str(seen[-1].url) == "http://127.0.0.1:8001/v1/chat/completions"
    assert json.loads(seen[-1].content)["model"] == "from-env"
    assert seen[-1].headers["authorization"] == "Bearer openai-key"
    monkeypatch.setenv("LONDI_API_KEY", "londi-key")  # LONDI_API_KEY comes first
    HTTPPolicy(transport=httpx.MockTransport(handler)).act(OBS)
    assert seen[-1].headers["authorization"] == "Bearer londi-key"
    # Constructor arguments beat the environment; no key sends no Authorization header.
    HTTPPolicy(base_url="http://127.0.0.1:8002/api/v1", model="arg", api_key="",
               transport=httpx.MockTransport(handler)).act(OBS)
    assert str(seen[-1].url) == "http://127.0.0.1:8002/api/v1/chat/completions"
    assert "authorization" not in seen[-1].headers


def test_arguments_checked() -> None:
    with pytest.raises(ConfigError, match="LONDI_API_BASE"):
        HTTPPolicy()
    with pytest.raises(UnknownChoiceError, match="chat"):
        HTTPPolicy(base_url="http://127.0.0.1:1", api="generate")
    with pytest.raises(ConfigError, match="http"):
        HTTPPolicy(base_url="ftp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="credentials"):
        HTTPPolicy(base_url="http://user:secret@127.0.0.1:1/v1")
    for bad in ({"timeout": 0}, {"max_retries": -1}, {"max_tokens": 0}, {"temperature": -1.0},
                {"deadline": 0}, {"prompt_kwargs": {"list_actions": False}}, {"prompt_kwargs": {"history_length": -1}}):
        with pytest.raises(ValueError):
            HTTPPolicy(base_url="http://127.0.0.1:1", **bad)


def test_cache_namespace_names_the_decoding_settings() -> None:
    a = HTTPPolicy(base_url="http://127.0.0.1:1", model="m", temperature=0.0)
    b = HTTPPolicy(base_url="http://127.0.0.1:1", model="m", temperature=0.7)
    c = HTTPPolicy(base_url="http://127.0.0.1:2", model="m", temperature=0.0)
    assert a.cache_namespace != b.cache_namespace
    assert a.cache_namespace == c.cache_namespace  # the same model elsewhere answers the same
    assert KEY not in a.cache_namespace


# ---------------------------------------------------------------------- FallbackPolicy
def test_fallback_counts_and_records(caplog) -> None:
    caplog.set_level(logging.WARNING)
    primary, quick = Failing(), RandomPolicy()
    policy = FallbackPolicy(primary, quick)
    d = policy.act(OBS)
    assert d.action in ACTIONS
    assert d.record.model == "random" and d.record.error.startswith("fallback: failing failed: ConnectionError")
    assert policy.last_fallback and "server unreachable" in policy.last_error
    assert [r.model for r in policy.last_records] == ["failing", "random"]
    assert policy.episode == FallbackStats(calls=1, fallbacks=1, errors=1, skipped=0, retries=0)
    assert (policy.fallbacks, policy.errors) == (1, 1)
    policy.act(OBS)
    assert caplog.text.count("server unreachable") == 1  # one warning per run of failures
    acc = EpisodeAccounting()
    acc.add("deepthink", d.record)
    assert acc.policy_errors == 1  # a fallback's answer counts as a failed call of the role
    policy.reset()
    assert policy.episode == FallbackStats() and policy.total.fallbacks == 2 and policy.total.calls == 2


def test_fallback_passes_a_healthy_primary_through() -> None:
    primary, quick = RandomPolicy(1), RandomPolicy(2)
    policy = FallbackPolicy(primary, quick)
    d = policy.act(OBS)
    assert quick.calls == 0 and primary.calls == 1 and d.record.error is None
    assert not policy.last_fallback and policy.episode.to_dict() == {
        "calls": 1, "fallbacks": 0, "errors": 0, "skipped": 0, "retries": 0}


def test_circuit_breaker() -> None:
    primary, quick = Failing(), RandomPolicy()
    policy = FallbackPolicy(primary, quick, max_consecutive_errors=2, cooldown_calls=3)
    for _ in range(2):
        policy.act(OBS)
    assert policy.breaker_open and primary.calls == 2
    for _ in range(3):
        d = policy.act(OBS)
        assert "circuit breaker open" in d.record.error
    assert primary.calls == 2 and not policy.breaker_open
    policy.act(OBS)  # tried again once, fails, the breaker re-opens
    assert primary.calls == 3 and policy.breaker_open
    assert policy.episode == FallbackStats(calls=6, fallbacks=6, errors=3, skipped=3, retries=0)


def test_fallback_timeout_on_a_hanging_primary() -> None:
    release = threading.Event()

    class Hanging(RandomPolicy):
        name = "hanging"

        def act(self, obs):
            release.wait(10)
            return super().act(obs)

    primary = Hanging()
    policy = FallbackPolicy(primary, RandomPolicy(), timeout=0.1)
    t0 = time.perf_counter()
    d = policy.act(OBS)
    assert time.perf_counter() - t0 < 2.0
    assert "no answer within 0.1 s" in d.record.error and policy.errors == 1
    d = policy.act(OBS)  # the primary is still busy: skipped, never called twice at once
    assert "still running" in d.record.error and policy.episode.skipped == 1
    release.set()
    deadline = time.monotonic() + 5
    while policy._pending is not None and not policy._pending.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    d = policy.act(OBS)
    assert d.record.error is None and primary.calls == 2


def test_fallback_errors_propagate_and_arguments_checked() -> None:
    policy = FallbackPolicy(Failing(), Failing())
    with pytest.raises(ConnectionError):
        policy.act(OBS)
    assert policy.errors == 1
    narrow = FallbackPolicy(Failing(), RandomPolicy(), catch=(TimeoutError,))
    with pytest.raises(ConnectionError):
        narrow.act(OBS)
    quick = RandomPolicy()
    with pytest.raises(ValueError, match="different"):
        FallbackPolicy(quick, quick)
    with pytest.raises(ValueError, match="timeout"):
        FallbackPolicy(Failing(), quick, timeout=0)
    with pytest.raises(ValueError, match="max_consecutive_errors"):
        FallbackPolicy(Failing(), quick, max_consecutive_errors=0)
    with pytest.raises(TypeError, match="TextPolicy"):
        FallbackPolicy(object(), quick)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the serve command
def test_serve_command_line(tmp_path, capsys) -> None:
    import argparse

    from londi.agents import serving as serve

    parser = argparse.ArgumentParser(prog="londi")
    serve.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--model", "m", "--port", "8123", "--fail-every", "3", "--die-after", "9"])
    assert args.func is serve.run
    assert (args.model, args.host, args.port, args.fail_every, args.die_after, args.inject_delay) == (
        "m", "127.0.0.1", 8123, 3, 9, 0.0)
    # A folder that is no checkpoint, and bad fault options, fail early with one clear line.
    with pytest.raises(SystemExit) as info:
        serve.main(["--model", str(tmp_path)])
    assert info.value.code == 2 and "no config.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        serve.main(["--model", str(tmp_path), "--inject-error-rate", "1.5"])
    assert "--inject-error-rate must be in [0, 1]" in capsys.readouterr().err


# ---------------------------------------------------------------------- real servers
def build_tiny_checkpoint(path: Path) -> Path:
    """A 1-layer GPT-2 with random weights and a word-level tokenizer over BabyAI-Text's words."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["goal", "of", "the", "agent", "go", "to", "pick", "up", "put", "next", "a", "an", "red", "green", "blue", "purple", "yellow", "grey", "ball", "box", "key", "door", "possible", "actions", "turn", "left", "right", "forward", "drop", "toggle", "observation", "action", "you", "see", "wall", "step", "steps", "and", "carry", "inventory", "nothing", "open", "closed", "locked", "then", "after"]
    vocab = {"[UNK]": 0, "[PAD]": 1, "[EOS]": 2}
    for word in words + [",", ":", ".", "!"]:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(vocab), n_positions=512, n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=2, eos_token_id=2, pad_token_id=1)
    GPT2LMHeadModel(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``python -m londi.agents.serving`` process on loopback, requiring :data:`KEY`."""

    def __init__(self, checkpoint: Path, log: Path, *options: str) -> None:
        self.port = free_port()
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 (open for the server process's life)
        env = dict(os.environ, LONDI_SERVE_API_KEY=KEY, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "londi.agents.serving", "--model", str(checkpoint), "--served-model-name", MODEL,
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning", "--threads", "1", *options],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        self._ready = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 120.0) -> Server:
        deadline = time.monotonic() + timeout
        while not self._ready and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                self._ready = httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.2)
        if not self._ready:
            raise TimeoutError(f"server not ready after {timeout} s:\n{self.log_path.read_text()}")
        return self

    def requests(self) -> int:
        return int(httpx.get(f"{self.url}/health", timeout=5.0).json()["requests"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-gpt2") / MODEL)


@pytest.fixture(scope="module")
def servers(checkpoint, tmp_path_factory):
    """All test servers, started together (their start-up is mostly importing torch)."""
    logs = tmp_path_factory.mktemp("server-logs")
    options = {
        "healthy": (),
        "slow": ("--inject-delay", "2.0"),
        "failing": ("--fail-every", "1"),
        "dying": ("--die-after", "3"),
    }
    started = {name: Server(checkpoint, logs / f"{name}.log", *opts) for name, opts in options.items()}
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


def client(server: Server, **kwargs) -> HTTPPolicy:
    kwargs.setdefault("api", "completions")
    kwargs.setdefault("max_tokens", 6)
    return HTTPPolicy(base_url=server.url, model=MODEL, api_key=KEY, **kwargs)


def run_episode(policy: TextPolicy, *, seed: int = 0, max_steps: int | None = None) -> list[Decision]:
    """One BabyAI-Text episode to its end; the decisions, in order."""
    env = make_env(ENV_ID, max_steps=max_steps) if max_steps else make_env(ENV_ID)
    _, info = env.reset(seed=seed)
    policy.reset()
    decisions: list[Decision] = []
    done = False
    for _ in range(env.unwrapped.max_steps + 1):  # bounded even if the env misbehaved
        d = policy.act(info["text_obs"])
        assert d.action in info["text_obs"].admissible_actions
        decisions.append(d)
        _, _, terminated, truncated, info = env.step(d.action)
        if terminated or truncated:
            done = True
            break
    env.close()
    assert done
    return decisions


def test_server_endpoints(servers, checkpoint) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    server = servers["healthy"].wait_ready()
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=30) as http:
        models = http.get("/v1/models").json()
        assert [m["id"] for m in models["data"]] == [MODEL]
        prompt = build_prompt(OBS)
        answer = http.post("/v1/completions", json={"model": MODEL, "prompt": prompt, "max_tokens": 6}).json()
        # The server's greedy decoding equals transformers' own greedy generate.
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=1)
        expected = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        choice = answer["choices"][0]
        assert choice["text"] == expected
        assert answer["usage"]["prompt_tokens"] == ids.shape[1]
        assert answer["usage"]["completion_tokens"] == out.shape[1] - ids.shape[1]
        assert choice["finish_reason"] == ("length" if answer["usage"]["completion_tokens"] == 6 else "stop")
        assert answer["timings"]["prompt_ms"] > 0 and answer["timings"]["predicted_n"] == answer["usage"]["completion_tokens"]
        # A stop string cuts the text where it first occurs.
        if expected.strip():
            stop = expected.split()[-1]
            cut = http.post("/v1/completions", json={"prompt": prompt, "max_tokens": 6, "stop": [stop]}).json()
            assert cut["choices"][0]["text"] == expected[: expected.find(stop)]
            assert cut["choices"][0]["finish_reason"] == "stop"
        # Without a chat template, the chat endpoint sees the messages joined by newlines.
        chat = http.post("/v1/chat/completions", json={"model": MODEL, "max_tokens": 6, "messages": [
            {"role": "system", "content": "goal of the agent"}, {"role": "user", "content": prompt}]}).json()
        joined = http.post("/v1/completions", json={"prompt": "goal of the agent\n" + prompt, "max_tokens": 6}).json()
        assert chat["choices"][0]["message"] == {"role": "assistant", "content": joined["choices"][0]["text"]}
        # Errors in OpenAI's format.
        assert http.post("/v1/completions", json={"model": "gpt-9", "prompt": "x"}).status_code == 404
        assert http.post("/v1/completions", json={"prompt": "x", "stream": True}).status_code == 400
        bad = http.post("/v1/completions", json={"prompt": "x", "max_tokens": 10_000})
        assert bad.status_code == 400 and "max_tokens" in bad.json()["error"]["message"]
        assert http.post("/v1/completions", json={"max_tokens": 3}).status_code == 400
    unauthorised = httpx.post(f"{server.url}/v1/completions", json={"prompt": "x"}, timeout=30)
    assert unauthorised.status_code == 401 and KEY not in unauthorised.text
    assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200  # open for readiness checks
    with pytest.raises(HTTPBackendError, match="API key") as info:
        HTTPPolicy(base_url=server.url, model=MODEL, api_key="wrong").act(OBS)
    assert not info.value.retryable


def test_episode_against_a_healthy_server(servers, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server = servers["healthy"].wait_ready()
    before = server.requests()
    quick = RandomPolicy()
    policy = FallbackPolicy(client(server), quick)
    decisions = run_episode(policy)
    assert policy.fallbacks == 0 and policy.errors == 0 and quick.calls == 0
    assert server.requests() - before == len(decisions) == policy.episode.calls
    for d in decisions:
        r = d.record
        assert r.device == "http" and r.model == MODEL and r.error is None and r.retries == 0
        assert r.input_tokens > 0 and 0 < r.output_tokens <= 6 and r.device_seconds > 0
    assert sum(policy.primary.match_counts.values()) == len(decisions)
    assert KEY not in caplog.text
    policy.close()


def test_a_batch_against_londi_serve_answers_as_one_call_each(servers) -> None:
    """``act_batch`` (``--num-envs``): concurrent requests to a real server, the same answers."""
    from conftest import babyai_observations

    server = servers["healthy"].wait_ready()
    observations = babyai_observations(n_steps=5, seed=7)
    one_by_one = client(server)
    alone = [one_by_one.act(o).action for o in observations]
    batched = client(server, max_concurrency=4)
    before = server.requests()
    answers = batched.act_batch(observations)
    assert server.requests() - before == len(observations) == batched.calls
    assert [a.decision.action for a in answers] == alone  # greedy decoding: the same answer for the same prompt
    assert all(a.error is None and a.timing.wall_seconds > 0 for a in answers)
    one_by_one.close()
    batched.close()


def test_episode_against_a_slow_server(servers, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server = servers["slow"].wait_ready()
    policy = FallbackPolicy(client(server, timeout=0.25, max_retries=0), RandomPolicy())
    t0 = time.perf_counter()
    decisions = run_episode(policy, max_steps=5)
    assert time.perf_counter() - t0 < 10
    assert policy.fallbacks == policy.errors == len(decisions) == 5
    for d in decisions:
        assert d.record.model == "random" and "timeout" in d.record.error
    assert isinstance(policy.primary, HTTPPolicy) and policy.primary.failures == 5
    # With a circuit breaker the dead time is paid twice, not at every step.
    breaker = FallbackPolicy(client(server, timeout=0.25, max_retries=0), RandomPolicy(),
                             max_consecutive_errors=2, cooldown_calls=100)
    decisions = run_episode(breaker, max_steps=8)
    assert breaker.episode.to_dict() == {"calls": 8, "fallbacks": 8, "errors": 2, "skipped": 6, "retries": 0}
    assert KEY not in caplog.text
    policy.close()
    breaker.close()


def test_episode_against_a_server_answering_500(servers, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server = servers["failing"].wait_ready()
    before = server.requests()
    policy = FallbackPolicy(client(server, max_retries=1, backoff=0.01), RandomPolicy())
    decisions = run_episode(policy, max_steps=8)
    n = len(decisions)
    assert policy.episode.to_dict() == {"calls": n, "fallbacks": n, "errors": n, "skipped": 0, "retries": n}
    assert server.requests() - before == 2 * n  # each step: the request and its retry
    assert all("HTTP 500" in d.record.error and d.record.retries == 1 for d in decisions)
    assert KEY not in caplog.text
    policy.close()


def test_episode_against_a_server_that_dies(servers, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server = servers["dying"].wait_ready()
    policy = FallbackPolicy(client(server, timeout=5.0, max_retries=1, backoff=0.05), RandomPolicy())
    decisions = run_episode(policy, max_steps=10)
    assert len(decisions) == 10
    assert [d.record.error is None for d in decisions[:3]] == [True] * 3  # answered by the server
    assert all(d.record.model == "random" and d.record.error for d in decisions[3:])
    assert policy.fallbacks == policy.errors == 7
    assert server.proc.wait(timeout=10) == 3  # the server really died (--die-after's status)
    assert KEY not in caplog.text
    policy.close()


def test_cached_http_policy_replays_without_requests(servers) -> None:
    server = servers["healthy"].wait_ready()
    cached = CachedPolicy(client(server))
    policy = FallbackPolicy(cached, RandomPolicy())
    first = run_episode(policy, seed=5, max_steps=12)
    requests = server.requests()
    second = run_episode(policy, seed=5, max_steps=12)
    assert [d.action for d in second] == [d.action for d in first]
    assert server.requests() == requests  # the replay cost the server nothing
    assert all(d.record.cache_hit and d.record.device_seconds == 0.0 for d in second)
    assert policy.fallbacks == 0 and cached.hits >= len(second)
    policy.close()


def test_server_logs_hold_no_key(servers) -> None:
    servers["healthy"].wait_ready()
    for server in servers.values():
        server._log.flush()
        assert KEY not in server.log_path.read_text(errors="replace")
