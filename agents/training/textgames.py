"""The TextWorld and ScienceWorld pairs (``textworld-*``, ``scienceworld-*``).

Behaviour cloning from the env's expert, **an oracle** in both games:

* **TextWorld**: ``policy_commands`` (TextWorld replans the winning command sequence from the
  current game state). Expert demonstrations on games made with ``tw-make`` from seeds
  :data:`TW_TRAIN_GAME_SEEDS` (never the registered ids' games, tw-make seeds 1-5), then DAgger
  rounds: the model plays (the expert acts with probability ``beta``), the expert labels every
  visited state. Held-out evaluation: the registered id's games (seeds 1-5), never trained on.
* **ScienceWorld**: the package's gold path. It is an open-loop plan that stops labelling once
  the agent leaves it. Gold-path demonstrations on ``train``-split variations only; gold actions
  missing from the valid-action list are played but not learned, and dropped from the history
  the model sees (:func:`~londi.agents.training.rollout.rollin_episode`). The saved checkpoints
  carry a candidate filter (:class:`londi.agents.candidates.CandidateFilter`), so a call scores a
  short list instead of hundreds to thousands of valid actions. Variations drawn by the first
  :data:`SW_EXCLUDED_HELDOUT` held-out episodes of ``londi eval`` (run seed 0) are excluded from
  training. Held-out evaluation: ``dev``-split variations.

Commands are several tokens long, so the loss is the cross-entropy of all of a command's tokens
(:class:`CommandLearner`) and the policy scores each admissible command by their summed
log-probability (:class:`londi.agents.lm.HFPolicy`). DAgger roll-ins play the model through
the ``TextPolicy`` that will load it (:meth:`~londi.agents.training.trainer.Learner.as_policy`).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from londi.agents.candidates import CandidateFilter
from londi.agents.prompt import build_prompt
from londi.agents.training.rollout import Collected, Sample, rollin_episode
from londi.agents.training.specs import BABYAI_ONLY_FIELDS, TRAIN_SEED_START, ModelSpec
from londi.agents.training.tokenizer import text_game_tokenizer
from londi.agents.training.trainer import Learner, phase_entry, run_dagger
from londi.core.seeds import heldout_seeds
from londi.envs import make_env
from londi.envs.textworld import make_game

logger = logging.getLogger("londi.agents.training")

#: TextWorld challenge of the pair and the tw-make seeds of its training games (the registered
#: id ``londi/TextWorld-Simple-v0`` plays seeds 1-5: the held-out games).
TW_CHALLENGE = "simple"
TW_ENV_ID = "londi/TextWorld-Simple-v0"
TW_TRAIN_GAME_SEEDS = range(101, 141)
#: ScienceWorld tasks of the pair: short gold paths, fast resets.
SW_TASKS = ("lifespan-longest-lived", "lifespan-shortest-lived", "find-non-living-thing")
#: Held-out episodes per run seed whose variations are kept out of training (see module doc).
SW_EXCLUDED_HELDOUT = 30
#: Episode cap of the held-out evaluation in ScienceWorld (the gold paths here are <= 12 steps).
SW_EVAL_MAX_STEPS = 40
#: Candidates a ScienceWorld model scores per call.
SW_MAX_CANDIDATES = 48


@dataclass
class GameSetup:
    """Where a pair's training and held-out episodes come from."""

    game: str
    """``"textworld"`` or ``"scienceworld"``."""
    train_env_kwargs: list[dict]
    """One entry per env to train on: ``make_env`` id and keyword arguments."""
    eval_env_kwargs: list[dict]
    """One entry per env of the held-out evaluation."""
    excluded: dict[str, list[int]] = field(default_factory=dict)
    """ScienceWorld: task -> variations kept out of training (drawn by ``londi eval``)."""

    @property
    def n_games(self) -> int:
        """TextWorld: training games of the first env (an episode per game is one pass); else 1."""
        return len(self.train_env_kwargs[0].get("game_files", [None])) if self.game == "textworld" else 1


def textworld_setup(n_train_games: int, games_dir: Path) -> GameSetup:
    """The first ``n_train_games`` training games (made in ``games_dir`` if missing); held out: :data:`TW_ENV_ID`."""

    seeds = list(TW_TRAIN_GAME_SEEDS)[:n_train_games]
    files = [str(make_game(TW_CHALLENGE, s, games_dir)) for s in seeds]
    return GameSetup(
        game="textworld",
        train_env_kwargs=[{"id": "londi/TextWorld-v0", "game_files": files}],
        eval_env_kwargs=[{"id": TW_ENV_ID}],
    )


def heldout_variations(task: str, variations: tuple[int, ...], n: int) -> list[int]:
    """The train-split variations that ``londi eval`` (run seed 0) draws in its first ``n`` episodes.

    The env draws ``variations[np_random.integers(len)]`` after ``reset(seed=s)``; gymnasium's
    ``np_random(s)`` is reproduced here without starting a JVM per seed.
    """
    from gymnasium.utils.seeding import np_random


    out = set()
    for run_seed in (0,):
        for s in heldout_seeds(run_seed, n):
            rng, _ = np_random(int(s))
            out.add(int(variations[int(rng.integers(len(variations)))]))
    return sorted(out)


def scienceworld_setup(tasks: list[str]) -> GameSetup:
    """Train-split variations of ``tasks`` minus the held-out draws; held out: dev-split variations."""

    excluded = {}
    for task in tasks:
        env = make_env(f"londi/ScienceWorld-{task}-v0", disable_env_checker=True)
        try:
            excluded[task] = heldout_variations(task, env.unwrapped.split_variations("train"), SW_EXCLUDED_HELDOUT)
        finally:
            env.close()
    return GameSetup(
        game="scienceworld",
        train_env_kwargs=[{"id": f"londi/ScienceWorld-{t}-v0", "split": "train"} for t in tasks],
        eval_env_kwargs=[{"id": f"londi/ScienceWorld-{t}-v0", "split": "dev", "max_steps": SW_EVAL_MAX_STEPS}
                         for t in tasks],
        excluded=excluded,
    )


def make(kwargs: dict):
    """The env of a :class:`GameSetup` entry."""

    kw = dict(kwargs)
    return make_env(kw.pop("id"), disable_env_checker=True, **kw)


def collect(setup: GameSetup, n_episodes: int, seed_start: int, *, policy=None, beta: float = 1.0, rng=None,
            desc: str = "collect") -> Collected:
    """``n_episodes`` per training env (TextWorld: one per training game and pass), each played by
    :func:`rollin_episode` (the oracle alone, or ``policy`` mixed with it per ``beta``)."""
    from tqdm.auto import tqdm

    samples, succ, n = [], 0, 0
    for k, kwargs in enumerate(setup.train_env_kwargs):
        env = make(kwargs)
        try:
            task = kwargs["id"].removeprefix("londi/ScienceWorld-").removesuffix("-v0")
            allowed = None
            if setup.game == "scienceworld":
                excluded = set(setup.excluded.get(task, ()))
                allowed = [v for v in env.unwrapped.split_variations("train") if v not in excluded]
                if not allowed:
                    raise ValueError(f"{task}: every train-split variation is drawn by the held-out episodes")
            n_games = len(kwargs.get("game_files", [None]))
            total = n_episodes * n_games if setup.game == "textworld" else n_episodes
            for i in tqdm(range(total), desc=f"{desc} {k + 1}/{len(setup.train_env_kwargs)}", leave=False):
                seed = seed_start + 1000 * k + i
                if setup.game == "textworld":
                    options = {"game": i % n_games}
                else:
                    options = {"variation": int(allowed[np.random.default_rng(seed).integers(len(allowed))])}
                new, ok, _ = rollin_episode(env, seed, policy=policy, beta=beta, rng=rng, reset_options=options)
                samples += new
                succ += int(ok)
                n += 1
        finally:
            env.close()
    return Collected(samples, succ, n)


class CommandLearner(Learner):
    """A model being trained on multi-token commands.

    Each example is ``prompt tokens + command tokens``; the loss is the cross-entropy of every
    command token given what precedes it, the quantity :class:`~londi.agents.lm.HFPolicy` sums to
    score a command. Batches are sorted by length over a whole pass.
    """

    chunk_batches = None
    saved_without = BABYAI_ONLY_FIELDS

    def __init__(self, spec: ModelSpec, tokenizer, seed: int, *, device: str = "cpu", max_positions: int = 1024) -> None:
        super().__init__(spec, tokenizer, seed, device=device, max_positions=max_positions)
        self.examples: list[tuple[list[int], int]] = []  # (ids, length of the prompt part)

    def add(self, samples: list[Sample]) -> None:
        prompts = self.encode([s.obs for s in samples])
        actions = self.tokenizer([s.label for s in samples], add_special_tokens=False)["input_ids"]
        for p, a in zip(prompts, actions):
            p = p[-(self.max_positions - len(a)):]  # HFPolicy keeps the prompt's end too
            self.examples.append((p + a, len(p)))

    def __len__(self) -> int:
        return len(self.examples)

    def example_length(self, i: int) -> int:
        return len(self.examples[i][0])

    def lr_factor(self, step: int, steps: int, warm: int) -> float:
        # warmup_cosine, with its terms grouped as this trainer always had them (the same values
        # up to rounding, and the shipped text pairs reproduce bit for bit).
        if step < warm:
            return (step + 1) / warm
        return 0.05 + 0.475 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    def batch_loss(self, indices, rng: np.random.Generator):
        import torch
        import torch.nn.functional as F

        batch = [self.examples[i] for i in indices]
        width = max(len(ids) for ids, _ in batch)
        inp = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)
        rows, cols, targets = [], [], []
        for r, (ids, p) in enumerate(batch):
            inp[r, : len(ids)] = torch.tensor(ids)
            for k in range(p, len(ids)):  # the state before token k predicts token k
                rows.append(r)
                cols.append(k - 1)
                targets.append(ids[k])
        inp = inp.to(self.device)
        # Right padding, causal attention: real tokens never see the pads after them.
        h = self.model.model(input_ids=inp).last_hidden_state
        logits = self.model.lm_head(h[torch.tensor(rows), torch.tensor(cols)])
        return F.cross_entropy(logits, torch.tensor(targets, device=logits.device))


def fit_candidates(game: str, samples: list[Sample]) -> dict | None:
    """ScienceWorld: the candidate filter (oracle verbs) saved with the models; TextWorld: none."""
    if game != "scienceworld":
        return None

    return CandidateFilter.fit([s.label for s in samples], max_candidates=SW_MAX_CANDIDATES).to_dict()


def train_model(spec: ModelSpec, setup: GameSetup, *, seed: int, out_dir: Path, prefix: str, demos: Collected) -> dict:
    """Train ``spec`` on the demonstrations (plus DAgger rounds) and save it as
    ``out_dir/{prefix}-{spec.name}`` (no card, no checksums); returns its log."""

    rng = np.random.default_rng(seed)
    t0 = time.time()
    demos = Collected(*demos)
    samples, n = demos.samples, demos.episodes
    candidates = fit_candidates(setup.game, samples)
    texts = [build_prompt(s.obs, history_length=spec.history_length, list_actions=spec.list_actions) for s in samples]
    texts += [a for s in samples for a in s.obs.admissible_actions]
    learner = CommandLearner(spec, text_game_tokenizer(texts), seed)
    learner.add(samples)
    loss = learner.train(spec.epochs_demo, rng, desc=f"{spec.name}: train on oracle demos")
    log = {"spec": asdict(spec), "seed": seed, "candidates": candidates, "vocab_size": len(learner.tokenizer),
           "phases": [phase_entry("demos", 1.0, demos, loss, t0)]}
    logger.info("%s: %d oracle states from %d episodes, loss %.3f (%.0f s)", spec.name, len(samples), n, loss,
                time.time() - t0)

    def rollin(r: int, beta: float) -> Collected:
        policy = learner.as_policy(seed, candidates)
        return collect(setup, spec.dagger_episodes // max(1, setup.n_games) or 1,
                       TRAIN_SEED_START + 100_000 * (r + 1) + 10_000 * seed, policy=policy, beta=beta, rng=rng,
                       desc=f"{spec.name}: DAgger {r + 1} roll-in")

    run_dagger(learner, rng, rollin, log=log, t0=t0)
    log.update(train_states=len(learner), train_seconds=time.time() - t0,
               parameters=int(learner.model.num_parameters()))
    learner.save(out_dir / f"{prefix}-{spec.name}", trained_on=",".join(k["id"] for k in setup.train_env_kwargs),
                 candidates=candidates)
    return log
