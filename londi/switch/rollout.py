"""One episode of the switch, and many: the loop every evaluation, calibration and selection
run plays.

:func:`run_rule` plays a decider (a :class:`~londi.rules.base.SwitchRule`: anything with
``name``, ``reset``, ``choose`` and ``observe``) on one episode per env seed through a
:class:`~londi.switch.env.SwitchEnv` and returns an :class:`EpisodeStats` per episode. It lives
here, below the rules, so that rules which calibrate themselves on training episodes and the
evaluation above them play the same loop.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from londi.agents.base import TextPolicy
from londi.core.meter import CallRecord, device_timer
from londi.envs import make_env
from londi.envs.worker import SubprocessEnv
from londi.switch.accounting import ROLES
from londi.switch.context import StepContext
from londi.switch.env import SwitchEnv

logger = logging.getLogger(__name__)


class Decider(Protocol):
    """What :func:`run_rule` plays: the interface of :class:`~londi.rules.base.SwitchRule`."""

    name: str

    def reset(self) -> None: ...

    def choose(self, obs: dict[str, np.ndarray], ctx: StepContext) -> int: ...

    def observe(self, info: dict[str, Any]) -> None: ...


def _non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


@dataclass(kw_only=True)
class EpisodeStats:
    """What the evaluation loop records for one episode, before aggregation.

    Attributes:
        success: the episode solved the task.
        episode_return: the episode's return (sum of task rewards; ScienceWorld: final score
            0-100). Serialised under the key ``"return"``.
        steps: environment steps taken.
        quick_calls: calls to the QUICK model.
        deepthink_calls: calls to the DEEPTHINK model (at most one per step).
        device_seconds: device-seconds spent per role; keys among :data:`ROLES`, missing roles
            count as 0.
        quick_oracle_disagreements: steps where QUICK's proposed action differed from the
            **oracle** expert's (= the calls the hindsight oracle would have made on this
            episode's states); ``None`` when the env has no expert.
        taken_oracle_disagreements: steps where the executed action differed from the **oracle**
            expert's; ``None`` when the env has no expert.
        level: the episode's level where the env reports one (``info["level"]``: BabyAI-Text,
            whose task mix draws a level per episode); ``None`` otherwise.
    """

    success: bool
    episode_return: float
    steps: int
    quick_calls: int
    deepthink_calls: int
    device_seconds: dict[str, float] = field(default_factory=dict)
    quick_oracle_disagreements: int | None = None
    taken_oracle_disagreements: int | None = None
    level: str | None = None

    def __post_init__(self) -> None:
        self.success = bool(self.success)
        self.episode_return = float(self.episode_return)
        if not math.isfinite(self.episode_return):
            raise ValueError(f"episode_return must be finite, got {self.episode_return}")
        for name in ("steps", "quick_calls", "deepthink_calls"):
            setattr(self, name, _non_negative_int(name, getattr(self, name)))
        for name in ("quick_oracle_disagreements", "taken_oracle_disagreements"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _non_negative_int(name, value))
        if self.deepthink_calls > self.steps:
            raise ValueError(
                f"deepthink_calls ({self.deepthink_calls}) cannot exceed steps ({self.steps}): "
                "DEEPTHINK is called at most once per step"
            )
        unknown = set(self.device_seconds) - set(ROLES)
        if unknown:
            raise ValueError(
                f"unknown device_seconds role(s) {sorted(unknown)}; valid roles: {', '.join(ROLES)}"
            )
        seconds: dict[str, float] = {}
        for role in ROLES:
            value = float(self.device_seconds.get(role, 0.0))
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"device_seconds[{role!r}] must be finite and >= 0, got {value}")
            seconds[role] = value
        self.device_seconds = seconds

    @property
    def total_device_seconds(self) -> float:
        """Device-seconds of all roles together."""
        return float(sum(self.device_seconds.values()))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; the return is stored under ``"return"``."""
        out: dict[str, Any] = {
            "success": self.success,
            "return": self.episode_return,
            "steps": self.steps,
            "quick_calls": self.quick_calls,
            "deepthink_calls": self.deepthink_calls,
            "device_seconds": dict(self.device_seconds),
        }
        if self.quick_oracle_disagreements is not None:
            out["quick_oracle_disagreements"] = self.quick_oracle_disagreements
        if self.taken_oracle_disagreements is not None:
            out["taken_oracle_disagreements"] = self.taken_oracle_disagreements
        if self.level is not None:
            out["level"] = self.level
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpisodeStats:
        """Inverse of :meth:`to_dict` (also accepts ``"episode_return"`` for the return)."""
        if "return" in data:
            ret = data["return"]
        elif "episode_return" in data:
            ret = data["episode_return"]
        else:
            raise ValueError("episode record has no 'return' key")
        seconds = {k: v for k, v in dict(data.get("device_seconds", {})).items() if k != "total"}
        return cls(
            success=data["success"],
            episode_return=ret,
            steps=data["steps"],
            quick_calls=data["quick_calls"],
            deepthink_calls=data["deepthink_calls"],
            device_seconds=seconds,
            quick_oracle_disagreements=data.get("quick_oracle_disagreements"),
            taken_oracle_disagreements=data.get("taken_oracle_disagreements"),
            level=data.get("level"),
        )


def build_switch_env(
    env_id: str,
    quick: TextPolicy,
    deepthink: TextPolicy,
    *,
    features: str | None = "quick",
    call_cost: float = 0.0,
    budget: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    own_streams: bool = False,
    in_subprocess: bool = False,
) -> SwitchEnv:
    """A :class:`SwitchEnv` over the env ``env_id`` (gymnasium's checker wrappers removed);
    ``own_streams`` for one of several envs played side by side (:mod:`londi.switch.vector`),
    ``in_subprocess`` to run the game in its own process
    (:class:`~londi.envs.worker.SubprocessEnv`)."""
    if in_subprocess:
        base: Any = SubprocessEnv(env_id, disable_env_checker=True, **(env_kwargs or {}))
    else:
        base = make_env(env_id, disable_env_checker=True, **(env_kwargs or {}))
    return SwitchEnv(base, quick, deepthink, features=features, call_cost=call_cost, budget=budget,
                     own_streams=own_streams)


def episode_stats(info: dict[str, Any]) -> EpisodeStats:
    """An :class:`EpisodeStats` from the last step's ``info`` of an episode."""
    acc = info["accounting"]
    labelled = acc.oracle_labelled_steps > 0
    return EpisodeStats(
        success=bool(info.get("success", False)),
        episode_return=acc.env_return,
        steps=acc.steps,
        quick_calls=acc.calls["quick"],
        deepthink_calls=acc.calls["deepthink"],
        device_seconds=dict(acc.device_seconds),
        quick_oracle_disagreements=acc.oracle_disagreements if labelled else None,
        taken_oracle_disagreements=acc.taken_oracle_disagreements if info.get("oracle_action") is not None or labelled else None,
        level=str(info["level"]) if info.get("level") is not None else None,
    )


def run_rule(
    rule: Decider,
    env: SwitchEnv,
    seeds: Sequence[int],
    *,
    progress: bool = True,
    desc: str | None = None,
    on_episode: Callable[[int, EpisodeStats, dict[str, Any]], None] | None = None,
) -> list[EpisodeStats]:
    """Run ``rule`` on one episode per seed; the rule's own decision time is metered as switch cost."""
    out: list[EpisodeStats] = []
    faults = 0
    for i, s in enumerate(tqdm(seeds, desc=desc or rule.name, disable=not progress, leave=False)):
        obs, info = env.reset(seed=int(s))
        rule.reset()
        done = False
        while not done:
            with device_timer("cpu") as t:
                choice = rule.choose(obs, env.step_context())
            env.add_switch_cost(CallRecord(model=f"rule:{rule.name}", device_seconds=t.device_seconds,
                                           wall_seconds=t.wall_seconds))
            obs, _, terminated, truncated, info = env.step(choice)
            rule.observe(info)
            done = terminated or truncated
        stats = episode_stats(info)
        acc = info["accounting"]
        faults += acc.policy_errors + acc.env_errors
        out.append(stats)
        if on_episode is not None:
            on_episode(i, stats, info)
    if faults:
        logger.warning("%s: %d policy/env faults over %d episodes (counted in results)", rule.name, faults, len(seeds))
    return out


__all__ = ["Decider", "EpisodeStats", "build_switch_env", "episode_stats", "run_rule"]
