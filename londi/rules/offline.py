"""What the rules that need offline episodes share: their metering, their LM pair, their seeds.

Some baselines (``uncertainty`` and ``router`` calibrated to a rate, ``router`` and
``task-router`` trained on logged states) and the calibrated learned switch play episodes before
the evaluation. Those episodes use env seeds drawn by :func:`~londi.core.seeds.training_seeds`
from ``[0, HELDOUT_SEED_BASE)``, so they never overlap the held-out evaluation episodes. They
are played with the LM pair behind an in-memory call cache (:func:`offline_pair`: a repeated
question costs nothing) and metered with the same accounting as an evaluation, into the rule's
:attr:`OfflineRule.offline_cost`, which is reported *apart from* the evaluation (``results.json``
puts it under ``offline_cost``).

Also here: the helpers every rule family uses (:func:`episode_rng` for per-episode draws that
do not depend on the order of episodes, :func:`can_call`, :func:`check_rate`) and the default
rates and episode counts of the baselines.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from londi.agents.base import TextPolicy
from londi.agents.cache import CachedPolicy
from londi.core.errors import ConfigError
from londi.rules.base import SwitchRule
from londi.switch.accounting import DEEPTHINK, ROLES
from londi.switch.context import StepContext
from londi.switch.env import SwitchEnv
from londi.switch.rollout import EpisodeStats, run_rule

#: The call rate of ``random`` and ``periodic`` when no rate is given.
DEFAULT_RATE = 0.5
#: Episodes used to calibrate a threshold to a call rate (``uncertainty``, ``router``).
DEFAULT_CALIBRATION_EPISODES = 12
#: Episodes logged to train ``router`` and ``task-router`` (per model for ``task-router``).
DEFAULT_TRAIN_EPISODES = 12


def episode_rng(seed: int, ctx: StepContext, seen: Counter) -> np.random.Generator:
    """A generator for one episode, keyed by the rule's seed and the episode's env seed.

    The same (rule seed, env seed) gives the same draws whatever ran before in the process, so
    an episode gets the same coin flips in any process and order. ``seen`` counts repeats of an
    env seed (an env reset without a new seed), so such episodes still get fresh draws. An
    episode without a known seed (``ctx.episode_seed`` is ``None``) is keyed as env seed ``-1``.
    """
    env_seed = -1 if ctx.episode_seed is None else int(ctx.episode_seed)
    repeat = seen[env_seed]
    seen[env_seed] += 1
    return np.random.default_rng(np.random.SeedSequence([int(seed), env_seed + 1, repeat]))


def can_call(obs: Mapping[str, np.ndarray]) -> bool:
    """Whether DEEPTHINK may be called in this state (the action mask allows it)."""
    return bool(obs["action_mask"][DEEPTHINK] > 0.5)


def check_rate(rate: float | None) -> float | None:
    """``rate`` as a float, checked to be in [0, 1] (``None`` passes through)."""
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) <= 1.0:
        raise ConfigError(f"rate must be a number in [0, 1], got {rate!r}")
    return float(rate)


@dataclass
class OfflineCost:
    """What a baseline's calibration or training cost, metered like an evaluation.

    Attributes:
        purpose: what the episodes were for (``"uncertainty calibration"``, ...).
        episodes: episodes run.
        steps: env steps taken.
        calls: LM calls per role (``quick``, ``deepthink``), cache hits included.
        device_seconds: device-seconds per role (``quick``, ``deepthink``, ``switch``) and ``total``.
        wall_seconds: wall-clock time, including fitting.
        env_seeds: the env seeds used (all below ``HELDOUT_SEED_BASE``).
        cache_hits: of ``calls``, those answered by the offline call cache (no model ran, so
            they add no device-seconds; see :func:`offline_pair`).
    """

    purpose: str
    episodes: int = 0
    steps: int = 0
    calls: dict[str, int] = field(default_factory=lambda: {"quick": 0, "deepthink": 0})
    device_seconds: dict[str, float] = field(default_factory=lambda: {r: 0.0 for r in (*ROLES, "total")})
    wall_seconds: float = 0.0
    env_seeds: list[int] = field(default_factory=list)
    cache_hits: dict[str, int] = field(default_factory=lambda: {"quick": 0, "deepthink": 0})

    def add(self, episodes: Sequence[EpisodeStats], seeds: Sequence[int]) -> None:
        for e in episodes:
            self.episodes += 1
            self.steps += e.steps
            self.calls["quick"] += e.quick_calls
            self.calls["deepthink"] += e.deepthink_calls
            for role in ROLES:
                self.device_seconds[role] += float(e.device_seconds.get(role, 0.0))
            self.device_seconds["total"] += e.total_device_seconds
        known = set(self.env_seeds)
        self.env_seeds.extend(int(s) for s in dict.fromkeys(seeds) if int(s) not in known)

    def to_dict(self) -> dict[str, Any]:
        return {
            "purpose": self.purpose,
            "episodes": self.episodes,
            "steps": self.steps,
            "calls": dict(self.calls),
            "device_seconds": dict(self.device_seconds),
            "wall_seconds": self.wall_seconds,
            "env_seeds": list(self.env_seeds),
            "cache_hits": dict(self.cache_hits),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OfflineCost:
        """The inverse of :meth:`to_dict` (e.g. to keep counting after a resumed run)."""
        cost = cls(purpose=str(data["purpose"]), episodes=int(data["episodes"]), steps=int(data["steps"]),
                   wall_seconds=float(data["wall_seconds"]), env_seeds=[int(x) for x in data["env_seeds"]])
        cost.calls.update(data["calls"])
        cost.device_seconds.update(data["device_seconds"])
        cost.cache_hits.update(data.get("cache_hits", {}))
        return cost


class OfflineRule(SwitchRule):
    """A rule that needs offline episodes (calibration or training) before evaluation.

    Attributes:
        offline_cost: one :class:`OfflineCost` per offline phase, in order; empty when the rule
            was built with fixed parameters.
    """

    def __init__(self) -> None:
        self.offline_cost: list[OfflineCost] = []

    def offline_summary(self) -> list[dict[str, Any]]:
        """:attr:`offline_cost` as JSON-ready dicts."""
        return [c.to_dict() for c in self.offline_cost]


def offline_pair(quick: TextPolicy, deepthink: TextPolicy) -> tuple[TextPolicy, TextPolicy]:
    """The LM pair for a baseline's offline episodes: each wrapped in an in-memory call cache.

    Calibration rounds replay the same episodes, and a stuck QUICK sees the same state many
    times, so most offline questions repeat. Each non-oracle policy is wrapped in a
    :class:`~londi.agents.cache.CachedPolicy`: a repeated question is answered from memory (no
    model runs, so it adds no device-seconds; the accounting counts it in ``cache_hits``). The
    evaluation itself always uses the unwrapped policies.
    """

    def wrap(policy: TextPolicy) -> TextPolicy:
        if policy.is_oracle or isinstance(policy, CachedPolicy):
            return policy  # oracles read privileged state that no cache key holds
        return CachedPolicy(policy)

    return wrap(quick), wrap(deepthink)


def offline_run(
    rule: SwitchRule,
    env: SwitchEnv,
    seeds: Sequence[int],
    cost: OfflineCost,
    *,
    desc: str,
    progress: bool = False,
    on_episode: Callable[[int, EpisodeStats, dict[str, Any]], None] | None = None,
) -> list[EpisodeStats]:
    """:func:`~londi.switch.rollout.run_rule` for offline work, metered into ``cost`` (cache hits included)."""

    def meter(i: int, stats: EpisodeStats, info: dict[str, Any]) -> None:
        acc = info["accounting"]
        for role in cost.cache_hits:
            cost.cache_hits[role] += int(acc.cache_hits.get(role, 0))
        if on_episode is not None:
            on_episode(i, stats, info)

    eps = run_rule(rule, env, seeds, progress=progress, desc=desc, on_episode=meter)
    cost.add(eps, seeds)
    return eps


__all__ = [
    "DEFAULT_CALIBRATION_EPISODES",
    "DEFAULT_RATE",
    "DEFAULT_TRAIN_EPISODES",
    "OfflineCost",
    "OfflineRule",
    "can_call",
    "check_rate",
    "episode_rng",
    "offline_pair",
    "offline_run",
]
