"""Short candidate lists for LM policies on games with long admissible-action lists.

ScienceWorld lists every valid action-object combination: 100 to 1,300+ actions per step in the
rooms of the ``find-*`` tasks (``dunk X into Y``, ``pour X in Y``, ``move X to Y`` for every pair
of objects). Scoring each of them by its log-likelihood costs one continuation forward per action
(see :class:`~londi.agents.lm.HFPolicy`), so a policy that scores them all spends most of each
call on actions it would never choose. :class:`CandidateFilter` cuts the list to a short
candidate list first, with two cheap rules that a training script learns from its data:

1. **verbs**: keep only the actions whose first word is one of the verbs the training labels
   used (``go``, ``focus``, ``move``, ...); a model trained on those labels gives every other
   verb a tiny probability anyway;
2. **overlap**: if more than ``max_candidates`` actions remain, keep the ``max_candidates`` whose
   words overlap most with the goal, the current observation, the inventory and the last
   ``context_history`` observations and actions (ties keep the game's order).

:class:`CandidatePolicy` is an :class:`~londi.agents.lm.HFPolicy` that scores only the
candidates. A checkpoint turns it on by saving the filter in its ``londi_policy.json`` under the
key ``"candidates"`` (see :meth:`CandidateFilter.to_dict`); :func:`londi.agents.lm.load_policy`
then returns a :class:`CandidatePolicy`. ``Decision.probs`` still covers every admissible action
(0 for those filtered out), and the filter's own time is added to the call's device-seconds.
"""
from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from londi.agents.base import BatchAnswer, Decision
from londi.agents.checkpoints import _read_policy_config
from londi.agents.hf import HFPolicy
from londi.envs.base import TextObservation

#: Key of the filter's settings in a checkpoint's ``londi_policy.json``.
POLICY_CONFIG_KEY = "candidates"
_WORD = re.compile(r"[a-z0-9]+")
# Words too common to tell two actions apart.
_STOP = frozenset(["a", "an", "the", "to", "in", "on", "into", "of", "from", "with", "and", "at", "is", "it", "you", "your", "containing"])


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def action_verb(action: str) -> str:
    """The first word of an action, lower-cased (``"focus on the cup"`` -> ``"focus"``)."""
    parts = action.strip().lower().split(maxsplit=1)
    return parts[0] if parts else ""


@dataclass(frozen=True)
class CandidateFilter:
    """Cut a long admissible-action list down to a short candidate list.

    Args:
        verbs: keep only actions whose first word is one of these (empty: keep every verb).
        max_candidates: keep at most this many actions, ranked by word overlap with the context.
        context_history: how many past ``(observation, action)`` pairs count as context.
    """

    verbs: tuple[str, ...] = ()
    max_candidates: int = 64
    context_history: int = 3

    def __post_init__(self) -> None:
        if self.max_candidates <= 0:
            raise ValueError(f"max_candidates must be positive, got {self.max_candidates}")
        if self.context_history < 0:
            raise ValueError(f"context_history must be >= 0, got {self.context_history}")
        object.__setattr__(self, "verbs", tuple(sorted({v.strip().lower() for v in self.verbs if v.strip()})))

    @classmethod
    def fit(cls, actions: Iterable[str], *, max_candidates: int = 64, context_history: int = 3) -> CandidateFilter:
        """A filter whose verbs are those of ``actions`` (e.g. the oracle's labels in a training set)."""
        return cls(verbs=tuple({action_verb(a) for a in actions}), max_candidates=max_candidates,
                   context_history=context_history)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (the ``"candidates"`` entry of ``londi_policy.json``)."""
        return {"verbs": list(self.verbs), "max_candidates": self.max_candidates,
                "context_history": self.context_history}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateFilter:
        """The inverse of :meth:`to_dict`; unknown keys are an error naming the valid ones."""
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - valid
        if unknown:
            raise ValueError(f"unknown candidate-filter setting(s) {sorted(unknown)}; valid: {sorted(valid)}")
        kw = dict(data)
        if "verbs" in kw:
            kw["verbs"] = tuple(kw["verbs"])
        return cls(**kw)

    def select(self, obs: TextObservation) -> list[int]:
        """Indices (in the game's order) of the candidate actions of ``obs``; never empty."""
        actions = obs.admissible_actions
        keep = [i for i, a in enumerate(actions) if not self.verbs or action_verb(a) in self.verbs]
        if not keep:  # no action with a known verb: fall back to the whole list, ranked
            keep = list(range(len(actions)))
        if len(keep) <= self.max_candidates:
            return keep
        context = _words(obs.goal) | _words(obs.text) | _words(obs.inventory)
        if self.context_history:
            for past_text, past_action in obs.history[-self.context_history:]:
                context |= _words(past_text) | _words(past_action)
        overlap = {i: len(_words(actions[i]) & context) for i in keep}
        ranked = sorted(keep, key=lambda i: (-overlap[i], i))[: self.max_candidates]
        return sorted(ranked)

    def recall(self, observations: Sequence[TextObservation], labels: Sequence[str]) -> float:
        """Fraction of ``(observation, label)`` pairs whose label survives the filter."""
        hits = total = 0
        for obs, label in zip(observations, labels):
            if label not in obs.admissible_actions:
                continue
            total += 1
            keep = self.select(obs)
            hits += int(label in {obs.admissible_actions[i] for i in keep})
        return hits / total if total else float("nan")


class CandidatePolicy(HFPolicy):
    """An :class:`~londi.agents.lm.HFPolicy` that scores only a short candidate list.

    Args:
        model_path: a checkpoint folder (as for :class:`~londi.agents.lm.HFPolicy`).
        candidate_filter: the filter; default: the checkpoint's ``londi_policy.json``
            ``"candidates"`` entry (a :class:`ValueError` if it has none).
        **kwargs: passed to :class:`~londi.agents.lm.HFPolicy`.
    """

    def __init__(self, model_path: str | Path, *, candidate_filter: CandidateFilter | None = None,
                 **kwargs: Any) -> None:
        super().__init__(model_path, **kwargs)
        if candidate_filter is None:
            saved = _read_policy_config(self.path).get(POLICY_CONFIG_KEY)
            if not isinstance(saved, dict):
                raise ValueError(
                    f"{self.path}: no {POLICY_CONFIG_KEY!r} settings in londi_policy.json; pass candidate_filter="
                )
            candidate_filter = CandidateFilter.from_dict(saved)
        self.candidate_filter = candidate_filter

    def _candidates(self, obs: TextObservation) -> tuple[TextObservation, list[int], float, float]:
        """``obs`` cut to its candidates, their indices, and the filter's wall and CPU time."""
        t0, c0 = time.perf_counter(), time.process_time()
        keep = self.candidate_filter.select(obs)
        filter_wall, filter_cpu = time.perf_counter() - t0, time.process_time() - c0
        if len(keep) == len(obs.admissible_actions):
            return obs, keep, filter_wall, filter_cpu
        sub = dataclasses.replace(obs, admissible_actions=tuple(obs.admissible_actions[i] for i in keep))
        return sub, keep, filter_wall, filter_cpu

    def act(self, obs: TextObservation) -> Decision:
        sub, keep, filter_wall, filter_cpu = self._candidates(obs)
        return self._widen(obs, sub, keep, super().act(sub), filter_wall, filter_cpu)

    def act_batch(self, observations: Sequence[TextObservation],
                  generators: Sequence[np.random.Generator | None] | None = None) -> list[BatchAnswer]:
        """Each observation cut to its candidates, then all scored in one batch (:class:`HFPolicy`)."""
        if generators is not None and len(generators) != len(observations):
            raise ValueError(f"{len(generators)} generators for {len(observations)} observations")
        cut = [self._candidates(obs) for obs in observations]
        gens = list(generators) if generators is not None else [None] * len(observations)
        answers = self._act_batch_scored([c[0] for c in cut], gens)
        out = []
        for obs, (sub, keep, wall, cpu), answer in zip(observations, cut, answers):
            timing = dataclasses.replace(answer.timing, wall_seconds=answer.timing.wall_seconds + wall,
                                         thread_cpu_seconds=answer.timing.thread_cpu_seconds + cpu,
                                         process_cpu_seconds=answer.timing.process_cpu_seconds + cpu)
            decision = self._widen(obs, sub, keep, answer.decision, wall, cpu) if answer.decision is not None else None
            out.append(BatchAnswer(decision, answer.error, timing))
        return out

    def _widen(self, obs: TextObservation, sub: TextObservation, keep: list[int], decision: Decision,
               filter_wall: float, filter_cpu: float) -> Decision:
        """A decision on the candidates, as a decision on the whole observation."""
        probs = decision.probs
        if probs is not None and sub is not obs:
            full = np.zeros(len(obs.admissible_actions), dtype=probs.dtype)
            full[keep] = probs
            probs = full
        rec = decision.record
        # The filter runs on the CPU in this process: its time is part of the call's cost.
        record = dataclasses.replace(
            rec,
            device_seconds=rec.device_seconds + (filter_cpu if rec.device == "cpu" else 0.0),
            wall_seconds=rec.wall_seconds + filter_wall,
        )
        return Decision(action=decision.action, record=record, probs=probs, hidden=decision.hidden)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", candidates<={self.candidate_filter.max_candidates})"


__all__ = ["POLICY_CONFIG_KEY", "CandidateFilter", "CandidatePolicy", "action_verb"]
