"""The text-policy interface: anything that picks an admissible action from a text observation."""
from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from londi.core.errors import TOLERATED_POLICY_ERRORS
from londi.core.meter import CallRecord, CallTiming, call_clock
from londi.envs.base import TextObservation


@dataclass
class Decision:
    """A text policy's answer for one step.

    Attributes:
        action: the chosen action; always one of the observation's admissible actions.
        probs: the normalised distribution over ``admissible_actions`` (same order), where the
            policy has one (LMs that score actions); ``None`` otherwise.
        record: the call's accounting.
        hidden: a summary vector of the policy's hidden state (LM policies), used by the
            switch's QUICK-derived features; ``None`` where the policy has none.
    """

    action: str
    record: CallRecord
    probs: np.ndarray | None = None
    hidden: np.ndarray | None = None

    @property
    def entropy(self) -> float:
        """Entropy (nats) of ``probs``; 0 when the policy gives no distribution."""
        if self.probs is None or len(self.probs) == 0:
            return 0.0
        p = np.clip(self.probs, 1e-12, 1.0)
        return float(-(p * np.log(p)).sum())

    @property
    def margin(self) -> float:
        """Top-1 minus top-2 probability; 1 when the policy gives no distribution."""
        if self.probs is None or len(self.probs) < 2:
            return 1.0
        top = np.sort(self.probs)[-2:]
        return float(top[1] - top[0])


@dataclass
class BatchAnswer:
    """One item of a batched call (:meth:`TextPolicy.act_batch`).

    Attributes:
        decision: the policy's answer, or ``None`` when the call failed in an expected way.
        error: that failure (one of :data:`~londi.core.errors.TOLERATED_POLICY_ERRORS`), else ``None``.
        timing: what the call cost as the caller's clock saw it; for an item of a batch run in
            one forward, its share of the batch (by input tokens).
    """

    decision: Decision | None
    error: BaseException | None
    timing: CallTiming


def timed_act(policy: Any, obs: TextObservation) -> BatchAnswer:
    """``policy.act(obs)`` timed by the caller's clock, an expected failure kept as the answer's error."""
    decision, error = None, None
    with call_clock() as timing:
        try:
            decision = policy.act(obs)
        except TOLERATED_POLICY_ERRORS as exc:
            error = exc
    return BatchAnswer(decision, error, timing)


def act_batch(policy: Any, observations: Sequence[TextObservation],
              generators: Sequence[np.random.Generator | None] | None = None) -> list[BatchAnswer]:
    """``policy.act_batch(...)`` where it has one (every :class:`TextPolicy`), else one timed
    :meth:`~TextPolicy.act` per observation (user policies need not subclass TextPolicy)."""
    method = getattr(policy, "act_batch", None)
    if callable(method):
        return list(method(observations, generators))
    return [timed_act(policy, obs) for obs in observations]


def split_timing(total: CallTiming, weights: Sequence[float]) -> list[CallTiming]:
    """``total`` shared out in proportion to ``weights`` (equal shares when they sum to 0)."""
    w = np.asarray(weights, dtype=np.float64)
    share = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / max(len(w), 1))
    return [CallTiming(wall_seconds=total.wall_seconds * f, thread_cpu_seconds=total.thread_cpu_seconds * f,
                       process_cpu_seconds=total.process_cpu_seconds * f) for f in share]


def seed_policy(policy: object, seed: int | None) -> None:
    """Call ``policy.set_seed(seed)`` if it has one (user policies need not subclass TextPolicy)."""
    set_seed = getattr(policy, "set_seed", None)
    if callable(set_seed):
        set_seed(seed)


def policy_endpoint(policy: object) -> str:
    """``policy.endpoint`` where it has one (user policies need not subclass TextPolicy)."""
    endpoint = getattr(policy, "endpoint", None)
    return str(endpoint) if endpoint else str(getattr(policy, "name", type(policy).__name__))


def policy_fingerprint(policy: object) -> dict[str, Any]:
    """``policy.fingerprint()`` where it has one, else its class and name."""
    fingerprint = getattr(policy, "fingerprint", None)
    if callable(fingerprint):
        return dict(fingerprint())
    return {"kind": f"{type(policy).__module__}.{type(policy).__qualname__}",
            "name": str(getattr(policy, "name", type(policy).__name__))}


class TextPolicy(abc.ABC):
    """A policy over text actions. Stateless between calls except through :meth:`reset`.

    Subclasses set ``name`` and implement :meth:`act`; ``is_oracle`` is ``True`` for experts
    that read privileged state (they are for labels and bounds, never presented as LMs).
    """

    name: str = "policy"
    is_oracle: bool = False
    #: ``True`` where :meth:`act_batch` draws each item's sampling from the generator passed for
    #: it (so that episodes played side by side keep their own random streams); ``False`` where
    #: the policy's choices are deterministic or drawn from its own stream (or a server's seed).
    supports_streams: bool = False

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Called at the start of each episode."""

    def set_seed(self, seed: int | None) -> None:  # noqa: B027 - optional hook
        """Reseed any randomness in the policy's choices (sampling policies override this)."""

    @property
    def endpoint(self) -> str:
        """Where the model answers from, for error messages: its name here; a served model's URL."""
        return self.name

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this policy's behaviour, for a saved switch's description (see
        :func:`policy_fingerprint`): by default its class and name. Checkpoint-backed policies
        add a digest of their weights, served ones their endpoint and model."""
        return {"kind": f"{type(self).__module__}.{type(self).__qualname__}", "name": self.name}

    @abc.abstractmethod
    def act(self, obs: TextObservation) -> Decision:
        """Choose one of ``obs.admissible_actions``."""

    def act_batch(self, observations: Sequence[TextObservation],
                  generators: Sequence[np.random.Generator | None] | None = None) -> list[BatchAnswer]:
        """Answer several observations at once (one per episode played side by side).

        Each item is timed and an expected failure (:data:`~londi.core.errors.TOLERATED_POLICY_ERRORS`)
        is returned as that item's error; anything else raises. ``generators`` (one per item,
        where :attr:`supports_streams`) are the items' sampling streams. This default calls
        :meth:`act` once per observation; batching backends override it (one forward for all
        the prompts, or concurrent requests).
        """
        return [timed_act(self, obs) for obs in observations]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (servers, processes)."""
