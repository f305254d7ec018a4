"""Several LM checkpoints acting as one text policy: the mean of their action log-likelihoods.

Behaviour-cloned policies trained alike from different data or schedules make different
mistakes, and averaging their per-action log-likelihoods (a product of experts, ``softmax(mean_i
log p_i(a | prompt) / T)``) cancels part of them. :class:`LMEnsemblePolicy` does this for any
list of :class:`~londi.agents.lm.HFPolicy` members: each member builds its own prompt (with its
own ``londi_policy.json`` settings) and scores every admissible action; the ensemble averages
the scores, then chooses greedily or samples, exactly like a single :class:`HFPolicy`.

Every call is metered as one call of the whole ensemble: the device-seconds cover all members'
forwards (one :func:`~londi.core.meter.device_timer` around them), and the tokens and the FLOPs
estimate are the sums over members (each member runs its own prompt), so the ensemble costs what
its members cost together.

An ensemble is saved as a folder holding an ``londi_ensemble.json`` manifest::

    {"members": ["../deepthink-a", "../deepthink-b"], "temperature": 0.5, "sample": true}

Member paths are relative to the manifest's folder (or absolute); each member is an ordinary
Hugging Face checkpoint folder loaded through transformers' Auto classes, checksums included.
:func:`londi.agents.lm.load_policy` returns an :class:`LMEnsemblePolicy` for such a folder, so
``--deepthink /path/to/ensemble`` works wherever a checkpoint does. :func:`write_ensemble` writes
the manifest.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from londi.agents.checkpoints import ENSEMBLE_FILE, verify_checksums
from londi.agents.hf import HFPolicy, ScoringPolicy
from londi.core.errors import LondiError
from londi.core.meter import estimate_flops
from londi.envs.base import TextObservation


def read_ensemble(folder: str | Path) -> dict[str, Any]:
    """The checked manifest of an ensemble folder, with member paths resolved.

    Raises :class:`~londi.core.errors.LondiError` for unreadable JSON, no members, a member that is not
    a folder, or a temperature that is not positive.
    """
    folder = Path(folder)
    path = folder / ENSEMBLE_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LondiError(f"{path}: not a readable ensemble manifest: {exc}") from None
    if not isinstance(data, dict):
        raise LondiError(f"{path}: the manifest must be a JSON object")
    members = data.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) and m for m in members):
        raise LondiError(f"{path}: 'members' must be a non-empty list of checkpoint folder paths")
    resolved = []
    for m in members:
        member = Path(m).expanduser()
        member = member if member.is_absolute() else (folder / member)
        if not member.is_dir():
            raise LondiError(f"{path}: member {m!r} is not a folder ({member})")
        resolved.append(member.resolve())
    temperature = data.get("temperature")
    if temperature is not None and not (isinstance(temperature, (int, float)) and temperature > 0):
        raise LondiError(f"{path}: temperature must be a positive number, got {temperature!r}")
    sample = data.get("sample")
    if sample is not None and not isinstance(sample, bool):
        raise LondiError(f"{path}: sample must be true or false, got {sample!r}")
    unknown = set(data) - {"members", "temperature", "sample", "note"}
    if unknown:
        raise LondiError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: members, temperature, sample, note")
    return {"members": resolved, "temperature": temperature, "sample": sample, "note": data.get("note")}


def write_ensemble(folder: str | Path, members: Sequence[str | Path], *, temperature: float | None = None,
                   sample: bool | None = None, note: str | None = None) -> Path:
    """Write an ensemble manifest into ``folder`` (created if needed); member paths are stored
    relative to ``folder``. Returns the manifest's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not members:
        raise ValueError("an ensemble needs at least one member")
    if temperature is not None and not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    rel = [os.path.relpath(Path(m).resolve(), folder.resolve()) for m in members]
    data: dict[str, Any] = {"members": rel}
    if temperature is not None:
        data["temperature"] = float(temperature)
    if sample is not None:
        data["sample"] = bool(sample)
    if note:
        data["note"] = note
    path = folder / ENSEMBLE_FILE
    path.write_text(json.dumps(data, indent=2) + "\n")
    read_ensemble(folder)  # the members must exist
    return path


class LMEnsemblePolicy(ScoringPolicy):
    """Choose by the mean of several LM policies' per-action log-likelihoods.

    Args:
        members: the member policies (loaded :class:`~londi.agents.lm.HFPolicy` s on one
            device); their own ``sample`` settings are ignored, the ensemble decides.
        name: the ensemble's name in call records.
        temperature: ``Decision.probs`` is ``softmax(mean log-likelihood / temperature)`` (default:
            the first member's temperature).
        sample: draw the action from ``probs`` instead of taking the most likely one (default: the
            first member's setting). Sampling is seeded by ``seed`` / :meth:`set_seed`.
        seed: seed of the sampling generator.

    Raises:
        ValueError: no members, members on different devices, or a temperature that is not
            positive.
    """

    def __init__(self, members: Sequence[HFPolicy], *, name: str = "ensemble", temperature: float | None = None,
                 sample: bool | None = None, seed: int | None = None) -> None:
        members = list(members)
        if not members:
            raise ValueError("an LM ensemble needs at least one member")
        devices = {m.device for m in members}
        if len(devices) > 1:
            raise ValueError(f"the members of an LM ensemble must share one device, got {sorted(devices)}")
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.members = members
        self.name = name
        self.device = members[0].device
        self.temperature = float(members[0].temperature if temperature is None else temperature)
        self.sample = bool(members[0].sample if sample is None else sample)
        self._rng = np.random.default_rng(seed)

    def fingerprint(self) -> dict[str, Any]:
        """The members' fingerprints, in order, under one digest."""
        members = [m.fingerprint() for m in self.members]
        digest = hashlib.sha256(json.dumps(members, sort_keys=True).encode()).hexdigest()
        return {"kind": "hf-ensemble", "name": self.name, "sha256": digest, "members": members}

    @classmethod
    def from_folder(cls, folder: str | Path, *, name: str | None = None, temperature: float | None = None,
                    sample: bool | None = None, seed: int | None = None, **member_kwargs: Any) -> LMEnsemblePolicy:
        """Load an ensemble folder (see the module docstring); ``member_kwargs`` go to every
        member's :class:`~londi.agents.lm.HFPolicy` (``device``, ``dtype``, ``verify``, ...). With
        ``verify`` (the default) the folder's own ``SHA256SUMS``, if any, is checked too."""
        folder = Path(folder).expanduser()
        if member_kwargs.get("verify", True):
            verify_checksums(folder)  # the manifest and card, where the folder has SHA256SUMS
        manifest = read_ensemble(folder)
        members = [HFPolicy(m, **member_kwargs) for m in manifest["members"]]
        return cls(
            members,
            name=name or folder.name,
            temperature=manifest["temperature"] if temperature is None else temperature,
            sample=manifest["sample"] if sample is None else sample,
            seed=seed,
        )

    # ------------------------------------------------------------------ properties
    @property
    def n_parameters(self) -> int:
        """Parameters of all members together."""
        return int(sum(m.n_parameters for m in self.members))

    @property
    def history_length(self) -> int:
        """The longest history any member reads."""
        return max(m.history_length for m in self.members)

    @property
    def hidden_size(self) -> int:
        """Length of ``Decision.hidden`` (the members' summaries, concatenated)."""
        return int(sum(m.hidden_size for m in self.members))

    @property
    def verified(self) -> bool:
        """Whether every member's checksums were verified at load time."""
        return all(m.verified for m in self.members)

    # ------------------------------------------------------------------ TextPolicy
    def reset(self) -> None:
        for m in self.members:
            m.reset()

    def score(self, obs: TextObservation) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """The members' mean log-likelihood of each admissible action (no metering).

        Returns ``(scores, hidden, counts)`` like :meth:`HFPolicy.score`; ``counts`` sums the
        members' token counts and adds ``flops``, the sum of the members' FLOPs estimates.
        """
        scores, hiddens = [], []
        counts = {"input_tokens": 0, "output_tokens": 0, "forward_tokens": 0, "flops": 0.0}
        for m in self.members:
            s, h, c = m.score(obs)
            scores.append(s)
            hiddens.append(np.asarray(h, dtype=np.float32).ravel())
            for k in ("input_tokens", "output_tokens", "forward_tokens"):
                counts[k] += int(c[k])
            counts["flops"] += estimate_flops(m.n_parameters, c["forward_tokens"])
        return np.mean(scores, axis=0), np.concatenate(hiddens), counts

    def _flops(self, counts: dict[str, Any]) -> float:
        return float(counts["flops"])

    def __repr__(self) -> str:
        names = ", ".join(repr(m.name) for m in self.members)
        return (f"LMEnsemblePolicy(name={self.name!r}, members=[{names}], params={self.n_parameters}, "
                f"{'sample' if self.sample else 'greedy'}, temperature={self.temperature})")


__all__ = ["ENSEMBLE_FILE", "LMEnsemblePolicy", "read_ensemble", "write_ensemble"]
