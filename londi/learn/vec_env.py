"""``SwitchVecEnv``: several switch episodes played at once, as a stable-baselines3 ``VecEnv``.

``londi train --num-envs N`` trains on ``N`` :class:`~londi.switch.env.SwitchEnv` copies over the
same QUICK and DEEPTHINK objects, stepped in lockstep by a
:class:`~londi.switch.vector.SwitchEnvBatch`, so that each step asks each LM once for all the
episodes that need it (one forward for a local model, concurrent requests for a served one).
To SB3 it is an ordinary ``VecEnv`` with ``DummyVecEnv``'s semantics:

* ``reset()`` resets every env (with the seeds given to :meth:`SwitchVecEnv.seed`, once) and
  returns the observations stacked per key (``{"features": (N, dim), "action_mask": (N, 2)}``);
* ``step_async`` / ``step_wait`` step all envs; an env whose episode ended is reset at once
  (without a seed: its next episode continues its own random streams), the observation returned
  for it is its next episode's first, and ``infos[i]["terminal_observation"]`` holds the final one;
  ``infos[i]["TimeLimit.truncated"]`` is set when the episode was truncated, not terminated
  (the replay buffer bootstraps through it). The resets of one step are batched too;
* ``get_attr`` / ``set_attr`` / ``env_method`` / ``env_is_wrapped`` reach the ``SwitchEnv`` copies.

It also answers what the training code reads from a lone ``SwitchEnv``: ``quick``,
``deepthink``, ``step_limits_seen`` (the union over the copies), ``set_call_cost`` (all copies),
so that :func:`~londi.switch.card.describe_switch` describes a switch trained on it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from londi.switch.env import SwitchEnv
from londi.switch.vector import SwitchEnvBatch


class SwitchVecEnv(VecEnv):
    """An SB3 ``VecEnv`` over a :class:`~londi.switch.vector.SwitchEnvBatch`.

    Args:
        envs: the batch, or the ``SwitchEnv`` copies to make one of (same QUICK and DEEPTHINK
            objects, ``own_streams=True``; :class:`~londi.switch.vector.SwitchEnvBatch` checks).
    """

    def __init__(self, envs: SwitchEnvBatch | Sequence[SwitchEnv]) -> None:
        self.batch = envs if isinstance(envs, SwitchEnvBatch) else SwitchEnvBatch(envs)
        self.envs: list[SwitchEnv] = self.batch.envs
        space = self.batch.observation_space
        if not isinstance(space, gym.spaces.Dict):
            raise TypeError("SwitchVecEnv needs SwitchEnvs with a Dict observation space")
        super().__init__(len(self.envs), space, self.batch.action_space)
        self.keys = list(space.spaces)
        self._actions: np.ndarray | None = None

    # ------------------------------------------------------------------ what training reads off its env
    @property
    def quick(self) -> Any:
        return self.envs[0].quick

    @property
    def deepthink(self) -> Any:
        return self.envs[0].deepthink

    @property
    def step_limits_seen(self) -> set[int]:
        """Every step limit any copy's step feature was normalised by."""
        return set().union(*(env.step_limits_seen for env in self.envs))

    def set_call_cost(self, call_cost: float) -> None:
        """Change every copy's ``c`` (:meth:`~londi.switch.env.SwitchEnv.set_call_cost`)."""
        for env in self.envs:
            env.set_call_cost(call_cost)

    # ------------------------------------------------------------------ VecEnv
    def _stack(self, observations: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {k: np.stack([np.asarray(o[k]) for o in observations]).astype(self.observation_space[k].dtype,
                                                                                copy=False)
                for k in self.keys}

    def seed(self, seed: int | Sequence[int | None] | None = None) -> Sequence[int | None]:
        """Seeds for the next :meth:`reset`: an int gives env ``i`` ``seed + i`` (SB3's rule);
        a sequence gives each env its own (``None``: that env is not reseeded)."""
        if seed is None or isinstance(seed, (int, np.integer)):
            return super().seed(None if seed is None else int(seed))
        seeds = [None if s is None else int(s) for s in seed]
        if len(seeds) != self.num_envs:
            raise ValueError(f"seed() got {len(seeds)} seeds for {self.num_envs} envs")
        self._seeds = seeds
        return list(seeds)

    def reset(self) -> VecEnvObs:
        if any(self._options):
            raise NotImplementedError("SwitchVecEnv takes no reset options")
        results = self.batch.reset(list(range(self.num_envs)), list(self._seeds))
        for i, (_, info) in enumerate(results):
            self.reset_infos[i] = info
        self._reset_seeds()
        self._reset_options()
        return self._stack([obs for obs, _ in results])

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() without a step_async()")
        actions, self._actions = self._actions, None
        results = self.batch.step(list(range(self.num_envs)), [int(a) for a in actions])
        observations: list[dict[str, np.ndarray]] = []
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        dones = np.zeros(self.num_envs, dtype=bool)
        infos: list[dict[str, Any]] = []
        for i, (obs, reward, terminated, truncated, info) in enumerate(results):
            rewards[i] = reward
            dones[i] = terminated or truncated
            info["TimeLimit.truncated"] = bool(truncated and not terminated)
            if dones[i]:
                info["terminal_observation"] = obs
            observations.append(obs)
            infos.append(info)
        finished = [i for i in range(self.num_envs) if dones[i]]
        if finished:  # one batched reset for every env that finished this step
            for i, (obs, info) in zip(finished, self.batch.reset(finished, [None] * len(finished))):
                observations[i] = obs
                self.reset_infos[i] = info
        return self._stack(observations), rewards, dones, infos

    def close(self) -> None:
        self.batch.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [self.envs[i].get_wrapper_attr(attr_name) for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for i in self._get_indices(indices):
            setattr(self.envs[i], attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        return [self.envs[i].get_wrapper_attr(method_name)(*method_args, **method_kwargs)
                for i in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        from stable_baselines3.common.env_util import is_wrapped

        return [is_wrapped(self.envs[i], wrapper_class) for i in self._get_indices(indices)]


__all__ = ["SwitchVecEnv"]
