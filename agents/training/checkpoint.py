"""Writing a trained LM as a checkpoint folder that :func:`londi.agents.lm.load_policy` loads.

A folder holds the Hugging Face files (``config.json``, ``model.safetensors``, the tokenizer),
``londi_policy.json`` (the prompt and decoding settings :class:`~londi.agents.lm.HFPolicy`
reads, the training spec, and for text games an optional candidate filter), ``MODEL_CARD.md``
and ``SHA256SUMS`` (:func:`londi.agents.checkpoints.write_checksums`, verified at load time).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from londi.agents.checkpoints import CHECKSUM_FILE, POLICY_CONFIG_FILE, verify_checksums, write_checksums

#: The model card's file name.
MODEL_CARD_FILE = "MODEL_CARD.md"


def policy_settings(spec: Any, *, trained_on: str | None, drop_fields: tuple[str, ...] = (),
                    candidates: dict | None = None) -> dict[str, Any]:
    """The ``londi_policy.json`` of a model trained with ``spec`` (a ``ModelSpec``): its prompt and
    decoding settings, the env it was trained on, the spec (without ``drop_fields``) and, when
    given, the candidate filter (:class:`~londi.agents.candidates.CandidateFilter` as a dict)."""
    spec_dict = asdict(spec)
    for key in drop_fields:
        spec_dict.pop(key, None)
    settings: dict[str, Any] = {
        "history_length": spec.history_length,
        "list_actions": spec.list_actions,
        "temperature": spec.temperature,
        "sample": spec.sample,
        "trained_on": trained_on,
        "spec": spec_dict,
    }
    if candidates is not None:
        settings["candidates"] = candidates
    return settings


def save_checkpoint(folder: str | Path, model: Any, tokenizer: Any, settings: dict[str, Any]) -> Path:
    """Save ``model`` (``save_pretrained``, from the CPU), ``tokenizer`` and ``settings`` (as
    ``londi_policy.json``) into ``folder``, replacing it atomically (written to ``folder.tmp``
    first). No card, no checksums: see :func:`finish_checkpoint`. Returns the folder."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    device = next(model.parameters()).device
    model.to("cpu").save_pretrained(tmp)
    model.to(device)
    tokenizer.save_pretrained(tmp)
    (tmp / POLICY_CONFIG_FILE).write_text(json.dumps(settings, indent=2) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.replace(folder)
    return folder


def finish_checkpoint(folder: str | Path, card: str | None = None) -> Path:
    """Write ``MODEL_CARD.md`` (when ``card`` is given) and then ``SHA256SUMS`` over every file
    of ``folder``; returns the checksum file's path (:func:`~londi.agents.checkpoints.verify_checksums`
    accepts the folder afterwards)."""
    folder = Path(folder)
    if card is not None:
        (folder / MODEL_CARD_FILE).write_text(card)
    return write_checksums(folder)


__all__ = ["CHECKSUM_FILE", "MODEL_CARD_FILE", "finish_checkpoint", "policy_settings", "save_checkpoint",
           "verify_checksums"]
