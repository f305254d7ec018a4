"""``ScoringPolicy``: a policy that scores every admissible action and draws from
``softmax(scores / T)``, one call or a batch of them (the base of :class:`~londi.agents.hf.HFPolicy`
and :class:`~londi.agents.lm_ensemble.LMEnsemblePolicy`)."""
from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np

from londi.agents.base import BatchAnswer, Decision, TextPolicy, split_timing, timed_act
from londi.core.meter import CallRecord, call_clock, device_timer
from londi.envs.base import TextObservation


class ScoringPolicy(TextPolicy):
    """A policy that scores every admissible action and chooses from ``softmax(scores / T)``.

    Subclasses set ``name``, ``device``, ``temperature``, ``sample`` and ``_rng`` and implement
    :meth:`score` (log-likelihoods, a hidden-state summary and token counts) and
    :meth:`_flops`; :meth:`act` meters the call and chooses greedily or by seeded sampling.
    """

    name: str
    device: str
    temperature: float
    sample: bool
    _rng: np.random.Generator

    @abc.abstractmethod
    def score(self, obs: TextObservation) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """``(scores, hidden, counts)`` for ``obs.admissible_actions`` (no metering)."""

    @abc.abstractmethod
    def _flops(self, counts: dict[str, Any]) -> float:
        """The call's FLOPs estimate from :meth:`score`'s token counts."""

    def set_seed(self, seed: int | None) -> None:
        """Reseed the generator that samples actions (``sample=True``)."""
        self._rng = np.random.default_rng(seed)

    supports_streams = True

    def _act_on_stream(self, obs: TextObservation, generator: np.random.Generator | None) -> BatchAnswer:
        """:meth:`act`, timed, drawing from ``generator`` (``None``: this policy's own stream)."""
        if generator is None:
            return timed_act(self, obs)
        own, self._rng = self._rng, generator
        try:
            return timed_act(self, obs)
        finally:
            self._rng = own

    def score_batch(self, observations: Sequence[TextObservation]) -> list[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
        """:meth:`score` for each observation; models that can score several prompts in one
        forward override it."""
        return [self.score(obs) for obs in observations]

    def _choose(self, scores: np.ndarray, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        z = scores / self.temperature
        probs = np.exp(z - z.max())
        probs /= probs.sum()
        choice = int(rng.choice(len(probs), p=probs)) if self.sample else int(np.argmax(scores))
        return choice, probs

    def _record(self, counts: dict[str, Any], device_seconds: float, wall_seconds: float,
                peak_memory_bytes: int | None) -> CallRecord:
        return CallRecord(
            model=self.name,
            device=self.device,
            device_seconds=device_seconds,
            wall_seconds=wall_seconds,
            input_tokens=counts["input_tokens"],
            output_tokens=counts["output_tokens"],
            flops=self._flops(counts),
            peak_memory_bytes=peak_memory_bytes,
            device_measured=self.device.startswith("cuda"),  # CUDA events; on the CPU the switch's clock rules
        )

    def act(self, obs: TextObservation) -> Decision:
        with device_timer(self.device) as timing:
            scores, hidden, counts = self.score(obs)
            choice, probs = self._choose(scores, self._rng)
        record = self._record(counts, timing.device_seconds, timing.wall_seconds, timing.peak_memory_bytes)
        return Decision(action=obs.admissible_actions[choice], record=record, probs=probs, hidden=hidden)

    def act_batch(self, observations: Sequence[TextObservation],
                  generators: Sequence[np.random.Generator | None] | None = None) -> list[BatchAnswer]:
        """All the observations scored together (:meth:`score_batch`), each action drawn from
        its own generator (``None``: this policy's). The batch's time is shared out by input
        tokens."""
        if generators is not None and len(generators) != len(observations):
            raise ValueError(f"{len(generators)} generators for {len(observations)} observations")
        if not observations:
            return []
        gens = list(generators) if generators is not None else [None] * len(observations)
        if type(self).act is not ScoringPolicy.act:
            # a subclass that changes how one call acts (and not how a batch does): its own act,
            # once per observation, each drawing from its item's stream
            return [self._act_on_stream(obs, gen) for obs, gen in zip(observations, gens)]
        return self._act_batch_scored(observations, gens)

    def _act_batch_scored(self, observations: Sequence[TextObservation],
                          gens: Sequence[np.random.Generator | None]) -> list[BatchAnswer]:
        """The batch scored in :meth:`score_batch`, each action drawn from its generator."""
        with call_clock() as clock, device_timer(self.device) as timing:
            scored = self.score_batch(observations)
            choices = [self._choose(scores, gen if gen is not None else self._rng) for (scores, _, _), gen
                       in zip(scored, gens)]
        weights = np.array([counts["input_tokens"] for _, _, counts in scored], dtype=np.float64)
        shares = split_timing(clock, weights)
        fractions = weights / weights.sum() if weights.sum() > 0 else np.full(len(weights), 1.0 / len(weights))
        out = []
        for obs, (_, hidden, counts), (choice, probs), share, fraction in zip(observations, scored, choices, shares,
                                                                              fractions):
            record = self._record(counts, timing.device_seconds * float(fraction), share.wall_seconds,
                                  timing.peak_memory_bytes)
            out.append(BatchAnswer(Decision(action=obs.admissible_actions[choice], record=record, probs=probs,
                                            hidden=hidden), None, share))
        return out


__all__ = ["ScoringPolicy"]
