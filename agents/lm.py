"""Loading language-model text policies: the shipped QUICK/DEEPTHINK pair or any local checkpoint.

The default pair (``quick-dagger`` and ``deepthink-dagger``) and the first pair (``quick`` and
``deepthink``) were trained in this project by behaviour cloning from the BabyAI bot (see
``scripts/train_lms.py`` and ``docs/models.md``); they load through the same code as any user
checkpoint::

    from londi.agents.lm import load_policy

    quick = load_policy("quick-dagger")          # shipped, tiny and cheap
    deep = load_policy("deepthink-dagger")       # shipped, bigger, with history
    mine = load_policy("/path/to/checkpoint")    # any local HF causal or seq2seq folder

A checkpoint folder says which policy class it needs (:func:`~londi.agents.checkpoints.checkpoint_kind`):
:class:`~londi.agents.hf.HFPolicy`, a :class:`~londi.agents.candidates.CandidatePolicy` or an
:class:`~londi.agents.lm_ensemble.LMEnsemblePolicy`. This module sits above all three, so
that none of them imports the loader.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from londi.agents.base import TextPolicy
from londi.agents.candidates import CandidatePolicy
from londi.agents.checkpoints import (
    DEFAULT_DEEPTHINK,
    DEFAULT_QUICK,
    EXTRA_MODELS,
    MIX_MODELS,
    SHIPPED_MODELS,
    TEXT_GAME_MODELS,
    checkpoint_folder,
    checkpoint_kind,
)
from londi.agents.hf import HFPolicy, ScoringPolicy
from londi.agents.lm_ensemble import LMEnsemblePolicy


def _load_folder(folder: Path, **kwargs: Any) -> TextPolicy:
    """Load ``folder`` as the policy class it asks for (:func:`~londi.agents.checkpoints.checkpoint_kind`)."""
    kind = checkpoint_kind(folder)
    if kind == "ensemble":
        return LMEnsemblePolicy.from_folder(folder, **kwargs)
    if kind == "candidates":
        return CandidatePolicy(folder, **kwargs)
    return HFPolicy(folder, **kwargs)


def load_policy(name_or_path: str | Path, **kwargs: Any) -> TextPolicy:
    """Load a shipped model by name (:data:`~londi.agents.checkpoints.SHIPPED_MODELS`, ``EXTRA_MODELS``,
    ``MIX_MODELS``, ``TEXT_GAME_MODELS``) or any local checkpoint folder (:func:`~londi.agents.checkpoints.checkpoint_folder`). A checkpoint whose ``londi_policy.json`` has a ``"candidates"`` entry
    loads as a :class:`~londi.agents.candidates.CandidatePolicy` (scores a short candidate list); a
    folder with an ``londi_ensemble.json`` manifest loads as a
    :class:`~londi.agents.lm_ensemble.LMEnsemblePolicy` (several checkpoints, mean log-likelihoods).

    Keyword arguments go to :class:`HFPolicy` (``device``, ``dtype``, ``history_length``, ...; an
    ensemble passes ``name``, ``temperature``, ``sample`` and ``seed`` to itself, the rest to its members).
    Raises :class:`~londi.core.errors.UnknownChoiceError` for a name that is neither a shipped model
    nor an existing folder, and :class:`~londi.core.errors.LondiError` for a missing or corrupt
    shipped checkpoint.
    """
    folder = checkpoint_folder(name_or_path)
    if str(name_or_path) in SHIPPED_MODELS + EXTRA_MODELS + MIX_MODELS + TEXT_GAME_MODELS:
        kwargs.setdefault("name", str(name_or_path))
    return _load_folder(folder, **kwargs)


__all__ = [
    "DEFAULT_DEEPTHINK",  # defined in londi.agents.checkpoints; imported from here throughout
    "DEFAULT_QUICK",
    "HFPolicy",
    "ScoringPolicy",
    "load_policy",
]
