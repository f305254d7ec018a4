#!/usr/bin/env python
"""Train a QUICK/DEEPTHINK LM pair for TextWorld or ScienceWorld by behaviour cloning from the oracle.

The sibling of ``scripts/train_lms.py`` (the BabyAI pair) for the text games: both models are small
Llama causal LMs trained from scratch in Hugging Face format, with a word-level tokenizer built
from the collected text, and write the next command after LONDI's shared prompt
(:func:`londi.agents.prompt.build_prompt`). Unlike BabyAI's six one-token actions, game commands
are several words long, so the loss is the language-model cross-entropy on all of the command's
tokens, and the policy scores each admissible command by the sum of its tokens'
log-probabilities (:class:`londi.agents.lm.HFPolicy`).

Labels come from the env's expert, **an oracle** in both games:

* **TextWorld**: ``policy_commands`` (TextWorld replans the winning command sequence from the
  current game state). Expert demonstrations on games made with ``tw-make`` from seeds
  :data:`TW_TRAIN_GAME_SEEDS` (never the registered ids' games, tw-make seeds 1-5), then DAgger
  rounds: the model plays (the expert acts with probability ``beta``), the expert labels every
  visited state. Held-out evaluation: the registered id's games (seeds 1-5), never trained on.
* **ScienceWorld**: the package's gold path. It is an open-loop plan that stops labelling once
  the agent leaves it, so there is no DAgger: gold-path demonstrations on ``train``-split
  variations only. Gold actions missing from the valid-action list (``open door to ...`` after
  the ``easy`` simplification opened every door) are played but not learned, and dropped from
  the history the model sees, since a model only ever plays admissible actions. The saved
  checkpoints carry a candidate filter (:class:`londi.agents.candidates.CandidateFilter`: the
  oracle's verbs and the 48 actions that overlap most with the context), so a call scores a
  short list instead of ScienceWorld's hundreds to thousands of valid actions. Variations drawn
  by the first :data:`SW_EXCLUDED_HELDOUT` held-out episodes of ``londi eval`` (run seed 0)
  are excluded from training. Held-out evaluation: ``dev``-split variations.

QUICK is one narrow layer without history; DEEPTHINK has more layers, a wider model and the last
observations and actions in its prompt. After training, each model plays held-out episodes in
control (the same code path as any checkpoint), and ``MODEL_CARD.md``, ``londi_policy.json``
and ``SHA256SUMS`` are written next to the weights.

Commands::

    python scripts/train_text_lms.py textworld                  # agents/models/textworld-{quick,deepthink}
    python scripts/train_text_lms.py scienceworld               # agents/models/scienceworld-{quick,deepthink}
    python scripts/train_text_lms.py textworld --small --out /tmp/m   # a minute-long pipeline (tests)
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lms import RandomPolicy, wilson
from train_lms import Learner, ModelSpec, _prompt_text, apply_overrides

logger = logging.getLogger("train_text_lms")

GAMES = ("textworld", "scienceworld")
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
#: Training episodes (TextWorld env seeds; ScienceWorld variation draws) start here.
TRAIN_SEED_START = 1_000_000
HELDOUT_SEED_START = 500_000
SPECIAL_TOKENS = ("<pad>", "<unk>", "<eos>")
#: Words: runs of letters, runs of digits, single other characters (spaces dropped), lower-cased.
PRETOKENIZER_PATTERN = r"[a-z]+|\d+|[^\sa-z\d]"
SW_MAX_CANDIDATES = 48

# A tiny one-layer QUICK without history; a deeper, wider DEEPTHINK that reads the last steps.
_QUICK = dict(name="quick", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, history_length=0,
              lr=3e-3, augment="none", aux_weight=0.0, match_weight=0.0, temperature=0.5, sample=True, batch_size=32)
_DEEP = dict(name="deepthink", hidden_size=64, num_layers=2, num_heads=4, intermediate_size=192, history_length=1,
             lr=2e-3, augment="none", aux_weight=0.0, match_weight=0.0, temperature=0.5, sample=True, batch_size=32)
SPECS: dict[str, dict[str, ModelSpec]] = {
    # TextWorld: one oracle episode per training game (demo_episodes is not used); DAgger
    # episodes are rounded to whole passes over the games.
    "textworld": {
        "quick": ModelSpec(**_QUICK, demo_episodes=40, dagger_rounds=0, dagger_episodes=0, dagger_beta=0.5,
                           epochs_demo=12.0, epochs_round=0.0),
        "deepthink": ModelSpec(**_DEEP, demo_episodes=40, dagger_rounds=1, dagger_episodes=40, dagger_beta=0.3,
                               epochs_demo=12.0, epochs_round=6.0),
    },
    # demo_episodes per task. 40 demonstrations and no DAgger gave a DEEPTHINK no better than
    # chance on held-out variations; 150 plus one DAgger round made the shipped pair.
    "scienceworld": {
        "quick": ModelSpec(**_QUICK, demo_episodes=150, dagger_rounds=0, dagger_episodes=0, dagger_beta=0.0,
                           epochs_demo=10.0, epochs_round=0.0),
        "deepthink": ModelSpec(**_DEEP, demo_episodes=150, dagger_rounds=1, dagger_episodes=60, dagger_beta=0.3,
                               epochs_demo=20.0, epochs_round=8.0),
    },
}
SMALL = {
    game: {
        "quick": replace(specs["quick"], demo_episodes=3, epochs_demo=15.0),
        "deepthink": replace(specs["deepthink"], hidden_size=48, num_layers=2, num_heads=2, intermediate_size=96,
                             demo_episodes=3, dagger_rounds=1 if game == "textworld" else 0, dagger_episodes=3,
                             epochs_demo=15.0, epochs_round=5.0),
    }
    for game, specs in SPECS.items()
}


# ------------------------------------------------------------------------------ envs
@dataclass
class GameSetup:
    """Where a pair's training and held-out episodes come from."""

    game: str
    train_env_kwargs: list[dict]
    """One entry per env to train on: ``make_env`` id and keyword arguments."""
    eval_env_kwargs: list[dict]
    """One entry per env of the held-out evaluation."""
    excluded: dict[str, list[int]] = field(default_factory=dict)
    """ScienceWorld: task -> variations kept out of training (drawn by ``londi eval``)."""


def textworld_setup(n_train_games: int, games_dir: Path) -> GameSetup:
    from londi.envs.textworld import make_game

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

    from londi.evaluate import heldout_seeds

    out = set()
    for run_seed in (0,):
        for s in heldout_seeds(run_seed, n):
            rng, _ = np_random(int(s))
            out.add(int(variations[int(rng.integers(len(variations)))]))
    return sorted(out)


def scienceworld_setup(tasks: list[str]) -> GameSetup:
    from londi.envs import make_env

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
    from londi.envs import make_env

    kw = dict(kwargs)
    return make_env(kw.pop("id"), disable_env_checker=True, **kw)


# ------------------------------------------------------------------------------ data
@dataclass
class Sample:
    obs: object  # TextObservation (history cleaned of non-admissible oracle moves, see _clean)
    label: str  # the oracle's command


def _clean(obs, dropped: set[int]):
    """``obs`` with the history entries at absolute steps in ``dropped`` removed (see module doc)."""
    if not dropped:
        return obs
    first = obs.step - len(obs.history)
    hist = tuple(h for k, h in enumerate(obs.history) if first + k not in dropped)
    return replace(obs, history=hist)


def play(env, seed: int, *, policy=None, beta: float = 1.0, rng=None, reset_options=None):
    """One episode; the oracle labels every state; returns ``(samples, success, return)``.

    With ``policy``, the policy acts except with probability ``beta`` per step (the oracle acts);
    without, the oracle plays (ScienceWorld: the gold path, also its non-admissible commands,
    which are not learned).
    """
    _, info = env.reset(seed=int(seed), options=reset_options)
    obs = info["text_obs"]
    samples, dropped, ret, done = [], set(), 0.0, False
    carried = None  # the text a model would still see after dropped moves (not "The door is already open.")
    if policy is not None:
        policy.reset()
        policy.set_seed(int(seed))
    while not done:
        oracle = obs.oracle_action
        clean = _clean(obs, dropped)
        if carried is not None:
            clean = replace(clean, text=carried)
        if oracle is not None and oracle in obs.admissible_actions:
            samples.append(Sample(clean, oracle))
        if policy is None or (oracle is not None and rng is not None and rng.random() < beta):
            if oracle is None:
                break  # the open-loop gold path ended without finishing
            action = oracle
            if oracle not in obs.admissible_actions:
                dropped.add(obs.step)
                carried = clean.text
            else:
                carried = None
        else:
            carried = None
            action = policy.act(clean).action
        _, r, term, trunc, info = env.step(action)
        obs, ret, done = info["text_obs"], ret + r, term or trunc
    return samples, bool(info.get("success", False)), ret


def collect(setup: GameSetup, n_episodes: int, seed_start: int, *, policy=None, beta: float = 1.0, rng=None,
            desc: str = "collect"):
    """``n_episodes`` per training env (TextWorld: one per training game and pass)."""
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
                    raise SystemExit(f"{task}: every train-split variation is drawn by the held-out episodes")
            n_games = len(kwargs.get("game_files", [None]))
            total = n_episodes * n_games if setup.game == "textworld" else n_episodes
            for i in tqdm(range(total), desc=f"{desc} {k + 1}/{len(setup.train_env_kwargs)}", leave=False):
                seed = seed_start + 1000 * k + i
                options = None
                if setup.game == "textworld":
                    options = {"game": i % n_games}
                else:
                    options = {"variation": int(allowed[np.random.default_rng(seed).integers(len(allowed))])}
                new, ok, _ = play(env, seed, policy=policy, beta=beta, rng=rng, reset_options=options)
                samples += new
                succ += int(ok)
                n += 1
        finally:
            env.close()
    return samples, succ, n


# ------------------------------------------------------------------------------ tokenizer
def build_tokenizer(texts):
    """A lower-casing word-level tokenizer whose vocabulary is every word of ``texts``."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Split(Regex(PRETOKENIZER_PATTERN), behavior="removed", invert=True)
    norm = normalizers.Lowercase()
    words = set()
    for text in texts:
        words.update(piece for piece, _ in pre.pre_tokenize_str(norm.normalize_str(text)))
    words.difference_update(SPECIAL_TOKENS)
    vocab = {tok: i for i, tok in enumerate(list(SPECIAL_TOKENS) + sorted(words))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.normalizer = norm
    core.pre_tokenizer = pre
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>",
                                   model_max_length=1024)


# ------------------------------------------------------------------------------ model
class TextLearner(Learner):
    """A model being trained on multi-token commands (``Learner``'s saving, its own loss and batches).

    Each example is ``prompt tokens + command tokens``; the loss is the cross-entropy of every
    command token given what precedes it, the quantity :class:`~londi.agents.lm.HFPolicy` sums to
    score a command.
    """

    def __init__(self, spec: ModelSpec, tokenizer, seed: int, *, max_positions: int = 1024) -> None:
        import torch
        from londi.agents.prompt import build_prompt
        from transformers import LlamaConfig, LlamaForCausalLM

        self.spec, self.tokenizer, self.device = spec, tokenizer, "cpu"
        self._build_prompt = build_prompt
        self.max_positions = max_positions
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
            num_key_value_heads=spec.num_heads, max_position_embeddings=max_positions, tie_word_embeddings=True,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        )
        torch.manual_seed(seed)
        self.model = LlamaForCausalLM(config)
        self.examples: list[tuple[list[int], int]] = []  # (ids, length of the prompt part)

    def add(self, samples: list[Sample]) -> None:
        prompts = self.tokenizer([self.prompt(s.obs) for s in samples], add_special_tokens=False)["input_ids"]
        actions = self.tokenizer([s.label for s in samples], add_special_tokens=False)["input_ids"]
        for p, a in zip(prompts, actions):
            p = p[-(self.max_positions - len(a)):]  # HFPolicy keeps the prompt's end too
            self.examples.append((p + a, len(p)))

    def _loss_batch(self, batch):
        import torch
        import torch.nn.functional as F

        width = max(len(ids) for ids, _ in batch)
        inp = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)
        rows, cols, targets = [], [], []
        for r, (ids, p) in enumerate(batch):
            inp[r, : len(ids)] = torch.tensor(ids)
            for k in range(p, len(ids)):  # the state before token k predicts token k
                rows.append(r)
                cols.append(k - 1)
                targets.append(ids[k])
        # Right padding, causal attention: real tokens never see the pads after them.
        h = self.model.model(input_ids=inp).last_hidden_state
        logits = self.model.lm_head(h[torch.tensor(rows), torch.tensor(cols)])
        return F.cross_entropy(logits, torch.tensor(targets))

    def train(self, epochs: float, rng: np.random.Generator, desc: str) -> float:
        """``epochs`` passes over the data (length-bucketed batches, AdamW, warm-up + cosine)."""
        import torch
        from tqdm.auto import tqdm

        spec, n = self.spec, len(self.examples)
        steps = max(1, int(math.ceil(epochs * n / spec.batch_size)))
        order: list[list[int]] = []
        while len(order) < steps:
            perm = sorted(rng.permutation(n), key=lambda i: len(self.examples[i][0]))
            batches = [perm[b : b + spec.batch_size] for b in range(0, n, spec.batch_size)]
            order += [batches[i] for i in rng.permutation(len(batches))]
        order = order[:steps]
        opt = torch.optim.AdamW(self.model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay, betas=(0.9, 0.98))
        warm = max(1, steps // 20)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / warm if s < warm else 0.05 + 0.475 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))
        )
        self.model.train()
        ema = None
        for idx in (bar := tqdm(order, desc=desc, leave=False)):
            loss = self._loss_batch([self.examples[i] for i in idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            opt.step()
            sched.step()
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            bar.set_postfix(loss=f"{ema:.3f}", refresh=False)
        self.model.eval()
        return float(ema)

    def save_checkpoint(self, folder: Path, *, env_id: str, candidates: dict | None) -> None:
        """``Learner.save`` plus the candidate filter in ``londi_policy.json``."""
        self.save(folder, {"env_id": env_id})
        path = folder / "londi_policy.json"
        settings = json.loads(path.read_text())
        for key in ("aux_weight", "match_weight", "augment", "lm_loss_weight"):  # BabyAI-only fields
            settings["spec"].pop(key, None)
        if candidates is not None:
            settings["candidates"] = candidates
        path.write_text(json.dumps(settings, indent=2) + "\n")

    def policy(self, candidates: dict | None, seed: int):
        """This model as the policy class that will load it (through a temporary checkpoint)."""
        from londi.agents.lm import load_policy

        tmp = Path(tempfile.mkdtemp(prefix="text_lm_"))
        self.save_checkpoint(tmp / self.spec.name, env_id="", candidates=candidates)
        policy = load_policy(tmp / self.spec.name, device="cpu", verify=False, seed=seed)
        shutil.rmtree(tmp)
        return policy


# ------------------------------------------------------------------------------ training
def fit_candidates(game: str, samples: list[Sample]) -> dict | None:
    """ScienceWorld: the candidate filter (oracle verbs) saved with the models; TextWorld: none."""
    if game != "scienceworld":
        return None
    from londi.agents.candidates import CandidateFilter

    return CandidateFilter.fit([s.label for s in samples], max_candidates=SW_MAX_CANDIDATES).to_dict()


def train_model(spec: ModelSpec, setup: GameSetup, *, seed: int, out_dir: Path, prefix: str,
                demos: tuple[list[Sample], int, int]) -> dict:
    """Train ``spec`` on the demonstrations (plus DAgger rounds) and save it; returns its log."""
    rng = np.random.default_rng(seed)
    t0 = time.time()
    samples, succ, n = demos
    candidates = fit_candidates(setup.game, samples)
    texts = [_prompt_text(s.obs, spec) for s in samples]
    texts += [a for s in samples for a in s.obs.admissible_actions]
    learner = TextLearner(spec, build_tokenizer(texts), seed)
    learner.add(samples)
    loss = learner.train(spec.epochs_demo, rng, desc=f"{spec.name}: train on oracle demos")
    log = {"spec": asdict(spec), "seed": seed, "candidates": candidates, "vocab_size": len(learner.tokenizer),
           "phases": [{"phase": "demos", "episodes": n, "states": len(samples), "rollin_success": succ / max(n, 1),
                       "beta": 1.0, "loss": loss, "elapsed_s": time.time() - t0}]}
    logger.info("%s: %d oracle states from %d episodes, loss %.3f (%.0f s)", spec.name, len(samples), n, loss,
                time.time() - t0)
    for r in range(spec.dagger_rounds):
        beta = spec.dagger_beta * 0.5**r
        policy = learner.policy(candidates, seed)
        new, succ_r, n_r = collect(setup, spec.dagger_episodes // max(1, _n_games(setup)) or 1,
                                   TRAIN_SEED_START + 100_000 * (r + 1) + 10_000 * seed, policy=policy, beta=beta,
                                   rng=rng, desc=f"{spec.name}: DAgger {r + 1} roll-in")
        learner.add(new)
        loss = learner.train(spec.epochs_round, rng, desc=f"{spec.name}: DAgger {r + 1} train")
        log["phases"].append({"phase": f"dagger{r + 1}", "beta": beta, "episodes": n_r, "states": len(new),
                              "rollin_success": succ_r / max(n_r, 1), "loss": loss, "elapsed_s": time.time() - t0})
        logger.info("%s: DAgger %d: beta %.2f, roll-in success %.3f, +%d states, loss %.3f (%.0f s)", spec.name, r + 1,
                    beta, succ_r / max(n_r, 1), len(new), loss, time.time() - t0)
    log.update(train_states=len(learner.examples), train_seconds=time.time() - t0,
               parameters=int(learner.model.num_parameters()))
    learner.save_checkpoint(out_dir / f"{prefix}-{spec.name}", env_id=",".join(k["id"] for k in setup.train_env_kwargs),
                            candidates=candidates)
    return log


def _n_games(setup: GameSetup) -> int:
    return len(setup.train_env_kwargs[0].get("game_files", [None])) if setup.game == "textworld" else 1


# ------------------------------------------------------------------------------ evaluation
def evaluate(policy, setup: GameSetup, episodes: int) -> dict:
    """Held-out episodes with ``policy`` in control on every eval env: success, return, cost per call."""
    from tqdm.auto import tqdm

    per_env, dev, wall, n_actions, n_scored = {}, [], [], [], []
    for kwargs in setup.eval_env_kwargs:
        env = make(kwargs)
        succ, rets, steps = 0, [], []
        try:
            for i in tqdm(range(episodes), desc=f"eval {policy.name} on {kwargs['id']}", leave=False):
                seed = HELDOUT_SEED_START + i
                policy.reset()
                if hasattr(policy, "set_seed"):
                    policy.set_seed(seed)
                _, info = env.reset(seed=seed)
                obs, ret, n, done = info["text_obs"], 0.0, 0, False
                while not done:
                    d = policy.act(obs)
                    dev.append(d.record.device_seconds)
                    wall.append(d.record.wall_seconds)
                    n_actions.append(len(obs.admissible_actions))
                    n_scored.append(int(np.count_nonzero(d.probs)) if d.probs is not None else 0)
                    _, r, term, trunc, info = env.step(d.action)
                    obs, ret, n, done = info["text_obs"], ret + r, n + 1, term or trunc
                succ += int(info.get("success", False))
                rets.append(ret)
                steps.append(n)
        finally:
            env.close()
        lo, hi = wilson(succ, episodes)
        per_env[kwargs["id"]] = {"episodes": episodes, "success": succ / episodes, "success_ci95": [lo, hi],
                                 "mean_return": float(np.mean(rets)), "mean_steps": float(np.mean(steps))}
    return {"model": policy.name, "per_env": per_env, "calls": len(dev),
            "device_ms_per_call": 1000 * float(np.mean(dev)) if dev else float("nan"),
            "wall_ms_per_call": 1000 * float(np.mean(wall)) if wall else float("nan"),
            "admissible_per_call": float(np.mean(n_actions)) if n_actions else float("nan"),
            "scored_per_call": float(np.mean(n_scored)) if n_scored else float("nan"),
            "parameters": int(getattr(policy, "n_parameters", 0))}


def results_table(results: list[dict]) -> str:
    envs = list(results[0]["per_env"])
    head = "| model | " + " | ".join(f"{e}: success (95% CI), mean return" for e in envs)
    head += " | device-ms/call | actions admissible / scored per call | parameters |\n"
    head += "|---|" + "---|" * len(envs) + "---|---|---|\n"
    rows = []
    for r in results:
        cells = [f"{r['per_env'][e]['success']:.2f} ({r['per_env'][e]['success_ci95'][0]:.2f}-"
                 f"{r['per_env'][e]['success_ci95'][1]:.2f}), {r['per_env'][e]['mean_return']:.2f}" for e in envs]
        rows.append(f"| {r['model']} | " + " | ".join(cells) + f" | {r['device_ms_per_call']:.2f} | "
                    f"{r['admissible_per_call']:.0f} / {r['scored_per_call']:.0f} | {r['parameters']:,} |")
    return head + "\n".join(rows) + "\n"


def model_card(game: str, spec: ModelSpec, log: dict, setup: GameSetup, results: list[dict], command: str,
               episodes: int) -> str:
    phases = "\n".join(
        f"| {p['phase']} | {p['beta']:.2f} | {p['episodes']} | {p['states']} | {p['rollin_success']:.3f} | "
        f"{p['loss']:.3f} | {p['elapsed_s']:.0f} |" for p in log["phases"])
    if game == "textworld":
        data = (f"TextWorld `tw-make {TW_CHALLENGE}` games (`tw-simple --rewards dense --goal detailed`) made from "
                f"seeds {TW_TRAIN_GAME_SEEDS.start}-{TW_TRAIN_GAME_SEEDS.start + len(setup.train_env_kwargs[0]['game_files']) - 1}. "
                "Labels: TextWorld's `policy_commands`, **an oracle** that replans from the game state. "
                f"Held-out: `{TW_ENV_ID}` (its games are tw-make seeds 1-5, never trained on), episode seeds "
                f"{HELDOUT_SEED_START:,}+i.")
        cand = "none (TextWorld lists 8-30 commands per step; every one is scored)"
    else:
        tasks = ", ".join(f"`{k['id']}`" for k in setup.train_env_kwargs)
        data = (f"ScienceWorld {tasks}, `easy` simplifications, `train`-split variations, minus the variations that "
                f"`londi eval` draws in its first {SW_EXCLUDED_HELDOUT} held-out episodes of run seed 0. Labels: "
                "the package's gold path, **an oracle** (open-loop plan; gold commands missing from the valid-action "
                "list are played but not learned). Held-out: `dev`-split variations, episode seeds "
                f"{HELDOUT_SEED_START:,}+i, at most {SW_EVAL_MAX_STEPS} steps.")
        cand = (f"`londi.agents.candidates.CandidateFilter` saved in `londi_policy.json` (`load_policy` returns a "
                f"`CandidatePolicy`): verbs {', '.join(log['candidates']['verbs'])}; at most "
                f"{log['candidates']['max_candidates']} candidates, ranked by word overlap with goal, observation, "
                "inventory and the last 3 steps")
    return f"""# {game}-{spec.name}: a behaviour-cloned text policy for {'TextWorld' if game == 'textworld' else 'ScienceWorld'}

The {spec.name.upper()} half of LONDI's {game} pair: a causal LM (Llama architecture, trained from
scratch in this project) that scores each admissible command after LONDI's shared prompt
(`londi.agents.prompt.build_prompt`) by the sum of its tokens' log-probabilities. Load it with
`londi.agents.lm.load_policy("{game}-{spec.name}")` or `AutoModelForCausalLM.from_pretrained(<this folder>)`.

## Model

| | |
|---|---|
| architecture | LlamaForCausalLM, {spec.num_layers} layer(s), d_model {spec.hidden_size}, {spec.num_heads} heads, SwiGLU {spec.intermediate_size}, tied embeddings |
| parameters | {log['parameters']:,} |
| tokenizer | lower-cased word level ({log['vocab_size']} tokens, built from the training prompts and admissible commands; other words map to `<unk>`) |
| prompt | `build_prompt(obs, history_length={spec.history_length}, list_actions={spec.list_actions})` (saved in `londi_policy.json`) |
| decoding | sampled from softmax(log-likelihood / {spec.temperature}) (`sample={spec.sample}`), seeded per episode |
| candidate list | {cand} |

## Training data and procedure

{data}

Loss: cross-entropy of every command token after the prompt. AdamW, peak learning rate {spec.lr},
batch {spec.batch_size}, {spec.epochs_demo} epoch(s) on the demonstrations, {spec.epochs_round} after each
DAgger round ({spec.dagger_rounds} round(s) of {spec.dagger_episodes} episodes, the oracle acting with
probability beta). {log['train_states']:,} labelled states in all; seed {log['seed']}, 1 torch thread,
{log['train_seconds']:.0f} s on a 2-core CPU container.

| phase | beta | episodes | states | success of the roll-in (demos: oracle) | loss | elapsed s |
|---|---|---|---|---|---|---|
{phases}

Training command: `{command}`

## Held-out evaluation

{episodes} episodes per env with each model in control, through the class `load_policy` returns
(the same code path as `londi eval`), 1 torch thread, device-ms = process CPU time per call.
Measured {time.strftime("%Y-%m-%d")} on a 2-core CPU container (shared with other jobs):

{results_table(results)}
## Intended use and limits

Built for LONDI's TextWorld/ScienceWorld experiments: a cheap/strong pair trained in minutes on
one CPU core, with nothing downloaded. It knows only the games above and their words; it is not
a general language model.
"""


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a TextWorld or ScienceWorld QUICK/DEEPTHINK pair "
                                                 "(behaviour cloning from the oracle, DAgger for TextWorld).")
    parser.add_argument("game", choices=GAMES)
    parser.add_argument("--tasks", nargs="+", default=list(SW_TASKS), help="ScienceWorld tasks")
    parser.add_argument("--train-games", type=int, default=len(TW_TRAIN_GAME_SEEDS), help="TextWorld training games")
    parser.add_argument("--games-dir", default="runs/text_lms/tw_games", help="where the training games are made")
    parser.add_argument("--models", nargs="+", default=["quick", "deepthink"], choices=["quick", "deepthink"])
    parser.add_argument("--out", default=None, help="output folder (default: the package's models folder)")
    parser.add_argument("--small", action="store_true", help="tiny data and models (tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--eval-episodes", type=int, default=20, help="held-out episodes per env (0: skip)")
    parser.add_argument("--log-json", default=None, help="also write the training and evaluation log here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="MODEL.FIELD=VALUE",
                        help="override a ModelSpec field, e.g. --set deepthink.epochs_demo=8 (repeatable)")
    args = parser.parse_args(argv)
    if args.threads <= 0 or args.eval_episodes < 0 or args.train_games <= 0:
        parser.error("--threads and --train-games must be positive, --eval-episodes >= 0")
    if args.game == "textworld" and args.train_games > len(TW_TRAIN_GAME_SEEDS):
        parser.error(f"--train-games: at most {len(TW_TRAIN_GAME_SEEDS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    import torch
    from londi.agents.lm import load_policy, shipped_models_dir, write_checksums
    from londi.envs.scienceworld import resolve_task

    torch.set_num_threads(args.threads)
    out_dir = Path(args.out) if args.out else shipped_models_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = apply_overrides((SMALL if args.small else SPECS)[args.game], args.overrides, parser)
    command = "python scripts/train_text_lms.py " + " ".join(argv if argv is not None else sys.argv[1:])
    t0 = time.time()
    if args.game == "textworld":
        setup = textworld_setup(args.train_games, Path(args.games_dir))
    else:
        setup = scienceworld_setup([resolve_task(t) for t in args.tasks])
    # One set of oracle demonstrations for both models. TextWorld: one oracle episode per training
    # game (the oracle and the games are deterministic: more passes repeat it); ScienceWorld: the
    # larger demo_episodes of the two models, per task.
    n_demo = 1 if args.game == "textworld" else max(specs[m].demo_episodes for m in args.models)
    demos = collect(setup, n_demo, TRAIN_SEED_START + 10_000 * args.seed, desc="oracle demos")
    logger.info("oracle demos: %d states, %d episodes, oracle success %.3f", len(demos[0]), demos[2],
                demos[1] / max(demos[2], 1))
    logs = {}
    for name in args.models:
        logs[name] = train_model(specs[name], setup, seed=args.seed, out_dir=out_dir, prefix=args.game, demos=demos)
    results = []
    if args.eval_episodes:
        for name in args.models:
            policy = load_policy(out_dir / f"{args.game}-{name}", name=f"{args.game}-{name}", device="cpu")
            results.append(evaluate(policy, setup, args.eval_episodes))
        results.append(evaluate(RandomPolicy(seed=args.seed), setup, args.eval_episodes))
        print(results_table(results))
    for name in args.models:
        folder = out_dir / f"{args.game}-{name}"
        if results:
            (folder / "MODEL_CARD.md").write_text(
                model_card(args.game, specs[name], logs[name], setup, results, command.strip(), args.eval_episodes))
        write_checksums(folder)
    if args.log_json:
        Path(args.log_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.log_json).write_text(json.dumps({"logs": logs, "results": results, "command": command.strip(),
                                                   "excluded_variations": setup.excluded,
                                                   "total_seconds": time.time() - t0}, indent=2, default=str))
    logger.info("done in %.0f s; models in %s", time.time() - t0, out_dir)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
