"""The seed scheme (londi.core.seeds): seeds 0-9 keep their episodes, any non-negative seed is valid,
and held-out episodes never overlap training, selection, calibration or LM-training episodes."""
from __future__ import annotations

import itertools
import json
import zlib

import numpy as np
import pytest

from londi.cli import main
from londi.core import seeds
from londi.core.seeds import (
    HELDOUT_SEED_BASE,
    HIGH_SEED_BASE,
    LM_TRAIN_SEED_START,
    SEED_STRIDE,
    VALIDATION_SEED,
    heldout_seeds,
    rng_seed,
    training_env_seed,
    training_seeds,
)
from londi.core.seeds import training_seeds as baselines_training_seeds
from londi.learn.selection import SELECTION_PURPOSE

GRID = (0, 1, 3, 9, 10, 11, 42, 499_999, 500_000, 10**6, 2**31, 2**40)
PURPOSES = (SELECTION_PURPOSE, "router-train", "task-router-train", "uncertainty-calibration",
            "router-calibration", "londi-calibration")


def _old_heldout(seed: int, episodes: int) -> list[int]:  # the formula before seeds >= 10 existed
    return [500_000 + seed * 10_000 + i for i in range(episodes)]


def _old_training(seed: int, episodes: int, purpose: str) -> list[int]:
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(purpose.encode())]))
    return [int(s) for s in rng.choice(500_000, size=episodes, replace=False)]


def test_reexports_are_the_leaf_modules():
    assert heldout_seeds is seeds.heldout_seeds and baselines_training_seeds is seeds.training_seeds
    assert (HELDOUT_SEED_BASE, VALIDATION_SEED) == (500_000, 9)


def test_seeds_0_to_9_keep_todays_episodes():
    assert heldout_seeds(3, 8)[7] == 530_007
    assert heldout_seeds(0, 3) == [500_000, 500_001, 500_002]
    assert heldout_seeds(9, SEED_STRIDE)[-1] == 599_999
    for s in range(10):
        assert heldout_seeds(s, 200) == _old_heldout(s, 200)
        assert training_env_seed(s) == s  # SB3 seeded the first training reset with the run seed
        assert rng_seed(s) == s
        for purpose in PURPOSES:
            assert training_seeds(s, 50, purpose) == _old_training(s, 50, purpose)


def test_any_non_negative_seed_is_valid():
    for s in GRID + (2**64 + 5,):
        held = heldout_seeds(s, 5)
        assert len(set(held)) == 5 and min(held) >= 0
        assert len(set(training_seeds(s, 20, "router-train"))) == 20
        assert 0 <= rng_seed(s) < 2**32
        assert training_env_seed(s) >= 0
    assert heldout_seeds(np.int64(42), 2) == heldout_seeds(42, 2)
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="non-negative integer"):
            heldout_seeds(bad, 2)
    with pytest.raises(ValueError, match="at most"):
        heldout_seeds(42, SEED_STRIDE + 1)


def _lm_training_seeds() -> set[int]:
    """The env seeds of scripts/train_lms.py and scripts/train_text_lms.py (script seeds 0-3)."""
    out: set[int] = set()
    for script_seed in range(4):
        for role in (0, 500_000):  # train_lms.py: quick, deepthink
            base = 1_000_000 + role + script_seed * 1_000_000
            out.update(range(base, base + 3_000))  # demos
            for r in range(3):
                out.update(range(base + 100_000 * (r + 1), base + 100_000 * (r + 1) + 1_000))  # DAgger rounds
        out.update(range(1_000_000 + 10_000 * script_seed, 1_000_000 + 10_000 * script_seed + 1_000))  # text demos
        for r in range(3):
            start = 1_000_000 + 100_000 * (r + 1) + 10_000 * script_seed
            out.update(range(start, start + 1_000))
    return out


def test_heldout_never_overlaps_other_uses_for_any_pair_of_seeds():
    lm = _lm_training_seeds()
    assert min(lm) >= LM_TRAIN_SEED_START
    held = {s: set(heldout_seeds(s, SEED_STRIDE)) for s in GRID}
    offline = {s: set().union(*(training_seeds(s, 2_000, p) for p in PURPOSES)) for s in GRID}
    for s in GRID:  # the ranges: held-out blocks only in [500_000, 600_000) and from 2**40 up
        assert all(500_000 <= x < 600_000 or x >= HIGH_SEED_BASE for x in held[s])
        assert all(x < HELDOUT_SEED_BASE for x in offline[s])
        assert not held[s] & lm
    for a, b in itertools.product(GRID, repeat=2):
        assert not held[a] & offline[b], (a, b)
        assert training_env_seed(b) not in held[a], (a, b)
        if a != b:
            assert not held[a] & held[b], (a, b)
            assert training_env_seed(a) != training_env_seed(b), (a, b)
    # the old collision: `londi train --seed 500000` started on held-out episode 0 of eval seed 0
    assert training_env_seed(500_000) not in held[0]


def test_train_switch_starts_on_its_training_env_seed(controlled_pair, tmp_path, monkeypatch):
    from londi.learn.train import TrainConfig, train_switch
    from londi.switch.env import SwitchEnv

    quick, deep = controlled_pair
    reset = SwitchEnv.reset
    seen: list[int] = []

    def recording_reset(self, *, seed=None, options=None):
        if seed is not None:
            seen.append(int(seed))
        return reset(self, seed=seed, options=options)

    monkeypatch.setattr(SwitchEnv, "reset", recording_reset)
    for run_seed in (3, 500_000, 2**33):
        seen.clear()
        config = TrainConfig(steps=40, learning_starts=10, checkpoint_every=0, select_every=0, features="quick",
                             seed=run_seed)
        train_switch(config, tmp_path / f"s{run_seed}", quick=quick, deepthink=deep, progress=False)
        assert seen and seen[0] == training_env_seed(run_seed)
        assert not set(seen) & set(heldout_seeds(0, SEED_STRIDE))
    assert training_env_seed(3) == 3


def test_cli_eval_accepts_seed_42(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["eval", "--seed", "42", "--episodes", "2", "--method", "always-quick", "--no-progress",
                 "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["seed"] == 42 and data["episodes"] == 2
    assert "evaluation seed" not in capsys.readouterr().err
