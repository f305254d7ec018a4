"""Training a switch: one run, top to bottom.

1. Validate the :class:`TrainConfig` and make the run folder (``config.json`` first).
2. Load QUICK and DEEPTHINK, wrap the env in a :class:`~londi.switch.env.SwitchEnv` with the
   chosen features, per-call cost and (optionally) hard budget; with ``num_envs > 1``, that many
   copies over the same two policies in a :class:`~londi.learn.vec_env.SwitchVecEnv`.
3. Build :class:`~londi.learn.dqn.LondiDQN` (or resume it from the run folder's checkpoint).
4. ``learn`` with a progress bar, CSV and TensorBoard logs, periodic checkpoints (weights,
   replay buffer, lambda, RNG states and step counter), all written atomically.
5. Save ``model.zip``; a switch is loaded back with :func:`load_switch`.
"""
from __future__ import annotations

import logging
import math
import os
import random
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecMonitor

from londi.agents.checkpoints import default_pair
from londi.agents.lm import load_policy
from londi.core.errors import ConfigError, LondiError, UnknownChoiceError
from londi.core.io import atomic_write_json, read_json
from londi.core.seeds import LEGACY_RUN_SEEDS, OFFLINE_SEED_END, rng_seed, training_env_seed, training_seeds
from londi.envs import DEFAULT_ENV_ID, env_ids
from londi.learn.callbacks import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    MODEL_FILE,
    ResumableCheckpoint,
    TqdmCallback,
    load_checkpoint,
)
from londi.learn.dqn import LondiDQN
from londi.learn.ensemble import SwitchEnsemble
from londi.learn.selection import LAST_MODEL_FILE, SELECTION_PURPOSE, BestSwitchCallback, finish_selection
from londi.learn.vec_env import SwitchVecEnv
from londi.switch.card import (
    check_observation_dim,
    check_policies,
    describe_switch,
    read_description,
    write_description,
)
from londi.switch.features import ENCODERS, reads_oracle
from londi.switch.rollout import build_switch_env

logger = logging.getLogger(__name__)

#: ``TrainConfig.select_every`` for runs with a per-call cost or a hard budget.
DEFAULT_SELECT_EVERY = 2000
#: Purpose string that draws the first-episode env seeds of training envs 1..N-1 (``num_envs``).
TRAIN_ENVS_PURPOSE = "switch-train-envs"
#: The most training envs one run plays at once.
MAX_NUM_ENVS = 1024


@dataclass
class TrainConfig:
    """Everything that defines a switch-training run (written to ``config.json``)."""

    env: str = DEFAULT_ENV_ID
    """Env id to train on (``londi envs`` lists them)."""
    quick: str | None = None
    """QUICK model: a shipped name or a checkpoint folder; ``None``: the env's default pair's
    (:func:`~londi.agents.checkpoints.default_pair`: the task-mix pair on BabyAI-Text levels other
    than GoToLocal, else ``quick-dagger``), filled in when the config is made."""
    deepthink: str | None = None
    """DEEPTHINK model: a shipped name or a checkpoint folder; ``None``: the env's default pair's."""
    features: str = "quick+goal+choice+target"
    """Switch features: quick, choice, goal, target, bow, minilm, oracle (**an oracle**: the
    expert's label, for controlled experiments only), or a '+' combination. QUICK's own signals
    (entropy, margin, hidden state) miss what QUICK gets wrong; where the goal shows up in the
    observation and the action QUICK proposes give the switch the cue to overrule it, and on
    missions in phases (pick up, put next to) the object the mission points at now (``target``;
    zero on other envs) tells it which phase it is in (the measurements are in
    docs/benchmarks.md, "The learner" and "LONDI on the mix")."""
    cost: float = 0.05
    """Per-call cost c of DEEPTHINK, in reward units (>= 0); the demo's, chosen on the validation
    seed (docs/benchmarks.md, "The default pair")."""
    budget: int | None = None
    """Hard cap B on DEEPTHINK calls per episode (LONDI-B); None for no cap."""
    cost_limit: float | None = None
    """Limit L on the expected DEEPTHINK calls per episode, kept by a Lagrange multiplier."""
    lagrangian_multiplier_init: float = 0.0
    """Initial lambda (>= 0)."""
    lambda_lr: float = 0.02
    """Dual-ascent step size for lambda."""
    lagrangian_upper_bound: float | None = None
    """Optional cap on lambda."""
    steps: int = 8000
    """Environment steps of training."""
    seed: int = 0
    """One seed for env, switch, LMs and exploration (any non-negative integer). The first
    training episode is env seed :func:`~londi.core.seeds.training_env_seed` (the seed itself for
    0-9), later ones continue the env's random stream; never a held-out episode."""
    learning_rate: float = 1e-3
    """Adam step size of the Q-network."""
    buffer_size: int = 50_000
    """Replay buffer capacity (transitions)."""
    learning_starts: int = 500
    """Steps of (masked) random switching before learning starts."""
    batch_size: int = 64
    """Replay minibatch size."""
    gamma: float = 0.99
    """Discount for the reward and cost values. A BabyAI-Text episode runs ~25 steps and a
    DEEPTHINK call pays off only at the goal, so the horizon must reach it (0.95**25 = 0.28,
    0.99**25 = 0.78)."""
    n_steps: int = 1
    """n-step targets for the reward and cost values (1: one-step DQN targets). Long episodes with
    a sparse reward (the first pair's) want longer sums, which carry the goal's reward back to the
    decisions that earned it; with short episodes an n-step sum under epsilon-greedy exploration
    also counts the random calls of the next steps, which spend the budget a capped switch is
    weighing (docs/benchmarks.md, "The default pair" and "n-step targets and goal features")."""
    train_freq: int = 1
    """Gradient step every this many env steps."""
    target_update_interval: int = 250
    """Env steps between target-network updates."""
    exploration_fraction: float = 0.3
    """Fraction of training over which epsilon decays."""
    exploration_final_eps: float = 0.05
    """Final epsilon."""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer widths of the Q-network."""
    checkpoint_every: int = 2000
    """Env steps between resumable checkpoints (0: none)."""
    select_every: int | None = None
    """Env steps between evaluations of the greedy switch on selection episodes; the run keeps
    the weights with the best objective (mean return - c * calls) as ``model.zip`` and the last
    ones as ``last_model.zip`` (see :mod:`londi.learn.selection`). ``None`` (the default) means 2000
    for a run with a per-call cost or a hard budget and 0 for a Lagrangian limit (its weight
    moves during training and is calibrated afterwards); 0 keeps the last weights. A run of at
    most this many steps has one candidate and keeps it without selection episodes. Config
    files written before this field existed load with 0, which is how they ran."""
    select_episodes: int = 120
    """Selection episodes per evaluation (training env seeds, the same each time; fewer made the
    pick noisier, docs/benchmarks.md "Keeping the best weights")."""
    num_envs: int = 1
    """Training episodes played at once (:class:`~londi.learn.vec_env.SwitchVecEnv`: copies of
    the env over the same QUICK and DEEPTHINK, each step's LM calls batched across them). 1 is
    the lone env of every run before this field existed, unchanged. Env 0's first episode is
    :func:`~londi.core.seeds.training_env_seed`, env ``i``'s a distinct offline seed of its own
    (:func:`training_env_seeds`); later episodes continue each env's own random stream.
    ``steps``, ``learning_starts``, ``target_update_interval``, ``checkpoint_every`` and
    ``select_every`` count transitions over all envs (SB3's ``num_timesteps``, which grows by
    ``num_envs`` a step: a run stops at the first multiple of ``num_envs`` >= ``steps``, and an
    interval fires on the first step that reaches it). The replay ratio is kept: one gradient
    step per ``train_freq`` transitions, as with one env (SB3 collects ``train_freq / g`` steps
    of all envs, then takes ``num_envs / g`` gradient steps, ``g = gcd(train_freq, num_envs)``)."""

    def __post_init__(self) -> None:
        default_quick, default_deepthink = default_pair(self.env)
        self.quick = self.quick or default_quick
        self.deepthink = self.deepthink or default_deepthink
        if self.select_every is None:
            self.select_every = 0 if self.cost_limit is not None else DEFAULT_SELECT_EVERY

    def validate(self) -> TrainConfig:
        ids = env_ids()
        if self.env not in ids:
            raise UnknownChoiceError("env id", self.env, ids)
        for part in self.features.split("+"):
            if part.strip() not in ENCODERS:
                raise UnknownChoiceError("feature encoder", part.strip(), ENCODERS)
        if not (isinstance(self.cost, (int, float)) and math.isfinite(self.cost) and self.cost >= 0):
            raise ConfigError(f"cost must be a finite number >= 0, got {self.cost!r}")
        if self.budget is not None and (isinstance(self.budget, bool) or not isinstance(self.budget, int)
                                        or self.budget < 0):
            raise ConfigError(f"budget must be a non-negative integer, got {self.budget!r}")
        if self.cost_limit is not None and not (math.isfinite(self.cost_limit) and self.cost_limit >= 0):
            raise ConfigError(f"cost_limit must be a finite number >= 0, got {self.cost_limit!r}")
        if self.budget is not None and self.cost_limit is not None:
            raise ConfigError("use either a hard budget (--budget) or an expected-cost limit (--cost-limit), not both")
        if self.lagrangian_multiplier_init < 0:
            raise ConfigError("lagrangian_multiplier_init must be >= 0")
        if self.lambda_lr <= 0:
            raise ConfigError("lambda_lr must be > 0")
        if self.steps <= 0:
            raise ConfigError(f"steps must be positive, got {self.steps}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("buffer_size", "batch_size", "train_freq", "target_update_interval", "n_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.learning_starts < 0 or self.checkpoint_every < 0 or self.select_every < 0:
            raise ConfigError("learning_starts, checkpoint_every and select_every must be >= 0")
        if self.select_episodes <= 0:
            raise ConfigError(f"select_episodes must be positive, got {self.select_episodes}")
        if (isinstance(self.num_envs, bool) or not isinstance(self.num_envs, int)
                or not 1 <= self.num_envs <= MAX_NUM_ENVS):
            raise ConfigError(f"num_envs must be an integer from 1 to {MAX_NUM_ENVS}, got {self.num_envs!r}")
        if self.select_every and self.cost_limit is not None:
            raise ConfigError("select_every > 0 does not combine with cost_limit: a Lagrangian switch's weight c + lambda "
                              "moves during training and is calibrated to the limit afterwards, so there is no fixed "
                              "objective to select on")
        if not 0 < self.gamma <= 1 or not 0 < self.exploration_fraction <= 1:
            raise ConfigError("gamma and exploration_fraction must be in (0, 1]")
        return self

    @property
    def method(self) -> str:
        if self.budget is not None:
            return f"londi-b{self.budget}"
        if self.cost_limit is not None:
            return f"londi-lag{self.cost_limit:g}"
        return f"londi-c{self.cost:g}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UnknownChoiceError("config field", unknown[0], known)
        data = dict(data)
        data.setdefault("select_every", 0)  # written before selection existed: ran without it
        return cls(**data)


def default_run_dir(config: TrainConfig, root: str | Path = "runs") -> Path:
    env = config.env.replace("/", "_")
    return Path(root) / f"{env}__{config.method}__{config.seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    th.manual_seed(seed)


def training_env_seeds(config: TrainConfig) -> list[int]:
    """The env seed of each training env's first episode (``config.num_envs`` of them).

    Env 0 starts on :func:`~londi.core.seeds.training_env_seed`, as a lone env does; env ``i``
    on the ``i``-th distinct draw from ``[LEGACY_RUN_SEEDS, OFFLINE_SEED_END)`` (offline seeds,
    never held out, above the first training episodes of run seeds 0-9) of a stream of the run
    seed's own, skipping the run's selection episodes. Env ``i``'s seed does not depend on
    ``num_envs``.
    """
    first = training_env_seed(config.seed)
    seeds = [first]
    taken = {first}
    if config.select_every:
        taken.update(training_seeds(config.seed, config.select_episodes, SELECTION_PURPOSE))
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, zlib.crc32(TRAIN_ENVS_PURPOSE.encode())]))
    while len(seeds) < config.num_envs:
        s = int(rng.integers(LEGACY_RUN_SEEDS, OFFLINE_SEED_END))
        if s not in taken:
            seeds.append(s)
            taken.add(s)
    return seeds


def _replay_schedule(config: TrainConfig) -> dict[str, Any]:
    """SB3's ``train_freq`` (steps of all envs) and ``gradient_steps`` that keep one gradient step
    per ``config.train_freq`` transitions with ``config.num_envs`` envs; nothing for one env."""
    if config.num_envs == 1:
        return {}
    g = math.gcd(config.train_freq, config.num_envs)
    return {"train_freq": config.train_freq // g, "gradient_steps": config.num_envs // g}


def build_learner(config: TrainConfig, env: Any, *, tensorboard: bool = True) -> LondiDQN:
    schedule = {"train_freq": config.train_freq, **_replay_schedule(config)}
    return LondiDQN(
        env=env,
        call_cost=config.cost,
        cost_limit=config.cost_limit,
        lagrangian_multiplier_init=config.lagrangian_multiplier_init,
        lambda_lr=config.lambda_lr,
        lagrangian_upper_bound=config.lagrangian_upper_bound,
        learning_rate=config.learning_rate,
        buffer_size=config.buffer_size,
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
        gamma=config.gamma,
        n_steps=config.n_steps,
        **schedule,
        target_update_interval=config.target_update_interval,
        exploration_fraction=config.exploration_fraction,
        exploration_final_eps=config.exploration_final_eps,
        policy_kwargs={"net_arch": list(config.net_arch)},
        seed=rng_seed(config.seed),  # SB3 seeds numpy's global generator: 32 bits; the env: see train_switch
        device="cpu",
    )


def train_switch(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    quick: Any = None,
    deepthink: Any = None,
    progress: bool = True,
) -> LondiDQN:
    """Train (or resume) a switch into ``run_dir``; returns the trained learner.

    ``quick``/``deepthink`` may be given as loaded policies (else they are loaded from the
    config's names). Running the same command again after a crash resumes from the last
    checkpoint in ``run_dir``; a finished run (``model.zip`` present) is loaded, not retrained.
    """

    config.validate()
    if reads_oracle(config.features):
        logger.warning("features %r include 'oracle': the switch reads the expert's label (an oracle); "
                       "a controlled experiment, not a deployable switch", config.features)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / CONFIG_FILE
    if cfg_path.exists():
        saved = TrainConfig.from_dict(read_json(cfg_path))
        if saved != config:
            raise ConfigError(f"{run_dir} holds a run with another config; use a new --out folder")
    else:
        atomic_write_json(cfg_path, config.to_dict())
    if quick is None or deepthink is None:

        quick = quick or load_policy(config.quick)
        deepthink = deepthink or load_policy(config.deepthink)
    if config.num_envs == 1:
        env = build_switch_env(config.env, quick, deepthink, features=config.features, call_cost=config.cost,
                               budget=config.budget)
        train_env: Any = env
    else:
        env = SwitchVecEnv([build_switch_env(config.env, quick, deepthink, features=config.features,
                                             call_cost=config.cost, budget=config.budget, own_streams=True)
                            for _ in range(config.num_envs)])
        train_env = VecMonitor(env)  # the episode returns and lengths SB3 logs (its Monitor, for a lone env)
    saved = read_description(run_dir)
    if saved is not None or (run_dir / MODEL_FILE).is_file():
        check_policies(run_dir, saved, quick=quick, deepthink=deepthink)  # resuming with other policies is an error
    else:
        write_description(run_dir, describe_switch(config, env))
    if (run_dir / MODEL_FILE).is_file():
        logger.info("%s is already trained; loading it", run_dir)
        return LondiDQN.load(run_dir / MODEL_FILE, env=train_env)
    seed_everything(rng_seed(config.seed))
    ckpt = run_dir / CHECKPOINT_DIR
    model = load_checkpoint(ckpt, train_env)
    if model is None:
        model = build_learner(config, train_env)
    # SB3 seeded the env's first reset with the learner's seed; training starts on its own env
    # seed instead (the same for run seeds 0-9), never a held-out episode (see londi.core.seeds)
    if config.num_envs == 1:
        model.get_env().seed(training_env_seed(config.seed))
    else:
        model.get_env().seed(training_env_seeds(config))
    done = int(model.num_timesteps)
    log_formats = ["csv", "tensorboard"]
    model.set_logger(configure(str(run_dir / "logs"), log_formats))
    callbacks: list[BaseCallback] = []
    if progress:
        callbacks.append(TqdmCallback(config.steps, initial=done))
    selection = None
    if config.select_every and config.steps > config.select_every:
        # before the checkpoint, so that a checkpoint never precedes the evaluation of its step
        selection = BestSwitchCallback(
            run_dir=run_dir, env_id=config.env, features=config.features, budget=config.budget,
            weight=config.cost, quick=quick, deepthink=deepthink, every=config.select_every,
            seeds=training_seeds(config.seed, config.select_episodes, SELECTION_PURPOSE), progress=progress)
        callbacks.append(selection)
    if config.checkpoint_every:
        callbacks.append(ResumableCheckpoint(ckpt, config.checkpoint_every))
    remaining = config.steps - done
    if remaining > 0:
        model.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=done == 0, log_interval=10)
    elif selection is not None:  # resumed after the last step: the last weights still need judging
        selection.init_callback(model)
        selection.on_training_end()
    if env.step_limits_seen:  # known once the env has played: the limit the step feature saw
        write_description(run_dir, describe_switch(config, env))
    last = LAST_MODEL_FILE if selection is not None else MODEL_FILE
    tmp = run_dir / f".{last}.tmp"
    model.save(tmp)
    os.replace(tmp, run_dir / last)
    if selection is None:
        return model
    finish_selection(run_dir)
    return LondiDQN.load(run_dir / MODEL_FILE, env=train_env)


def load_switch(run_dir: str | Path, *, quick: Any = None, deepthink: Any = None,
                allow_policy_mismatch: bool = False) -> tuple[LondiDQN, TrainConfig]:
    """Load a trained switch and its config from a run folder, with clear errors.

    Given ``quick`` / ``deepthink``, checks them against the policies the switch was trained
    with (its ``switch.json``, see :mod:`londi.switch.card`): a mismatch raises
    :class:`~londi.core.errors.ConfigError` unless ``allow_policy_mismatch``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LondiError(f"switch run folder {str(run_dir)!r} does not exist; train one with `londi train --out DIR`")
    if not (run_dir / MODEL_FILE).is_file():
        raise LondiError(f"{run_dir} has no {MODEL_FILE}: training did not finish (rerun the same `londi train` "
                         "command to resume)")
    config = TrainConfig.from_dict(read_json(run_dir / CONFIG_FILE))
    try:
        model = LondiDQN.load(run_dir / MODEL_FILE, device="cpu")
    except Exception as exc:
        raise LondiError(f"{run_dir / MODEL_FILE} is corrupt: {exc}") from None
    description = read_description(run_dir)
    check_observation_dim(run_dir, description, model.observation_space["features"].shape[0])
    if quick is not None or deepthink is not None:
        check_policies(run_dir, description, quick=quick, deepthink=deepthink,
                       allow_policy_mismatch=allow_policy_mismatch)
    return model, config


#: Config fields that may differ between the members of an ensemble.
_MEMBER_FIELDS = ("seed", "checkpoint_every", "select_every", "select_episodes", "num_envs")


def load_switches(run_dirs: str | Path | Sequence[str | Path], *, call_cost: float | None = None,
                  quick: Any = None, deepthink: Any = None,
                  allow_policy_mismatch: bool = False) -> tuple[LondiDQN | SwitchEnsemble, TrainConfig]:
    """Load one trained switch, or several as a :class:`~londi.learn.ensemble.SwitchEnsemble`.

    Args:
        run_dirs: a run folder, several as ``"RUN1,RUN2"``, or a sequence of folders. Members
            must have been trained with the same config except ``seed`` (a clear error says
            which field differs).
        call_cost: act at this per-call cost ``c`` instead of the trained one (the reward and
            cost values are learned apart, so ``c`` can change without retraining).
        quick, deepthink, allow_policy_mismatch: see :func:`load_switch`.

    Returns:
        The switch (a :class:`LondiDQN` for one folder, else the ensemble) and the first
        member's config.
    """
    if isinstance(run_dirs, (str, Path)):
        dirs = [d.strip() for d in str(run_dirs).split(",") if d.strip()]
    else:
        dirs = [str(d) for d in run_dirs]
    if not dirs:
        raise LondiError("no switch run folder given")
    if call_cost is not None and not (math.isfinite(call_cost) and call_cost >= 0):
        raise ConfigError(f"call_cost must be a finite number >= 0, got {call_cost!r}")
    loaded = [load_switch(d, quick=quick, deepthink=deepthink, allow_policy_mismatch=allow_policy_mismatch)
              for d in dirs]
    config = loaded[0][1]
    for d, (_, other) in zip(dirs[1:], loaded[1:]):
        for f in fields(TrainConfig):
            if f.name not in _MEMBER_FIELDS and getattr(other, f.name) != getattr(config, f.name):
                raise ConfigError(f"ensemble members differ in {f.name!r}: {getattr(config, f.name)!r} in "
                                  f"{dirs[0]}, {getattr(other, f.name)!r} in {d}")
    switch: LondiDQN | SwitchEnsemble = loaded[0][0] if len(loaded) == 1 else SwitchEnsemble([m for m, _ in loaded])
    if call_cost is not None:
        switch.set_call_cost(call_cost)
    return switch, config


__all__ = ["TrainConfig", "default_run_dir", "load_switch", "load_switches", "train_switch", "training_env_seeds"]
