"""End to end against a real third-party server: ``transformers serve`` (issue #23, point 5).

A ``transformers serve`` process on 127.0.0.1 serves the shipped ``deepthink-dagger`` checkpoint
(a local folder, CPU, no downloads). That server answers every request carrying ``stop`` with
HTTP 400 ("substring not found": the checkpoint's tokenizer cannot encode the stop string), so
:class:`~londi.agents.http.HTTPPolicy` must adapt: drop ``stop``, cut the answers on the client
side, and remember it. Full BabyAI-Text episodes are then played through the project's evaluation
(``evaluate_methods`` with always-DEEPTHINK, DEEPTHINK wrapped as ``londi eval --deepthink URL``
wraps it: call cache and QUICK fallback) with no failed call and no fallback; every answer must
be the text the same checkpoint generates in-process (greedy, from the same prompt: the LONDI
prompt without the list of actions, as the checkpoint was trained), and the success must be that
of the in-process ``HFPolicy`` within one episode.

The serve extras (``pip install -e '.[serve]'``, which ``scripts/setup.sh`` installs) are
needed; without them the module is skipped.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

for _module in ("fastapi", "uvicorn", "openai", "accelerate"):
    pytest.importorskip(_module, reason="the serve extras are not installed: pip install -e '.[serve]'")

from londi.agents.cache import CachedPolicy  # noqa: E402
from londi.agents.checkpoints import shipped_model_path  # noqa: E402
from londi.agents.fallback import FallbackPolicy  # noqa: E402
from londi.agents.http import HTTPPolicy  # noqa: E402
from londi.agents.http_support import cut_at_stop  # noqa: E402
from londi.agents.lm import load_policy  # noqa: E402
from londi.evaluation.loop import evaluate_methods  # noqa: E402
from londi.rules import AlwaysDeepthink  # noqa: E402
from londi.rules.base import Method  # noqa: E402

#: About 30 s on a quiet machine (most of it the server's start), over a minute on a busy one.
pytestmark = pytest.mark.slow

ENV_ID = "londi/BabyAIText-GoToLocal-v0"
MODEL = "deepthink-dagger"
EPISODES = 3
#: Seconds allowed for the server to load the model and answer /health.
STARTUP_TIMEOUT = 180.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_command(model_dir: Path, port: int) -> list[str]:
    exe = Path(sys.executable).with_name("transformers")
    prefix = [str(exe)] if exe.exists() else [
        sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())"
    ]
    return prefix + ["serve", str(model_dir), "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``(base_url, model_id, log_path)`` of a ``transformers serve`` process, killed at the end."""
    model_dir = Path(shipped_model_path(MODEL))
    port = _free_port()
    log_path = tmp_path_factory.mktemp("transformers-serve") / "serve.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
        # one thread: much faster for a model this small, above all on a busy CPU
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",  # the access log is read by the test
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            _serve_command(model_dir, port), stdout=log, stderr=subprocess.STDOUT, env=env,
            cwd=str(log_path.parent), start_new_session=True,  # its own group: its workers die with it
        )

    def stop() -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
        try:  # any worker left behind in the group
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"transformers serve exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not ready after {STARTUP_TIMEOUT:.0f} s:\n"
                            f"{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        models = httpx.get(f"{base_url}/models", timeout=10.0).json()["data"]
        yield base_url, models[0]["id"], log_path
    finally:
        stop()


class RecordingHTTPPolicy(HTTPPolicy):
    """An :class:`HTTPPolicy` that keeps every (prompt, answer, action) it produced."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.steps: list[tuple[str, str, str]] = []

    def act(self, obs):
        decision = super().act(obs)
        self.steps.append((self.prompt_for(obs), self.last_text or "", decision.action))
        return decision


def test_the_server_rejects_stop_and_the_policy_adapts(server, caplog) -> None:
    base_url, model_id, _ = server
    # The server's behaviour the adaptation is for (if this changes, the test below still holds).
    prompt = "Goal of the agent: go to the red ball\nObservation: You see a wall 2 steps forward\nAction:"
    rejected = httpx.post(f"{base_url}/completions", timeout=60.0,
                          json={"model": model_id, "prompt": prompt, "max_tokens": 4, "stop": ["\n"]})
    assert rejected.status_code == 400, rejected.text
    policy = HTTPPolicy(base_url=base_url, api="completions", max_retries=0)
    with caplog.at_level(logging.WARNING, logger="londi.agents.http"):
        text, record = policy.complete(prompt)
        policy.complete(prompt)
    assert record.error is None and record.output_tokens > 0 and text.strip()
    assert policy.unsupported_params == {"stop"} and policy.failures == 0 and policy.model == model_id
    assert sum("'stop'" in r.getMessage() for r in caplog.records) == 1


def test_full_episodes_match_the_in_process_model(server) -> None:
    base_url, _, log_path = server
    quick = load_policy("quick-dagger")
    # As `londi eval --deepthink URL --http-api completions` builds it (londi.agents.loading):
    # a call cache, and QUICK when the server fails; the HTTP policy records what it answered.
    # The shipped checkpoints were trained on the LONDI prompt without the list of actions.
    http = RecordingHTTPPolicy(base_url=base_url, api="completions", list_actions=False,
                               name="deepthink@transformers-serve")
    served = FallbackPolicy(CachedPolicy(http), quick)
    rejections_before = _rejections(log_path)
    results = evaluate_methods({"served": Method(AlwaysDeepthink(), quick, served)}, env_id=ENV_ID,
                               episodes=EPISODES, seed=0, progress=False)
    entry = results["methods"]["served"]
    assert results["valid"] and all(v == 0 for v in entry["faults"].values()), entry["faults"]
    assert served.total.fallbacks == 0 and served.total.errors == 0
    assert http.failures == 0 and http.unsupported_params == {"stop"} and len(http.steps) >= EPISODES
    assert entry["deepthink_calls_per_episode"] > 0
    assert _rejections(log_path) - rejections_before == 1  # the first request's; never again

    # Every answer is what the same checkpoint generates in-process (greedy, same length).
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = shipped_model_path(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.inference_mode():
        for prompt, text, _action in http.steps:
            ids = tokenizer(prompt, return_tensors="pt")
            out = model.generate(**ids, max_new_tokens=http.max_tokens, do_sample=False)
            expected = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
            assert text == cut_at_stop(expected, http.stop)

    # The success of the in-process HFPolicy on the same episodes, within one episode.
    inproc = evaluate_methods({"in-process": Method(AlwaysDeepthink(), quick, load_policy(MODEL))},
                              env_id=ENV_ID, episodes=EPISODES, seed=0, progress=False)["methods"]["in-process"]
    assert abs(entry["success"] - inproc["success"]) * EPISODES <= 1 + 1e-9, (entry["success"], inproc["success"])


def _rejections(log_path: Path) -> int:
    """Requests the server answered with HTTP 400, from its access log."""
    return log_path.read_text(errors="replace").count('HTTP/1.1" 400')
