"""Callbacks and files of a training run: the progress bar, resumable checkpoints, and the
names of the files a run folder holds."""
from __future__ import annotations

import logging
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from londi.core.errors import LondiError
from londi.core.io import atomic_write_bytes, atomic_write_json, read_json
from londi.learn.dqn import LondiDQN

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
MODEL_FILE = "model.zip"
CHECKPOINT_DIR = "checkpoint"


def reached(callback: BaseCallback, every: int) -> bool:
    """Whether the step just taken brought ``callback.num_timesteps`` to or past a multiple of
    ``every``: SB3 counts the transitions of all envs, so with ``N`` envs the count grows by ``N``
    a step and may step over the multiple (with one env: ``num_timesteps % every == 0``)."""
    env = callback.model.get_env()
    n = env.num_envs if env is not None else 1
    now = int(callback.num_timesteps)
    return now // every > (now - n) // every


class TqdmCallback(BaseCallback):
    """A tqdm progress bar over training steps (SB3's own needs ``rich``)."""

    def __init__(self, total: int, initial: int = 0, desc: str = "train switch") -> None:
        super().__init__()
        self.total, self.initial, self.desc = total, initial, desc
        self.bar = None

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, initial=self.initial, desc=self.desc, leave=False)

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


class ResumableCheckpoint(BaseCallback):
    """Every ``every`` steps, save what a resumed run needs: weights and optimiser
    (``model.zip``), the replay buffer, lambda and the RNG states. Each file is written
    atomically and the set is committed by writing ``state.json`` last."""

    def __init__(self, folder: Path, every: int) -> None:
        super().__init__()
        self.folder, self.every = folder, every

    def _on_step(self) -> bool:
        if self.every and reached(self, self.every):
            save_checkpoint(self.model, self.folder)
        return True


def save_checkpoint(model: LondiDQN, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".model.zip.tmp"
    model.save(tmp)
    os.replace(tmp, folder / "model.zip")
    buf = pickle.dumps(model.replay_buffer, protocol=pickle.HIGHEST_PROTOCOL)
    atomic_write_bytes(folder / "replay_buffer.pkl", buf)
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": th.get_rng_state()}
    atomic_write_bytes(folder / "rng.pkl", pickle.dumps(rng))
    atomic_write_json(folder / "state.json", {"num_timesteps": int(model.num_timesteps),
                                               "lambda": model.lagrangian_multiplier})


def load_checkpoint(folder: Path, env: Any) -> LondiDQN | None:
    state_file = folder / "state.json"
    if not state_file.is_file():
        return None
    state = read_json(state_file)
    try:
        model = LondiDQN.load(folder / "model.zip", env=env)
        with open(folder / "replay_buffer.pkl", "rb") as f:
            model.replay_buffer = pickle.load(f)
        with open(folder / "rng.pkl", "rb") as f:
            rng = pickle.load(f)
    except Exception as exc:
        raise LondiError(f"the checkpoint in {folder} is corrupt ({exc}); delete it to start over") from None
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    th.set_rng_state(rng["torch"])
    model.lagrangian_multiplier = float(state["lambda"])
    model._sync_cost_weight()
    logger.info("resuming from %s at step %d", folder, model.num_timesteps)
    return model


__all__ = ["CHECKPOINT_DIR", "CONFIG_FILE", "MODEL_FILE", "ResumableCheckpoint", "TqdmCallback", "load_checkpoint",
           "reached", "save_checkpoint"]
