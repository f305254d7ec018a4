"""The checkpoint folder: the shipped models' names and folders, and the files beside the weights.

A checkpoint that :func:`londi.agents.lm.load_policy` loads is a folder saved with
``save_pretrained`` plus, optionally, LONDI's own files: ``londi_policy.json``
(:data:`POLICY_CONFIG_FILE`, the prompt and decoding settings the model was trained with),
``SHA256SUMS`` (:data:`CHECKSUM_FILE`, ``sha256sum``-style checksums verified at load time) and,
for an LM ensemble, ``londi_ensemble.json`` (:data:`ENSEMBLE_FILE`). This module names those
files, reads and checks them, and knows where the shipped checkpoints live, so that the loaders
(:mod:`londi.agents.lm`, :mod:`londi.agents.lm_ensemble`, :mod:`londi.agents.candidates`) and
the writers (:mod:`londi.agents.training.checkpoint`, ``scripts/make_ensemble.py``) agree on
the layout without importing torch or transformers.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from londi.core.errors import LondiError, UnknownChoiceError, check_choice

if TYPE_CHECKING:  # torch is imported lazily: reading a checkpoint folder's files needs none of it
    import torch

#: The default QUICK and DEEPTHINK: BabyAI-Text checkpoints trained with learner-led DAgger
#: rounds (``scripts/train_lms.py``; see each model card and docs/models.md).
DEFAULT_QUICK = "quick-dagger"
DEFAULT_DEEPTHINK = "deepthink-dagger"
#: The default pair, shipped with the package (folders under :func:`shipped_models_dir`).
SHIPPED_MODELS: tuple[str, ...] = (DEFAULT_QUICK, DEFAULT_DEEPTHINK)
#: The first pair, ``quick`` and ``deepthink`` (the same architectures trained with less or no
#: DAgger; the default until 2026-11-24), still shipped and loaded by name for comparisons.
EXTRA_MODELS: tuple[str, ...] = ("quick", "deepthink")
#: The BabyAI-Text task-mix pair (go to, pick up with location words, put next to), trained on
#: ``londi/BabyAIText-MixedTrainLocal-v0`` (see each model card): the default pair on every
#: BabyAI-Text level but GoToLocal (:func:`default_pair`).
MIX_QUICK = "quick-mix"
MIX_DEEPTHINK = "deepthink-mix"
MIX_MODELS: tuple[str, ...] = (MIX_QUICK, MIX_DEEPTHINK)
#: The TextWorld and ScienceWorld pairs (``scripts/train_text_lms.py``), also loaded by name.
TEXT_GAME_MODELS: tuple[str, ...] = (
    "textworld-quick", "textworld-deepthink", "scienceworld-quick", "scienceworld-deepthink",
)
#: Optional file in a checkpoint folder with the prompt settings the model was trained with.
POLICY_CONFIG_FILE = "londi_policy.json"
#: Optional ``sha256sum``-style checksum file in a checkpoint folder, verified at load time.
CHECKSUM_FILE = "SHA256SUMS"
#: The manifest that makes a folder an LM ensemble (:mod:`londi.agents.lm_ensemble`).
ENSEMBLE_FILE = "londi_ensemble.json"
#: The dtypes a checkpoint can be loaded in (:func:`checkpoint_dtype`).
DTYPES: tuple[str, ...] = ("auto", "float32", "float16", "bfloat16")


def default_pair(env_id: str) -> tuple[str, str]:
    """The shipped ``(QUICK, DEEPTHINK)`` used on ``env_id`` when none is named: the task-mix pair
    (:data:`MIX_MODELS`) on BabyAI-Text levels other than GoToLocal, else the default pair
    (``DEFAULT_QUICK``, ``DEFAULT_DEEPTHINK``; on TextWorld and ScienceWorld name their pairs)."""
    if env_id.startswith("londi/BabyAIText-") and not env_id.startswith("londi/BabyAIText-GoToLocal-"):
        return MIX_QUICK, MIX_DEEPTHINK
    return DEFAULT_QUICK, DEFAULT_DEEPTHINK


def shipped_models_dir() -> Path:
    """The folder that holds the shipped checkpoints (``<package>/models``)."""
    return Path(__file__).resolve().parent / "models"


def shipped_model_path(name: str) -> Path:
    """The folder of a shipped model (:data:`SHIPPED_MODELS`, :data:`EXTRA_MODELS` or
    :data:`TEXT_GAME_MODELS`); an error naming the valid ones."""
    check_choice("shipped model", name, SHIPPED_MODELS + EXTRA_MODELS + MIX_MODELS + TEXT_GAME_MODELS)
    return shipped_models_dir() / name


def checkpoint_folder(name_or_path: str | Path) -> Path:
    """The folder :func:`londi.agents.lm.load_policy` loads for a shipped model's name or a local path.

    Raises :class:`~londi.core.errors.LondiError` for a shipped model whose folder holds neither
    weights nor an ensemble manifest, or a path that is not a folder, and
    :class:`~londi.core.errors.UnknownChoiceError` for a name that is neither a shipped model nor a path.
    """
    text = str(name_or_path)
    if text in SHIPPED_MODELS or text in EXTRA_MODELS or text in MIX_MODELS or text in TEXT_GAME_MODELS:
        folder = shipped_model_path(text)
        if not ((folder / "config.json").is_file() or (folder / ENSEMBLE_FILE).is_file()):
            script = "train_text_lms.py" if text in TEXT_GAME_MODELS else "train_lms.py"
            raise LondiError(
                f"the shipped model {text!r} is missing from {folder}; rebuild it with "
                f"`python scripts/{script}` or reinstall londi"
            )
        return folder
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists() or "/" in text or "\\" in text or text.startswith("."):
        raise LondiError(
            f"no checkpoint folder at {text!r}; pass a local Hugging Face checkpoint folder or one of: "
            + ", ".join(SHIPPED_MODELS)
        )
    raise UnknownChoiceError(
        "language model", text,
        list(SHIPPED_MODELS + EXTRA_MODELS + TEXT_GAME_MODELS) + ["<path to a local checkpoint folder>"]
    )


def hf_checkpoint_folder(model_path: str | Path) -> Path:
    """``model_path`` as a folder; a :class:`~londi.core.errors.LondiError` unless it is a folder
    with a Hugging Face ``config.json`` (what :class:`~londi.agents.lm.HFPolicy` loads)."""
    folder = Path(model_path).expanduser()
    if not folder.is_dir():
        raise LondiError(
            f"no checkpoint folder at {str(folder)!r}; pass a local Hugging Face checkpoint folder "
            f"(saved with save_pretrained) or one of the shipped models: {', '.join(SHIPPED_MODELS)}"
        )
    if not (folder / "config.json").is_file():
        raise LondiError(f"{str(folder)!r} is not a Hugging Face checkpoint: it has no config.json")
    return folder


def checkpoint_kind(folder: Path) -> str:
    """What ``folder`` holds: ``"ensemble"`` (an ``londi_ensemble.json`` manifest, see
    :mod:`londi.agents.lm_ensemble`), ``"candidates"`` (a checkpoint whose ``londi_policy.json``
    asks for a candidate filter, its ``"candidates"`` entry: :mod:`londi.agents.candidates`), else
    ``"hf"`` (a plain checkpoint)."""
    if (folder / ENSEMBLE_FILE).is_file():
        return "ensemble"
    return "candidates" if "candidates" in _read_policy_config(folder) else "hf"


# ---------------------------------------------------------------------------------- checksums
def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_checksums(folder: str | Path) -> Path:
    """Write ``SHA256SUMS`` (``sha256sum`` format) for every other file in ``folder``; returns its path."""
    folder = Path(folder)
    lines = [
        f"{file_sha256(p)}  {p.name}"
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != CHECKSUM_FILE
    ]
    out = folder / CHECKSUM_FILE
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)
    return out


def verify_checksums(folder: str | Path) -> bool:
    """Check the files listed in ``folder/SHA256SUMS``.

    Returns ``False`` when the folder has no checksum file; raises :class:`LondiError` naming
    the first missing or altered file.
    """
    folder = Path(folder)
    sums = folder / CHECKSUM_FILE
    if not sums.is_file():
        return False
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        digest, _, name = line.strip().partition("  ")
        path = folder / name.strip()
        if not path.is_file():
            raise LondiError(f"checkpoint {folder} is incomplete: {name!r} listed in {CHECKSUM_FILE} is missing")
        if file_sha256(path) != digest:
            raise LondiError(
                f"checkpoint {folder} is corrupt: {name!r} does not match its checksum in {CHECKSUM_FILE}"
            )
    return True


#: Files whose bytes define a checkpoint's behaviour: the weights and the policy settings.
_FINGERPRINT_PATTERNS = ("*.safetensors", "*.bin", POLICY_CONFIG_FILE)


def checkpoint_digest(folder: str | Path) -> str:
    """sha256 over a checkpoint's weight files and ``londi_policy.json`` (names and bytes, sorted)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted({p for pattern in _FINGERPRINT_PATTERNS for p in folder.glob(pattern)}):
        digest.update(path.name.encode() + b"\0" + file_sha256(path).encode() + b"\n")
    return digest.hexdigest()


# ---------------------------------------------------------------------------------- policy settings
def _read_policy_config(folder: Path) -> dict[str, Any]:
    """The folder's ``londi_policy.json`` as a dict (``{}`` when it has none); a
    :class:`~londi.core.errors.LondiError` when the file is not a JSON object. Shared by the
    loaders of :mod:`londi.agents.lm` and :mod:`londi.agents.candidates` (not public API)."""
    path = folder / POLICY_CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LondiError(f"checkpoint {folder} is corrupt: {POLICY_CONFIG_FILE} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise LondiError(f"checkpoint {folder} is corrupt: {POLICY_CONFIG_FILE} must hold a JSON object")
    return data


class PolicySettings(NamedTuple):
    """The prompt and decoding settings of a checkpoint (:func:`policy_settings`)."""

    history_length: int
    list_actions: bool
    temperature: float
    sample: bool


def policy_settings(
    folder: Path,
    *,
    history_length: int | None = None,
    list_actions: bool | None = None,
    temperature: float | None = None,
    sample: bool | None = None,
) -> PolicySettings:
    """The settings to run a checkpoint with: each argument given, else the folder's
    ``londi_policy.json`` entry (the setting the model was trained with), else the default
    (3 past steps, listed actions, temperature 1, greedy). A :class:`~londi.core.errors.LondiError`
    for a saved ``history_length`` below 0 or a saved ``temperature`` that is not positive."""
    saved = _read_policy_config(folder)
    history = int(saved.get("history_length", 3) if history_length is None else history_length)
    if history < 0:
        raise LondiError(f"{folder / POLICY_CONFIG_FILE}: history_length must be >= 0")
    listed = bool(saved.get("list_actions", True) if list_actions is None else list_actions)
    temp = float(saved.get("temperature", 1.0) if temperature is None else temperature)
    if not temp > 0:
        raise LondiError(f"{folder / POLICY_CONFIG_FILE}: temperature must be positive")
    return PolicySettings(history, listed, temp, bool(saved.get("sample", False) if sample is None else sample))


def checkpoint_dtype(dtype: str, device: str, config: Any) -> torch.dtype:
    """The torch dtype to load a checkpoint's weights in: ``dtype`` (one of :data:`DTYPES`), or for
    ``"auto"`` float32 on the CPU (half precision is slow and inexact on most CPUs), else the half
    dtype the checkpoint's ``config`` was saved in, else float32."""
    import torch

    check_choice("dtype", dtype, DTYPES)
    if dtype != "auto":
        return getattr(torch, dtype)
    if device == "cpu":
        return torch.float32  # half precision is slow and inexact on most CPUs
    saved = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(saved, str):
        saved = getattr(torch, saved, None)
    return saved if saved in (torch.float16, torch.bfloat16) else torch.float32


__all__ = [
    "CHECKSUM_FILE",
    "DEFAULT_DEEPTHINK",
    "DEFAULT_QUICK",
    "DTYPES",
    "ENSEMBLE_FILE",
    "EXTRA_MODELS",
    "POLICY_CONFIG_FILE",
    "SHIPPED_MODELS",
    "TEXT_GAME_MODELS",
    "PolicySettings",
    "checkpoint_digest",
    "checkpoint_dtype",
    "checkpoint_folder",
    "checkpoint_kind",
    "file_sha256",
    "hf_checkpoint_folder",
    "policy_settings",
    "shipped_model_path",
    "shipped_models_dir",
    "verify_checksums",
    "write_checksums",
]
