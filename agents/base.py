"""The text-policy interface: anything that picks an admissible action from a text observation."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np

from londi.core.meter import CallRecord
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

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (servers, processes)."""
