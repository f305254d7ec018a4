"""The call cache: the same model asked the same question gives the cached answer for free.

Evaluation sweeps replay the same seeds with many switching policies, so DEEPTHINK (and QUICK)
see the same states again and again. :class:`CachedPolicy` wraps any
:class:`~londi.agents.base.TextPolicy` and answers a repeated question from memory, or from an
SQLite file that survives the process.

The key
    SHA-256 of: the policy's namespace (its ``cache_namespace`` attribute where it has one,
    e.g. :class:`~londi.agents.http.HTTPPolicy`'s model name and decoding settings, else its
    class and ``name``), then what the model sees (the exact prompt where the policy exposes
    ``prompt_for(obs)``, else the observation's goal, text, history, inventory and look) and
    the admissible actions. The step index and the oracle label are not part of it.

A hit
    Returns a copy of the stored :class:`~londi.agents.base.Decision` whose record has
    ``cache_hit=True``, ``device_seconds=0``, no tokens, no FLOPs and no retries (no model ran),
    and ``wall_seconds`` = the lookup time. The model name and device are the original call's.

What is stored
    Successful answers only: a decision whose record carries an ``error`` (such as a
    :class:`~londi.agents.fallback.FallbackPolicy` answer after a failure) is passed through
    but never cached, so a transient failure is not replayed. Answers of sampling models
    (``temperature > 0``) are cached like any other: the cache then replays the first sample.
    Oracles are refused, since they read privileged state that is not in the key.

Storage
    An LRU dictionary of at most ``max_size`` entries in memory; with ``path``, every stored
    answer is also written to an SQLite database (each write is one transaction, so the file
    is never left half-written, and several processes may share it). A memory miss then looks
    on disk and keeps what it finds in memory.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from londi.agents.base import (
    BatchAnswer,
    Decision,
    TextPolicy,
    act_batch,
    policy_endpoint,
    policy_fingerprint,
    seed_policy,
)
from londi.core.errors import LondiError
from londi.core.meter import CallRecord, call_clock
from londi.envs.base import TextObservation

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    key TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def _array_to_json(a: np.ndarray | None) -> dict[str, Any] | None:
    if a is None:
        return None
    a = np.asarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.ravel().tolist()}


def _array_from_json(d: dict[str, Any] | None) -> np.ndarray | None:
    if d is None:
        return None
    return np.asarray(d["data"], dtype=np.dtype(d["dtype"])).reshape(d["shape"])


def decision_to_json(decision: Decision) -> str:
    """Serialise a decision (action, distribution, hidden summary, record) as JSON."""
    return json.dumps(
        {
            "action": decision.action,
            "probs": _array_to_json(decision.probs),
            "hidden": _array_to_json(decision.hidden),
            "record": decision.record.to_dict(),
        }
    )


def decision_from_json(text: str) -> Decision:
    """Inverse of :func:`decision_to_json`."""
    data = json.loads(text)
    known = {f.name for f in dataclasses.fields(CallRecord)}
    record = CallRecord(**{k: v for k, v in data["record"].items() if k in known})
    return Decision(
        action=data["action"],
        record=record,
        probs=_array_from_json(data["probs"]),
        hidden=_array_from_json(data["hidden"]),
    )


def _copy(decision: Decision, record: CallRecord) -> Decision:
    return Decision(
        action=decision.action,
        record=record,
        probs=None if decision.probs is None else np.array(decision.probs, copy=True),
        hidden=None if decision.hidden is None else np.array(decision.hidden, copy=True),
    )


class CachedPolicy(TextPolicy):
    """Answer repeated questions to ``policy`` from a cache (see the module docstring).

    Args:
        policy: the policy to cache (not an oracle).
        path: optional SQLite file that keeps the answers across processes (created with its
            parent folders if missing).
        max_size: the most answers kept in memory (least recently used ones go first; the
            file keeps them all).

    Attributes:
        hits: answers served from the cache (memory or file).
        misses: calls passed on to ``policy``.
        stores: answers added to the cache.
    """

    def __init__(self, policy: TextPolicy, *, path: str | os.PathLike[str] | None = None, max_size: int = 10_000) -> None:
        if not isinstance(policy, TextPolicy):
            raise TypeError(f"policy must be a TextPolicy, got {type(policy).__name__}")
        if policy.is_oracle:
            raise ValueError(
                f"{policy.name!r} is an oracle: it reads privileged game state that is not in the "
                "cache key, so its answers cannot be cached"
            )
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be an int >= 1, got {max_size!r}")
        self.policy = policy
        self.max_size = max_size
        self.path = os.fspath(path) if path is not None else None
        self._memory: OrderedDict[str, Decision] = OrderedDict()
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            self._db = self._open(self.path)
        self.hits = 0
        self.misses = 0
        self.stores = 0

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        try:
            db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
            with db:
                db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise LondiError(f"cannot use {path!r} as a call cache: {exc} (delete it or pick another path)") from None
        return db

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:  # type: ignore[override]
        return self.policy.name

    @property
    def endpoint(self) -> str:  # type: ignore[override]
        return policy_endpoint(self.policy)

    def fingerprint(self) -> dict[str, Any]:
        return policy_fingerprint(self.policy)

    @property
    def namespace(self) -> str:
        """The part of the key that names the model and its settings."""
        namespace = getattr(self.policy, "cache_namespace", None)
        if namespace:
            return str(namespace)
        return f"{type(self.policy).__module__}.{type(self.policy).__qualname__}:{self.policy.name}"

    def key(self, obs: TextObservation) -> str:
        """The cache key of ``obs`` for the wrapped policy."""
        prompt_for = getattr(self.policy, "prompt_for", None)
        if callable(prompt_for):
            seen: Any = {"prompt": prompt_for(obs)}
        else:
            seen = {
                "goal": obs.goal,
                "text": obs.text,
                "history": [list(pair) for pair in obs.history],
                "inventory": obs.inventory,
                "look": obs.look,
            }
        payload = json.dumps(
            {"namespace": self.namespace, "seen": seen, "actions": list(obs.admissible_actions)},
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def __repr__(self) -> str:
        return f"CachedPolicy({self.policy!r}, path={self.path!r}, max_size={self.max_size})"

    # ------------------------------------------------------------------ storage
    def _remember(self, key: str, decision: Decision) -> None:
        self._memory[key] = decision
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_size:
            self._memory.popitem(last=False)

    def _lookup(self, key: str) -> Decision | None:
        with self._lock:
            found = self._memory.get(key)
            if found is not None:
                self._memory.move_to_end(key)
                return found
            if self._db is None:
                return None
            row = self._db.execute("SELECT value FROM decisions WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            try:
                found = decision_from_json(row[0])
            except (ValueError, KeyError, TypeError) as exc:  # a row from an incompatible version
                logger.warning("ignoring an unreadable cache entry in %s: %s", self.path, exc)
                return None
            self._remember(key, found)
            return found

    def _store(self, key: str, decision: Decision) -> None:
        with self._lock:
            self._remember(key, _copy(decision, dataclasses.replace(decision.record)))
            if self._db is not None:
                with self._db:  # one transaction: the row is written whole or not at all
                    self._db.execute(
                        "INSERT OR REPLACE INTO decisions (key, namespace, value, created) VALUES (?, ?, ?, ?)",
                        (key, self.namespace, decision_to_json(decision), time.time()),
                    )
            self.stores += 1

    # ------------------------------------------------------------------ the call
    def act(self, obs: TextObservation) -> Decision:
        """The cached decision for ``obs``, or the wrapped policy's (then cached if it succeeded)."""
        t0 = time.perf_counter()
        key = self.key(obs)
        found = self._lookup(key)
        if found is not None:
            self.hits += 1
            original = found.record
            record = CallRecord(
                model=original.model,
                device=original.device,
                device_seconds=0.0,
                wall_seconds=time.perf_counter() - t0,
                cache_hit=True,
                device_measured=True,  # known, not guessed: the model did not run
            )
            return _copy(found, record)
        self.misses += 1
        decision = self.policy.act(obs)
        if decision.record.error is None and decision.action in obs.admissible_actions:
            self._store(key, decision)
        return decision

    @property
    def supports_streams(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.policy, "supports_streams", False))

    def act_batch(self, observations: Sequence[TextObservation],
                  generators: Sequence[np.random.Generator | None] | None = None) -> list[BatchAnswer]:
        """:meth:`act` for several observations: the hits from the cache, the misses in one
        batched call of the wrapped policy (then cached where they succeeded)."""
        out: list[BatchAnswer | None] = [None] * len(observations)
        misses: list[tuple[int, str]] = []
        for i, obs in enumerate(observations):
            with call_clock() as timing:
                key = self.key(obs)
                found = self._lookup(key)
            if found is None:
                misses.append((i, key))
                continue
            self.hits += 1
            record = CallRecord(model=found.record.model, device=found.record.device, device_seconds=0.0,
                                wall_seconds=timing.wall_seconds, cache_hit=True, device_measured=True)
            out[i] = BatchAnswer(_copy(found, record), None, timing)
        if misses:
            self.misses += len(misses)
            gens = [generators[i] for i, _ in misses] if generators is not None else None
            answers = act_batch(self.policy, [observations[i] for i, _ in misses], gens)
            for (i, key), answer in zip(misses, answers):
                d = answer.decision
                if d is not None and d.record.error is None and d.action in observations[i].admissible_actions:
                    self._store(key, d)
                out[i] = answer
        return [a for a in out if a is not None]

    def stats(self) -> dict[str, int]:
        """``hits``, ``misses``, ``stores``, ``memory_entries`` and ``disk_entries`` (0 without a file)."""
        with self._lock:
            disk = 0
            if self._db is not None:
                disk = int(self._db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])
            return {
                "hits": self.hits,
                "misses": self.misses,
                "stores": self.stores,
                "memory_entries": len(self._memory),
                "disk_entries": disk,
            }

    def clear(self) -> None:
        """Forget every cached answer, in memory and in the file."""
        with self._lock:
            self._memory.clear()
            if self._db is not None:
                with self._db:
                    self._db.execute("DELETE FROM decisions")

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        self.policy.reset()

    def set_seed(self, seed: int | None) -> None:
        seed_policy(self.policy, seed)

    def close(self) -> None:
        """Close the file and the wrapped policy."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
        self.policy.close()


__all__ = ["CachedPolicy", "decision_from_json", "decision_to_json"]
