"""Gymnasium ids for every LONDI text environment, and :func:`make_env` with clear errors."""
from __future__ import annotations

from typing import Any

import gymnasium as gym

from londi.core.errors import UnknownChoiceError

BABYAI_PREFIX = "londi/BabyAIText-"
#: The env the demo, the shipped LM pair and ``londi eval`` without ``--env`` use.
DEFAULT_ENV_ID = "londi/BabyAIText-GoToLocal-v0"

_registered = False


def register_envs() -> None:
    """Register all ids (idempotent). Importing :mod:`londi.envs` calls this."""
    global _registered
    if _registered:
        return
    from londi.envs.babyai_text import babyai_level_ids

    for name, minigrid_id in babyai_level_ids().items():
        version = minigrid_id.rsplit("-v", 1)[1]
        gym.register(
            id=f"{BABYAI_PREFIX}{name}-v{version}",
            entry_point="londi.envs.babyai_text:BabyAITextEnv",
            kwargs={"level": name},
        )
    gym.register(
        id=f"{BABYAI_PREFIX}MixedTrainLocal-v0",
        entry_point="londi.envs.babyai_text:BabyAITextEnv",
        kwargs={"level": "MixedTrainLocal"},
    )
    for register_family in _FAMILIES:
        register_family()
    _registered = True


#: Other env families add a function here that registers their ids (ScienceWorld, TextWorld).
_FAMILIES: list = []

from londi.envs.scienceworld import register_scienceworld_envs  # noqa: E402 - after _FAMILIES on purpose
from londi.envs.textworld import register_textworld_envs  # noqa: E402

_FAMILIES += [register_scienceworld_envs, register_textworld_envs]


def env_ids() -> list[str]:
    """All registered LONDI env ids, sorted."""
    register_envs()
    return sorted(k for k in gym.registry if k.startswith("londi/"))


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` for LONDI ids, with an error naming the closest ids for an unknown one.

    The returned env is unwrapped of gymnasium's checker wrappers' order enforcement only in
    the sense that ``gym.make`` adds them; pass ``disable_env_checker=True`` to skip the check.
    """
    ids = env_ids()
    if env_id not in ids:
        raise UnknownChoiceError("env id", env_id, ids)
    return gym.make(env_id, **kwargs)
