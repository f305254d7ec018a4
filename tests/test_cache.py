"""The call cache: hits are free, failures are not cached, the file survives the process."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading

import numpy as np
import pytest

from londi.agents.base import Decision, TextPolicy
from londi.agents.cache import CachedPolicy, decision_from_json, decision_to_json
from londi.agents.expert import OracleExpert
from londi.agents.fallback import FallbackPolicy
from londi.core.errors import LondiError
from londi.core.meter import CallRecord
from londi.envs import make_env
from londi.envs.base import TextObservation
from londi.switch.env import EpisodeAccounting

ACTIONS = ("turn left", "turn right", "go forward")


def obs(text: str = "You see a wall 2 steps forward", *, goal: str = "go to the red ball", step: int = 0,
        actions: tuple[str, ...] = ACTIONS, history: tuple[tuple[str, str], ...] = ()) -> TextObservation:
    return TextObservation(goal=goal, text=text, admissible_actions=actions, history=history, step=step,
                           oracle_action=actions[0])


class CountingPolicy(TextPolicy):
    """Chooses by hashing the text, with a distribution and a hidden vector; counts its calls."""

    def __init__(self, name: str = "counting") -> None:
        self.name = name
        self.calls = 0

    def act(self, o: TextObservation) -> Decision:
        self.calls += 1
        i = sum(map(ord, o.text + o.goal)) % len(o.admissible_actions)
        probs = np.full(len(o.admissible_actions), 0.1 / max(len(o.admissible_actions) - 1, 1), dtype=np.float32)
        probs[i] = 0.9
        record = CallRecord(model=self.name, device="cpu", device_seconds=0.25, wall_seconds=0.3,
                            input_tokens=40, output_tokens=3, flops=1e6)
        return Decision(action=o.admissible_actions[i], record=record, probs=probs,
                        hidden=np.arange(4, dtype=np.float64) + self.calls)


class PromptPolicy(CountingPolicy):
    """Sees only the goal and the current text (a prompt without history)."""

    def prompt_for(self, o: TextObservation) -> str:
        return f"{o.goal}\n{o.text}"


class Failing(TextPolicy):
    name = "failing"

    def act(self, o: TextObservation) -> Decision:
        raise ConnectionError("down")


def test_hit_is_free_and_equal() -> None:
    inner = CountingPolicy()
    cache = CachedPolicy(inner)
    first = cache.act(obs())
    assert not first.record.cache_hit and first.record.device_seconds == 0.25
    second = cache.act(obs(step=7))  # the step index is not part of the key
    assert inner.calls == 1 and (cache.hits, cache.misses, cache.stores) == (1, 1, 1)
    assert second.action == first.action
    np.testing.assert_array_equal(second.probs, first.probs)
    np.testing.assert_array_equal(second.hidden, first.hidden)
    r = second.record
    assert r.cache_hit and r.device_seconds == 0.0 and r.flops == 0.0
    assert (r.input_tokens, r.output_tokens, r.retries, r.error) == (0, 0, 0, None)
    assert (r.model, r.device) == ("counting", "cpu")
    assert 0.0 <= r.wall_seconds < 0.05
    # An episode's accounting over the hits spends no device time.
    acc = EpisodeAccounting()
    for _ in range(5):
        acc.add("deepthink", cache.act(obs()).record)
    assert acc.calls["deepthink"] == 5 and acc.cache_hits["deepthink"] == 5 and acc.device_seconds["deepthink"] == 0.0


def test_returned_arrays_are_copies() -> None:
    cache = CachedPolicy(CountingPolicy())
    d = cache.act(obs())
    d.probs[:] = 0.0
    again = cache.act(obs())
    assert again.probs.max() == pytest.approx(0.9)
    again.hidden[:] = -1
    assert cache.act(obs()).hidden.min() >= 0


def test_key_parts() -> None:
    inner = CountingPolicy()
    cache = CachedPolicy(inner)
    base = obs()
    variants = [
        obs(text="You see a red ball 1 step left"),
        obs(goal="go to the blue key"),
        obs(actions=ACTIONS + ("toggle",)),
        obs(actions=tuple(reversed(ACTIONS))),
        obs(history=(("You see a wall", "turn left"),)),
    ]
    keys = {cache.key(base)} | {cache.key(v) for v in variants}
    assert len(keys) == 1 + len(variants)
    # Same content, other step and other oracle label: same key.
    same = TextObservation(goal=base.goal, text=base.text, admissible_actions=base.admissible_actions, step=9,
                           oracle_action="go forward")
    assert cache.key(same) == cache.key(base)
    # The model name is part of the key.
    assert CachedPolicy(CountingPolicy("other")).key(base) != cache.key(base)


def test_prompt_based_key_ignores_what_the_model_does_not_see() -> None:
    inner = PromptPolicy()
    cache = CachedPolicy(inner)
    cache.act(obs(history=(("old", "turn left"),)))
    cache.act(obs(history=(("older", "go forward"),)))
    assert inner.calls == 1 and cache.hits == 1


def test_cache_namespace_attribute_is_used() -> None:
    a, b = CountingPolicy(), CountingPolicy()
    a.cache_namespace = "model-x|temperature=0"
    b.cache_namespace = "model-x|temperature=0.7"
    assert CachedPolicy(a).key(obs()) != CachedPolicy(b).key(obs())
    assert CachedPolicy(a).namespace == "model-x|temperature=0"


def test_lru_bound() -> None:
    inner = CountingPolicy()
    cache = CachedPolicy(inner, max_size=2)
    o1, o2, o3 = obs("one"), obs("two"), obs("three")
    cache.act(o1)
    cache.act(o2)
    cache.act(o1)  # o1 is now the most recently used
    cache.act(o3)  # evicts o2
    assert cache.stats()["memory_entries"] == 2
    calls = inner.calls
    cache.act(o1)
    assert inner.calls == calls  # still cached
    cache.act(o2)
    assert inner.calls == calls + 1  # was evicted


def test_errors_and_fallback_answers_are_not_cached() -> None:
    class Erroring(CountingPolicy):
        def act(self, o):
            d = super().act(o)
            d.record.error = "degraded"
            return d

    inner = Erroring()
    cache = CachedPolicy(inner)
    cache.act(obs())
    cache.act(obs())
    assert inner.calls == 2 and cache.stores == 0 and cache.hits == 0

    quick = CountingPolicy("quick")
    wrapped = CachedPolicy(FallbackPolicy(Failing(), quick))
    d = wrapped.act(obs())
    assert d.record.error is not None and d.record.model == "quick"
    wrapped.act(obs())
    assert quick.calls == 2 and wrapped.stores == 0

    failing_cache = CachedPolicy(Failing())
    with pytest.raises(ConnectionError):
        failing_cache.act(obs())
    assert failing_cache.stores == 0


def test_persisted_across_instances(tmp_path) -> None:
    path = tmp_path / "sub" / "calls.sqlite"
    first = CachedPolicy(CountingPolicy(), path=path)
    d = first.act(obs())
    first.act(obs("elsewhere"))
    assert first.stats()["disk_entries"] == 2
    first.close()
    inner = CountingPolicy()
    second = CachedPolicy(inner, path=path, max_size=1)
    hit = second.act(obs())
    assert inner.calls == 0 and hit.record.cache_hit and hit.action == d.action
    np.testing.assert_array_equal(hit.probs, d.probs)
    assert hit.probs.dtype == np.float32 and hit.hidden.dtype == np.float64
    second.act(obs("elsewhere"))
    assert inner.calls == 0 and second.hits == 2
    # Each write is a committed transaction: another connection sees every row.
    other = sqlite3.connect(path)
    rows = other.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
    other.close()
    assert rows == 2
    second.clear()
    assert second.stats()["disk_entries"] == 0 and second.stats()["memory_entries"] == 0
    second.close()


def test_file_shared_with_another_process(tmp_path) -> None:
    path = tmp_path / "shared.sqlite"
    cache = CachedPolicy(CountingPolicy(), path=path)
    cache.act(obs("from this process"))
    code = (
        "import sys; sys.path.insert(0, {tests!r})\n"
        "from test_cache import CountingPolicy, obs\n"
        "from londi.agents.cache import CachedPolicy\n"
        "inner = CountingPolicy(); c = CachedPolicy(inner, path={path!r})\n"
        "assert c.act(obs('from this process')).record.cache_hit and inner.calls == 0\n"
        "c.act(obs('from the other process')); c.close()\n"
    ).format(tests=str(__import__("pathlib").Path(__file__).parent), path=str(path))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    inner = cache.policy
    calls = inner.calls
    assert cache.act(obs("from the other process")).record.cache_hit
    assert inner.calls == calls
    cache.close()


def test_not_a_database(tmp_path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LondiError, match="cannot use"):
        CachedPolicy(CountingPolicy(), path=bad)


def test_serialisation_round_trip() -> None:
    d = CountingPolicy().act(obs())
    back = decision_from_json(decision_to_json(d))
    assert back.action == d.action and back.record == d.record
    np.testing.assert_array_equal(back.probs, d.probs)
    plain = Decision(action="x", record=CallRecord(model="m"))
    again = decision_from_json(decision_to_json(plain))
    assert again.probs is None and again.hidden is None and again.record == plain.record


def test_arguments_checked() -> None:
    with pytest.raises(ValueError, match="oracle"):
        CachedPolicy(OracleExpert())
    with pytest.raises(ValueError, match="max_size"):
        CachedPolicy(CountingPolicy(), max_size=0)
    with pytest.raises(TypeError, match="TextPolicy"):
        CachedPolicy(object())  # type: ignore[arg-type]


def test_thread_safe() -> None:
    inner = CountingPolicy()
    cache = CachedPolicy(inner, max_size=8)
    texts = [f"text {i}" for i in range(16)]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                for t in texts:
                    assert cache.act(obs(t)).action in ACTIONS
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert cache.hits + cache.misses == 4 * 20 * 16


def test_replayed_episode_is_all_hits() -> None:
    env = make_env("londi/BabyAIText-GoToLocal-v0", max_steps=12)
    inner = CountingPolicy()
    cache = CachedPolicy(inner)

    def episode() -> list[str]:
        _, info = env.reset(seed=3)
        cache.reset()
        actions = []
        for _ in range(12):
            d = cache.act(info["text_obs"])
            actions.append(d.action)
            _, _, terminated, truncated, info = env.step(d.action)
            if terminated or truncated:
                break
        return actions

    first = episode()
    calls = inner.calls
    second = episode()
    env.close()
    assert second == first and inner.calls == calls  # the replay ran no model
    assert cache.hits >= len(second)
