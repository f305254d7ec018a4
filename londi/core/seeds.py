"""Env seeds: which episodes a run seed evaluates, trains and calibrates on.

A leaf module: it imports nothing from ``londi`` (numpy only, lazily, for :func:`training_seeds`).

Every run seed ``s`` is a non-negative integer. The env seeds of the different uses lie in
disjoint ranges, so that no run seed's held-out episodes are ever trained, selected or
calibrated on, by the same or any other run seed:

==============================  =================================================================
env seeds                       use
==============================  =================================================================
``[0, 500_000)``                offline work of every run seed: :func:`training_seeds` (selection
                                episodes, switch and baseline calibration, router training), and
                                the first training episode of run seeds 0-9 (:func:`training_env_seed`)
``[500_000, 600_000)``          held-out episodes of run seeds 0-9: ``500_000 + s * 10_000 + i``
``[600_000, 1_000_000)``        unused
``[1_000_000, 2**40)``          the shipped LMs' training episodes (``scripts/train_lms.py``,
                                ``scripts/train_text_lms.py``: from 1,000,000 up)
``[2**40, ...)``                run seeds ``s >= 10``: a block of ``2 * SEED_STRIDE`` seeds each,
                                starting at ``2**40 + (s - 10) * 2 * SEED_STRIDE``; its first half
                                holds the held-out episodes, its second half starts with the first
                                training episode
==============================  =================================================================

Run seeds 0-9 keep exactly the episodes they had before seeds 10 and up were allowed (the held-out
block ``[500_000, 600_000)``, the first training episode at env seed ``s``), so the results of
``docs/benchmarks.md`` stay reproducible. Switch training seeds only its first episode: the
env's later episodes continue the env's own random stream from that seed (gymnasium's
``np_random``), not env seeds of any range. Every env here (BabyAI-Text, TextWorld,
ScienceWorld) turns its reset seed into ``np_random`` through numpy's ``SeedSequence``, which
takes any non-negative integer, and draws its level, game or variation from it.
"""
from __future__ import annotations

import hashlib
import operator
import zlib

#: First env seed of the held-out block of run seeds 0-9.
HELDOUT_SEED_BASE = 500_000
#: Env seeds reserved per run seed for held-out episodes (the most episodes one evaluation runs).
SEED_STRIDE = 10_000
#: Run seeds 0..LEGACY_RUN_SEEDS-1 keep the held-out block and first training episode they always had.
LEGACY_RUN_SEEDS = 10
#: Run seed whose held-out episodes are kept for validation (hyperparameter choices), never
#: reported as a benchmark.
VALIDATION_SEED = 9
#: :func:`training_seeds` draws from ``[0, OFFLINE_SEED_END)``.
OFFLINE_SEED_END = HELDOUT_SEED_BASE
#: The LM training scripts use env seeds from here up (below :data:`HIGH_SEED_BASE`).
LM_TRAIN_SEED_START = 1_000_000
#: First env seed of the blocks of run seeds >= :data:`LEGACY_RUN_SEEDS`.
HIGH_SEED_BASE = 2**40
#: Env seeds per run seed in the high range: held-out half, then training half.
HIGH_BLOCK = 2 * SEED_STRIDE


def check_run_seed(seed: int) -> int:
    """``seed`` as an int if it is a valid run seed (any non-negative integer), else ValueError."""
    if isinstance(seed, bool):
        raise ValueError(f"run seed must be a non-negative integer, got {seed!r}")
    try:
        seed = operator.index(seed)  # an int or numpy integer, not a float
    except TypeError:
        raise ValueError(f"run seed must be a non-negative integer, got {seed!r}") from None
    if seed < 0:
        raise ValueError(f"run seed must be a non-negative integer, got {seed}")
    return seed


def _high_block(seed: int) -> int:
    return HIGH_SEED_BASE + (seed - LEGACY_RUN_SEEDS) * HIGH_BLOCK


def heldout_seeds(seed: int, episodes: int) -> list[int]:
    """The env seeds of ``episodes`` held-out evaluation episodes for run seed ``seed``.

    Run seeds 0-9: ``HELDOUT_SEED_BASE + seed * SEED_STRIDE + i``; run seeds >= 10: the first
    half of their block in the high range (see the module docstring).
    """
    seed = check_run_seed(seed)
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    if episodes > SEED_STRIDE:
        raise ValueError(f"at most {SEED_STRIDE} episodes per seed, got {episodes}")
    start = HELDOUT_SEED_BASE + seed * SEED_STRIDE if seed < LEGACY_RUN_SEEDS else _high_block(seed)
    return [start + i for i in range(episodes)]


def training_seeds(seed: int, episodes: int, purpose: str) -> list[int]:
    """``episodes`` distinct env seeds in ``[0, HELDOUT_SEED_BASE)`` for offline work.

    They depend on the run seed and on ``purpose`` (e.g. ``"router-train"``), so that the
    router's training episodes and its calibration episodes differ, and they never overlap
    :func:`heldout_seeds` of any run seed.
    """
    import numpy as np

    seed = check_run_seed(seed)
    if episodes <= 0:
        raise ValueError(f"episodes must be positive, got {episodes}")
    if episodes > OFFLINE_SEED_END:
        raise ValueError(f"at most {OFFLINE_SEED_END} offline episodes, got {episodes}")
    ss = np.random.SeedSequence([seed, zlib.crc32(purpose.encode())])
    rng = np.random.default_rng(ss)
    return [int(s) for s in rng.choice(OFFLINE_SEED_END, size=episodes, replace=False)]


def training_env_seed(seed: int) -> int:
    """The env seed of the first episode of switch training with run seed ``seed``.

    ``seed`` itself for run seeds 0-9 (as always); for run seeds >= 10 the first seed of the
    second half of their high-range block, which no held-out, offline or LM-training episode
    uses. Later training episodes continue the env's own random stream.
    """
    seed = check_run_seed(seed)
    return seed if seed < LEGACY_RUN_SEEDS else _high_block(seed) + SEED_STRIDE


def rng_seed(seed: int) -> int:
    """A seed for the global Python, numpy and torch generators (``np.random.seed`` takes at
    most ``2**32 - 1``): ``seed`` itself below ``2**32``, else a 32-bit hash of it."""
    seed = check_run_seed(seed)
    if seed < 2**32:
        return seed
    return int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:4], "little")


__all__ = [
    "HELDOUT_SEED_BASE", "HIGH_BLOCK", "HIGH_SEED_BASE", "LEGACY_RUN_SEEDS", "LM_TRAIN_SEED_START",
    "OFFLINE_SEED_END", "SEED_STRIDE", "VALIDATION_SEED", "check_run_seed", "heldout_seeds", "rng_seed",
    "training_env_seed", "training_seeds",
]
