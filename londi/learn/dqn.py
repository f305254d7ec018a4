"""The switch learner: a stable-baselines3 DQN with separate reward and cost values.

``LondiDQN`` keeps two value estimates per switch action, ``Q_r(s, a)`` (task reward) and
``Q_c(s, a)`` (expected discounted DEEPTHINK calls to come), in two networks that share no
layer (:class:`RewardCostQNetwork`). It acts greedily on

    Q_r(s, a) - (c + lambda) * Q_c(s, a)

so changing the per-call cost ``c`` (or the multiplier ``lambda``) re-weights what was learned
instead of throwing it away. The three LONDI variants are the same learner:

* LONDI: ``call_cost=c``, no limit (lambda stays 0);
* LONDI-B: a hard budget on the :class:`~londi.switch.env.SwitchEnv`; the action mask in the
  observation is honoured in the greedy choice, in epsilon-exploration (and the warm-up before
  ``learning_starts``) and in the bootstrap target's max;
* Lagrangian: ``cost_limit=L`` on the expected DEEPTHINK calls **per episode**; lambda >= 0 is
  learned by dual ascent after every finished episode,
  ``lambda <- clip(lambda + lambda_lr * (mean calls per episode - L), 0, lagrangian_upper_bound)``,
  over the last ``lagrangian_window`` episodes, and logged as ``train/lambda``.

The replay buffer stores the env's raw reward (``info["env_reward"]``) and the call's cost
(``info["deepthink_cost"]``), not the penalised switch reward, so both targets are exact.
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import DictReplayBuffer
from stable_baselines3.common.type_aliases import TensorDict
from stable_baselines3.dqn.policies import MultiInputPolicy, QNetwork
from torch import nn

from londi.core.errors import ConfigError

logger = logging.getLogger(__name__)

MASK_KEY = "action_mask"
#: The score of a masked action: below any real ``Q_r - w * Q_c``.
MASKED_SCORE = -1e9


def masked_score(q_r: Any, q_c: Any, weight: Any, mask: Any = None) -> Any:
    """``Q_r - w * Q_c``, with the actions that ``mask`` rules out (mask <= 0.5) at
    :data:`MASKED_SCORE`: the one greedy rule of the learner's torch path, its numpy copy and
    ensembles. Takes torch tensors or numpy arrays (``mask`` of the same shape, or ``None``)."""
    score = q_r - weight * q_c
    if mask is None:
        return score
    if isinstance(score, th.Tensor):
        return th.where(mask > 0.5, score, th.full_like(score, MASKED_SCORE))
    return np.where(np.asarray(mask, dtype=np.float32).reshape(np.shape(score)) > 0.5, score, MASKED_SCORE)


class CostReplayBufferSamples(NamedTuple):
    observations: TensorDict
    actions: th.Tensor
    next_observations: TensorDict
    dones: th.Tensor
    rewards: th.Tensor
    costs: th.Tensor
    reward_discounts: th.Tensor
    cost_discounts: th.Tensor


class CostReplayBuffer(DictReplayBuffer):
    """A dict replay buffer that also stores each transition's cost and the raw env reward, and
    returns n-step targets for both.

    Reads ``info["env_reward"]`` and ``info["deepthink_cost"]`` (written by ``SwitchEnv``); for
    an env that gives neither, the reward passed in is kept and the cost is 0.

    With ``n_steps > 1`` a sample starting at step ``t`` carries the discounted sums of the
    rewards and costs of steps ``t .. t+k-1``, where ``k <= n_steps`` stops at the episode's end
    (termination or truncation) or at the newest transition, the observation after step
    ``t+k-1``, and the discounts ``gamma**k`` and ``cost_gamma**k`` for the bootstrap. The
    switch's reward is sparse (a BabyAI-Text success pays only at the goal, ~25 steps after the
    calls that earned it): one-step targets pass it back one step per target-network update,
    n-step targets ``n`` steps at a time. The sums are computed at sampling time (as SB3's
    ``NStepReplayBuffer`` does), so storage is that of a one-step buffer and ``n_steps`` can
    change without refilling it.

    Args:
        n_steps: how many steps each target sums before it bootstraps (1: plain DQN targets).
        gamma: the reward discount.
        cost_gamma: the cost discount (default: ``gamma``).
    """

    def __init__(self, *args: Any, n_steps: int = 1, gamma: float = 0.99, cost_gamma: float | None = None,
                 **kwargs: Any) -> None:
        if int(n_steps) < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        super().__init__(*args, **kwargs)
        if self.optimize_memory_usage:
            raise ValueError("CostReplayBuffer does not support optimize_memory_usage=True")
        self.n_steps = int(n_steps)
        self.gamma = float(gamma)
        self.cost_gamma = self.gamma if cost_gamma is None else float(cost_gamma)
        self.costs = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)

    def add(self, obs, next_obs, action, reward, done, infos) -> None:  # type: ignore[override]
        pos = self.pos
        raw = np.array([info.get("env_reward", r) for info, r in zip(infos, np.asarray(reward).ravel())], np.float32)
        self.costs[pos] = np.array([info.get("deepthink_cost", 0.0) for info in infos], np.float32)
        super().add(obs, next_obs, action, raw, done, infos)

    def _get_samples(self, batch_inds: np.ndarray, env=None) -> CostReplayBufferSamples:  # type: ignore[override]
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        n = self.n_steps
        # Offsets 0..n-1 from each sampled index; a run stops at the first step that ended its
        # episode (done or timeout) or at the newest transition, which is treated as a cut so
        # that no target reads past what has been written (or into the oldest, overwritten data).
        steps = np.arange(n).reshape(1, -1)
        indices = (batch_inds[:, None] + steps) % self.buffer_size
        ends = np.logical_or(self.dones[indices, env_indices[:, None]], self.timeouts[indices, env_indices[:, None]])
        newest = (self.pos - 1) % self.buffer_size
        ends = np.logical_or(ends, indices == newest)
        stop = np.where(ends.any(axis=1), ends.argmax(axis=1), n - 1)
        within = steps <= stop[:, None]
        length = within.sum(axis=1, keepdims=True).astype(np.float32)
        rewards_seq = self.rewards[indices, env_indices[:, None]]
        costs_seq = self.costs[indices, env_indices[:, None]]
        reward_sum = (rewards_seq * self.gamma ** steps * within).sum(axis=1, keepdims=True)
        cost_sum = (costs_seq * self.cost_gamma ** steps * within).sum(axis=1, keepdims=True)
        last = (batch_inds + stop) % self.buffer_size
        obs = {k: self.to_torch(v[batch_inds, env_indices, :]) for k, v in self.observations.items()}
        next_obs = {k: self.to_torch(v[last, env_indices, :]) for k, v in self.next_observations.items()}
        # A timeout is not a terminal state: bootstrap from it (SB3's handle_timeout_termination).
        # The newest transition, when it did not end its episode, bootstraps as well.
        dones = self.dones[last, env_indices] * (1 - self.timeouts[last, env_indices])
        return CostReplayBufferSamples(
            observations=obs,
            actions=self.to_torch(self.actions[batch_inds, env_indices]),
            next_observations=next_obs,
            dones=self.to_torch(dones).reshape(-1, 1),
            rewards=self.to_torch(reward_sum.astype(np.float32)),
            costs=self.to_torch(cost_sum.astype(np.float32)),
            reward_discounts=self.to_torch((self.gamma ** length).astype(np.float32)),
            cost_discounts=self.to_torch((self.cost_gamma ** length).astype(np.float32)),
        )


class RewardCostQNetwork(QNetwork):
    """Two Q-networks over the same features, ``n_actions`` outputs each: ``Q_r`` (``q_net``)
    and ``Q_c`` (``cost_net``).

    They share no hidden layer: the cost-to-go counts calls (up to ~20 on a BabyAI-Text
    episode) while the reward values and the action gaps that matter lie within ~0.05 of each
    other, so a shared trunk is shaped by the cost's errors and the reward gap drowns in them.
    ``forward`` returns the combined score ``Q_r - w * Q_c`` with masked actions pushed to a
    large negative value, so SB3's greedy ``_predict`` (argmax) honours the mask and the cost.
    ``w = c + lambda`` lives in a buffer, so it is saved and loaded with the weights.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        n = int(self.action_space.n)

        def mlp() -> nn.Sequential:
            layers: list[nn.Module] = []
            last = self.features_dim
            for width in self.net_arch:
                layers += [nn.Linear(last, width), self.activation_fn()]
                last = width
            layers.append(nn.Linear(last, n))
            return nn.Sequential(*layers)

        self.q_net = mlp()
        self.cost_net = mlp()
        self.register_buffer("cost_weight", th.zeros(()))

    def reward_cost_values(self, obs: TensorDict) -> tuple[th.Tensor, th.Tensor]:
        features = self.extract_features(obs, self.features_extractor)
        return self.q_net(features), self.cost_net(features)

    def combined(self, q_r: th.Tensor, q_c: th.Tensor, obs: TensorDict) -> th.Tensor:
        return masked_score(q_r, q_c, self.cost_weight, obs.get(MASK_KEY) if isinstance(obs, dict) else None)

    def forward(self, obs: TensorDict) -> th.Tensor:
        q_r, q_c = self.reward_cost_values(obs)
        return self.combined(q_r, q_c, obs)


class SwitchPolicy(MultiInputPolicy):
    """SB3's multi-input DQN policy with a :class:`RewardCostQNetwork`."""

    def make_q_net(self) -> RewardCostQNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return RewardCostQNetwork(**net_args).to(self.device)


class _NumpyQNetwork:
    """A numpy copy of a :class:`RewardCostQNetwork` for one-observation greedy choices.

    Built only for the shapes the switch uses (flatten extractors over Box spaces, linear layers
    with ReLU or Tanh); :meth:`build` returns ``None`` for anything else, and the caller falls
    back to torch.
    """

    _ACTIVATIONS = {nn.ReLU: lambda x: np.maximum(x, 0.0), nn.Tanh: np.tanh}

    def __init__(self, keys: list[str], heads: list[list[Any]], cost_weight: float) -> None:
        self.keys, self.heads, self.cost_weight = keys, heads, cost_weight

    @classmethod
    def build(cls, net: RewardCostQNetwork, observation_space: spaces.Space) -> _NumpyQNetwork | None:
        extractor = net.features_extractor
        sub = getattr(extractor, "extractors", None)
        if not isinstance(observation_space, spaces.Dict) or sub is None:
            return None
        if not all(isinstance(e, nn.Flatten) and isinstance(observation_space[k], spaces.Box) for k, e in sub.items()):
            return None
        heads: list[list[Any]] = []
        for head in (net.q_net, net.cost_net):
            layers: list[Any] = []
            for module in head:
                if isinstance(module, nn.Linear):
                    layers.append((module.weight.detach().cpu().numpy().T.copy(),
                                   module.bias.detach().cpu().numpy().copy()))
                elif type(module) in cls._ACTIVATIONS:
                    layers.append(cls._ACTIVATIONS[type(module)])
                else:
                    return None
            heads.append(layers)
        return cls(list(sub.keys()), heads, float(net.cost_weight))

    def _heads(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``Q_r`` and ``Q_c`` of the flat input(s) ``x`` (one row, or a batch of rows)."""
        out = []
        for layers in self.heads:
            h = x
            for layer in layers:
                h = h @ layer[0] + layer[1] if isinstance(layer, tuple) else layer(h)
            out.append(h)
        return out[0], out[1]

    def _flat(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(observation[k], dtype=np.float32).reshape(-1) for k in self.keys])

    def values(self, observation: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``Q_r(s, .)`` and ``Q_c(s, .)`` of one observation."""
        return self._heads(self._flat(observation))

    def greedy(self, observation: dict[str, np.ndarray]) -> int:
        q_r, q_c = self.values(observation)
        return int(np.argmax(masked_score(q_r, q_c, np.float32(self.cost_weight), observation.get(MASK_KEY))))

    def greedy_batch(self, observations: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
        """:meth:`greedy` for several observations, in one matrix product per layer."""
        q_r, q_c = self._heads(np.stack([self._flat(o) for o in observations]))
        masks = None
        if MASK_KEY in observations[0]:
            masks = np.stack([np.asarray(o[MASK_KEY], dtype=np.float32).reshape(-1) for o in observations])
        return np.argmax(masked_score(q_r, q_c, np.float32(self.cost_weight), masks), axis=1)


def _mask_of(observation: Any, n_actions: int) -> np.ndarray:
    """The action mask(s) carried in an observation, as a ``(batch, n_actions)`` bool array."""
    if isinstance(observation, dict) and MASK_KEY in observation:
        mask = np.asarray(observation[MASK_KEY], dtype=np.float32)
        return (mask.reshape(-1, n_actions) > 0.5)
    return np.ones((1, n_actions), dtype=bool)


class LondiDQN(DQN):
    """DQN for the LONDI switch, with reward and cost values and an optional Lagrangian limit.

    Args:
        policy: the policy class or name (default :class:`SwitchPolicy`).
        env: a :class:`~londi.switch.env.SwitchEnv` (or a VecEnv of them).
        call_cost: ``c`` >= 0, the price of one DEEPTHINK call in reward units.
        cost_limit: ``L`` >= 0, a limit on the expected DEEPTHINK calls per episode, kept by a
            Lagrange multiplier; ``None`` for no limit.
        lagrangian_multiplier_init: lambda's initial value (>= 0).
        lambda_lr: the dual-ascent step size.
        lagrangian_upper_bound: an optional cap on lambda.
        lagrangian_window: how many recent episodes the dual update averages over.
        cost_gamma: discount for the cost value (default: ``gamma``).
        n_steps: n-step targets for both values (see :class:`CostReplayBuffer`); 1 is plain DQN.
        **kwargs: any :class:`stable_baselines3.DQN` argument (``learning_rate``, ``buffer_size``,
            ``learning_starts``, ``batch_size``, ``gamma``, ``train_freq``,
            ``target_update_interval``, ``exploration_*``, ``policy_kwargs``, ``seed``, ...).
    """

    def __init__(
        self,
        policy: str | type[SwitchPolicy] = SwitchPolicy,
        env: Any = None,
        *,
        call_cost: float = 0.0,
        cost_limit: float | None = None,
        lagrangian_multiplier_init: float = 0.0,
        lambda_lr: float = 0.01,
        lagrangian_upper_bound: float | None = None,
        lagrangian_window: int = 20,
        cost_gamma: float | None = None,
        n_steps: int = 1,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ) -> None:
        if call_cost < 0 or not np.isfinite(call_cost):
            raise ConfigError(f"call_cost must be a finite number >= 0, got {call_cost}")
        if cost_limit is not None and (cost_limit < 0 or not np.isfinite(cost_limit)):
            raise ConfigError(f"cost_limit must be a finite number >= 0 or None, got {cost_limit}")
        if lagrangian_multiplier_init < 0:
            raise ConfigError(f"lagrangian_multiplier_init must be >= 0, got {lagrangian_multiplier_init}")
        if lambda_lr <= 0:
            raise ConfigError(f"lambda_lr must be > 0, got {lambda_lr}")
        if lagrangian_upper_bound is not None and lagrangian_upper_bound < lagrangian_multiplier_init:
            raise ConfigError("lagrangian_upper_bound must be >= lagrangian_multiplier_init")
        if lagrangian_window < 1:
            raise ConfigError(f"lagrangian_window must be >= 1, got {lagrangian_window}")
        if isinstance(n_steps, bool) or int(n_steps) != n_steps or n_steps < 1:
            raise ConfigError(f"n_steps must be an integer >= 1, got {n_steps!r}")
        if policy in ("MultiInputPolicy", "MlpPolicy"):
            policy = SwitchPolicy
        kwargs.setdefault("replay_buffer_class", CostReplayBuffer)
        if issubclass(kwargs["replay_buffer_class"], CostReplayBuffer):
            # SB3 sets n-step returns up only for its own buffers; this one takes them directly.
            kwargs["replay_buffer_kwargs"] = {
                **(kwargs.get("replay_buffer_kwargs") or {}),
                "n_steps": int(n_steps), "gamma": kwargs.get("gamma", 0.99), "cost_gamma": cost_gamma,
            }
        elif n_steps > 1:
            raise ConfigError("n_steps > 1 needs a CostReplayBuffer (the default replay_buffer_class)")
        self.n_step_targets = int(n_steps)
        self.call_cost = float(call_cost)
        self.cost_limit = None if cost_limit is None else float(cost_limit)
        self.lagrangian_multiplier = float(lagrangian_multiplier_init)
        self.lambda_lr = float(lambda_lr)
        self.lagrangian_upper_bound = lagrangian_upper_bound
        self.lagrangian_window = int(lagrangian_window)
        self.cost_gamma = cost_gamma
        self._episode_calls: deque[float] = deque(maxlen=self.lagrangian_window)
        self._greedy_cache: tuple[tuple[th.Tensor, ...], tuple[int, ...], _NumpyQNetwork | None] | None = None
        super().__init__(policy, env, _init_setup_model=_init_setup_model, **kwargs)

    # ------------------------------------------------------------------ setup
    @classmethod
    def load(cls, path: Any, env: Any = None, device: Any = "auto", custom_objects: dict[str, Any] | None = None,
             **kwargs: Any) -> LondiDQN:
        """SB3's ``load``, with LONDI's own classes given rather than unpickled: a switch saved
        before the package was reorganised (``londi.learner``) names classes that moved, and
        these are the only LONDI objects in a saved switch."""
        known = {"policy_class": SwitchPolicy, "replay_buffer_class": CostReplayBuffer}
        return super().load(path, env=env, device=device, custom_objects={**known, **(custom_objects or {})},
                            **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if not isinstance(self.observation_space, spaces.Dict):
            raise ConfigError("LondiDQN needs a SwitchEnv-style Dict observation (features, action_mask)")
        self._episode_calls = deque(maxlen=self.lagrangian_window)
        self._sync_cost_weight()

    def _sync_cost_weight(self) -> None:
        w = th.tensor(self.call_cost + self.lagrangian_multiplier, dtype=th.float32)
        for net in (self.policy.q_net, self.policy.q_net_target):
            net.cost_weight.copy_(w)

    def set_call_cost(self, call_cost: float) -> None:
        """Act at another per-call cost without relearning."""
        if call_cost < 0 or not np.isfinite(call_cost):
            raise ConfigError(f"call_cost must be a finite number >= 0, got {call_cost}")
        self.call_cost = float(call_cost)
        self._sync_cost_weight()

    @property
    def cost_weight(self) -> float:
        """``c + lambda``, the weight on ``Q_c`` in the greedy choice."""
        return self.call_cost + self.lagrangian_multiplier

    # ------------------------------------------------------------------ acting
    def values(self, observation: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``Q_r(s, .)`` and ``Q_c(s, .)`` of one (unbatched) observation, each of shape ``(2,)``
        (from the numpy copy of :meth:`greedy_action` where there is one)."""
        numpy_net = self._numpy_copy()
        if numpy_net is not None:
            return numpy_net.values(observation)
        tensor, _ = self.policy.obs_to_tensor(observation)
        with th.no_grad():
            q_r, q_c = self.policy.q_net.reward_cost_values(tensor)
        return q_r[0].cpu().numpy(), q_c[0].cpu().numpy()

    def greedy_action(self, observation: dict[str, np.ndarray]) -> int:
        """The greedy (masked, cost-weighted) action for one unbatched observation.

        The same choice as ``predict(observation, deterministic=True)``. An evaluated switch
        decides at every step and that decision is metered as the switch's own cost, so this
        skips SB3's batching checks and, for the default network (flatten extractors, linear
        layers, ReLU/Tanh), runs on a numpy copy of the weights (0.07 against 0.38 ms a decision
        with SB3's ``predict`` on the 2-core container, one torch thread). The copy is rebuilt
        whenever a weight or ``c + lambda`` changed (torch's in-place version counters), so it
        can be called during training as well.
        """
        numpy_net = self._numpy_copy()
        if numpy_net is not None:
            return numpy_net.greedy(observation)
        obs = {k: th.as_tensor(np.asarray(v, dtype=np.float32), device=self.device).reshape(1, -1)
               for k, v in observation.items()}
        with th.inference_mode():
            return int(self.policy.q_net(obs).argmax(dim=1)[0])

    def greedy_actions(self, observations: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
        """:meth:`greedy_action` for several unbatched observations in one pass (the switch
        deciding for several episodes played side by side)."""
        numpy_net = self._numpy_copy()
        if numpy_net is not None:
            return numpy_net.greedy_batch(observations)
        obs = {k: th.as_tensor(np.stack([np.asarray(o[k], dtype=np.float32).reshape(-1) for o in observations]),
                               device=self.device) for k in observations[0]}
        with th.inference_mode():
            return self.policy.q_net(obs).argmax(dim=1).cpu().numpy()

    def _numpy_copy(self) -> _NumpyQNetwork | None:
        """The numpy copy of the online Q-networks, rebuilt when a weight or the cost weight changed."""
        net = self.policy.q_net
        tensors = (*net.parameters(), net.cost_weight)
        versions = tuple(t._version for t in tensors)
        cache = self._greedy_cache
        # the cache holds the tensors themselves, so a replaced network is never mistaken for its copy
        if (cache is None or cache[1] != versions or len(cache[0]) != len(tensors)
                or not all(a is b for a, b in zip(cache[0], tensors))):
            cache = self._greedy_cache = (tensors, versions, _NumpyQNetwork.build(net, self.observation_space))
        return cache[2]

    def _masked_random(self, mask: np.ndarray) -> np.ndarray:
        out = []
        for row in mask:
            allowed = np.flatnonzero(row)
            out.append(int(self.action_space.sample()) if len(allowed) == 0 else int(np.random.choice(allowed)))
        return np.array(out)

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        """Greedy on ``Q_r - (c + lambda) Q_c`` among allowed actions; epsilon-exploration (when not
        deterministic) picks uniformly among allowed actions only."""
        if not deterministic and np.random.rand() < self.exploration_rate:
            mask = _mask_of(observation, int(self.action_space.n))
            action = self._masked_random(mask)
            if not self.policy.is_vectorized_observation(observation):
                action = action[0]
            return action, state
        return self.policy.predict(observation, state, episode_start, deterministic)

    def _sample_action(self, learning_starts: int, action_noise=None, n_envs: int = 1):
        if self.num_timesteps < learning_starts:
            # SB3 samples the whole action space during warm-up; the mask must hold there too.
            action = self._masked_random(_mask_of(self._last_obs, int(self.action_space.n)))
            return action, action
        return super()._sample_action(learning_starts, action_noise, n_envs)

    # ------------------------------------------------------------------ learning
    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        gamma_c = self.gamma if self.cost_gamma is None else self.cost_gamma
        losses, r_losses, c_losses = [], [], []
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            with th.no_grad():
                next_r, next_c = self.q_net_target.reward_cost_values(data.next_observations)
                # Double-DQN-style: the online net picks the next action (masked, cost-weighted),
                # the target net evaluates it, for both heads.
                on_r, on_c = self.q_net.reward_cost_values(data.next_observations)
                next_a = self.q_net.combined(on_r, on_c, data.next_observations).argmax(dim=1, keepdim=True)
                disc_r, disc_c = self._discounts(data, gamma_c)
                target_r = data.rewards + (1 - data.dones) * disc_r * next_r.gather(1, next_a)
                target_c = data.costs + (1 - data.dones) * disc_c * next_c.gather(1, next_a)
            q_r, q_c = self.q_net.reward_cost_values(data.observations)
            a = data.actions.long()
            loss_r = F.smooth_l1_loss(q_r.gather(1, a), target_r)
            loss_c = F.smooth_l1_loss(q_c.gather(1, a), target_c)
            loss = loss_r + loss_c
            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
            losses.append(loss.item())
            r_losses.append(loss_r.item())
            c_losses.append(loss_c.item())
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", float(np.mean(losses)))
        self.logger.record("train/loss_reward", float(np.mean(r_losses)))
        self.logger.record("train/loss_cost", float(np.mean(c_losses)))
        self.logger.record("train/cost_weight", self.cost_weight)

    def _discounts(self, data: Any, gamma_c: float) -> tuple[Any, Any]:
        """The bootstrap discounts of a batch: ``gamma**k`` per sample from an n-step buffer,
        plain ``gamma`` from any other."""
        if isinstance(data, CostReplayBufferSamples):
            return data.reward_discounts, data.cost_discounts
        return self.gamma, gamma_c

    def _update_info_buffer(self, infos: list[dict[str, Any]], dones: np.ndarray | None = None) -> None:
        super()._update_info_buffer(infos, dones)
        if dones is None:
            return
        for info, done in zip(infos, dones):
            if not done:
                continue
            acc = info.get("accounting")
            if acc is None:
                continue
            calls = float(acc.calls["deepthink"])
            self._episode_calls.append(calls)
            self.logger.record_mean("rollout/deepthink_calls_per_episode", calls)
            steps = max(int(acc.steps), 1)
            self.logger.record_mean("rollout/deepthink_call_frac", calls / steps)
            self.logger.record_mean("rollout/success", float(info.get("success", False)))
            if self.cost_limit is not None:
                self._dual_update()

    def _dual_update(self) -> None:
        """One dual-ascent step on lambda from the recent mean calls per episode."""
        mean_calls = float(np.mean(self._episode_calls))
        lam = self.lagrangian_multiplier + self.lambda_lr * (mean_calls - self.cost_limit)
        lam = max(lam, 0.0)
        if self.lagrangian_upper_bound is not None:
            lam = min(lam, float(self.lagrangian_upper_bound))
        self.lagrangian_multiplier = lam
        self._sync_cost_weight()
        self.logger.record("train/lambda", lam)
        self.logger.record("train/constraint_violation", mean_calls - self.cost_limit)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_episode_calls", "_greedy_cache"]
