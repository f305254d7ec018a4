"""The training loop of the LMs trained here, and the DAgger loop around it.

:class:`Learner` is a small Llama causal LM built from scratch for a tokenizer and a
:class:`~londi.agents.training.specs.ModelSpec`, with the data collected so far, and the
training loop every model uses: length-bucketed shuffled batches, AdamW, linear warm-up then a
cosine decay to 5% of the peak rate, gradient clipping at 1. A subclass says what an example is
(:meth:`Learner.add`, :meth:`Learner.example_length`) and what the loss of a batch is
(:meth:`Learner.batch_loss`): :class:`~londi.agents.training.babyai.ActionLearner` (one action
token, auxiliary heads) and :class:`~londi.agents.training.textgames.CommandLearner` (every
token of a multi-token command).

:func:`run_dagger` is the DAgger schedule: per round, a roll-in (who plays is the caller's
function of the round and ``beta``, see :mod:`~londi.agents.training.rollout`), the new states
aggregated, training continued on the aggregate.
"""
from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from londi.agents.lm import load_policy
from londi.agents.prompt import build_prompt
from londi.agents.training.checkpoint import policy_settings, save_checkpoint
from londi.agents.training.rollout import Collected, Sample
from londi.agents.training.specs import ModelSpec

logger = logging.getLogger("londi.agents.training")


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, steps: int, rng: np.random.Generator,
                            chunk_batches: int | None = None) -> list[list[int]]:
    """``steps`` batches of example indices: passes over a random permutation, sorted by length
    within chunks of ``chunk_batches`` batches (``None``: the whole pass) so that a batch needs
    little padding, cut into batches whose order is shuffled again."""
    n = len(lengths)
    chunk = n if chunk_batches is None else batch_size * chunk_batches
    order: list[list[int]] = []
    while len(order) < steps:
        perm = rng.permutation(n)
        batches = []
        for c in range(0, n, chunk):
            part = sorted(perm[c : c + chunk], key=lambda i: lengths[i])
            batches += [part[b : b + batch_size] for b in range(0, len(part), batch_size)]
        order += [batches[i] for i in rng.permutation(len(batches))]
    return order[:steps]


def warmup_cosine(step: int, steps: int, warm: int) -> float:
    """The learning rate's factor at ``step``: linear warm-up over ``warm`` steps, then a cosine
    decay from 1 to 0.05 at ``steps``."""
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


class Learner:
    """A model being trained, its tokenizer, its prompt settings and its data so far."""

    #: Sort by length within chunks of this many batches (``None``: within a whole pass).
    chunk_batches: int | None = 32

    def __init__(self, spec: ModelSpec, tokenizer: Any, seed: int, *, device: str = "cpu",
                 max_positions: int = 1024) -> None:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        self.spec = spec
        self.tokenizer = tokenizer
        self.device = device
        self.max_positions = max_positions
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=spec.hidden_size,
            intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads,
            num_key_value_heads=spec.num_heads,
            max_position_embeddings=max_positions,
            tie_word_embeddings=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=None,
        )
        torch.manual_seed(seed)
        self.model = LlamaForCausalLM(config).to(device)

    # ---------------------------------------------------------------- prompts and data
    def prompt(self, obs) -> str:
        """The prompt the saved policy will build for ``obs`` (:func:`londi.agents.prompt.build_prompt`)."""

        return build_prompt(obs, history_length=self.spec.history_length, list_actions=self.spec.list_actions)

    def encode(self, observations) -> list[list[int]]:
        """Token ids of the prompts of ``observations``."""
        return self.tokenizer([self.prompt(o) for o in observations], add_special_tokens=False)["input_ids"]

    def add(self, samples: list[Sample]) -> None:
        """Add labelled states to the training data."""
        raise NotImplementedError

    def __len__(self) -> int:
        """Examples in the training data."""
        raise NotImplementedError

    def example_length(self, i: int) -> int:
        """Tokens of example ``i`` (batches group examples of similar length)."""
        raise NotImplementedError

    def batch_loss(self, indices: list[int], rng: np.random.Generator):
        """The loss (a scalar tensor) of the examples ``indices``; ``rng`` for per-sample augmentation."""
        raise NotImplementedError

    def parameters(self) -> list:
        """What the optimizer trains (and clips): the model's parameters, plus any training-only heads."""
        return list(self.model.parameters())

    # ---------------------------------------------------------------- training
    def lr_factor(self, step: int, steps: int, warm: int) -> float:
        """The learning rate's factor at ``step`` (:func:`warmup_cosine`)."""
        return warmup_cosine(step, steps, warm)

    def train(self, epochs: float, rng: np.random.Generator, desc: str = "train") -> float:
        """``epochs`` passes over all data so far; returns the loss (an exponential moving average
        over the last batches)."""
        import torch
        from tqdm.auto import tqdm

        spec = self.spec
        n = len(self)
        steps = max(1, int(math.ceil(epochs * n / spec.batch_size)))
        lengths = [self.example_length(i) for i in range(n)]
        order = length_bucketed_batches(lengths, spec.batch_size, steps, rng, self.chunk_batches)
        params = self.parameters()
        opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay, betas=(0.9, 0.98))
        warm = max(1, steps // 20)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: self.lr_factor(step, steps, warm))
        self.model.train()
        bar = tqdm(order, desc=desc, leave=False)
        ema = None
        for idx in bar:
            loss = self.batch_loss(idx, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            value = loss.item()
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            bar.set_postfix(loss=f"{ema:.3f}", refresh=False)
        self.model.eval()
        return float(ema)

    # ---------------------------------------------------------------- saving
    #: ``ModelSpec`` fields left out of the saved ``londi_policy.json``.
    saved_without: tuple[str, ...] = ()

    def save(self, folder: str | Path, *, trained_on: str | None, candidates: dict | None = None) -> Path:
        """Save weights, tokenizer and prompt settings into ``folder`` (replaced atomically)."""
        settings = policy_settings(self.spec, trained_on=trained_on, drop_fields=self.saved_without,
                                   candidates=candidates)
        return save_checkpoint(folder, self.model, self.tokenizer, settings)

    def as_policy(self, seed: int, candidates: dict | None = None, **kwargs: Any):
        """This model as the ``TextPolicy`` that will load it (saved to a temporary folder and
        loaded with :func:`londi.agents.lm.load_policy`), e.g. to roll in with it."""

        tmp = Path(tempfile.mkdtemp(prefix="londi_lm_"))
        try:
            self.save(tmp / self.spec.name, trained_on="", candidates=candidates)
            return load_policy(tmp / self.spec.name, device="cpu", verify=False, seed=seed, **kwargs)
        finally:
            shutil.rmtree(tmp)


def phase_entry(phase: str, beta: float, collected: Collected, loss: float, t0: float) -> dict:
    """One row of a training log's ``phases``."""
    return {"phase": phase, "beta": beta, "episodes": collected.episodes, "states": len(collected.samples),
            "rollin_success": collected.successes / max(collected.episodes, 1), "loss": loss,
            "elapsed_s": time.time() - t0}


def run_dagger(learner: Learner, rng: np.random.Generator, rollin: Callable[[int, float], Collected], *,
               log: dict, t0: float, after_round: Callable[[int], None] | None = None) -> None:
    """The spec's DAgger rounds: round ``r`` (0-based) rolls in with ``rollin(r, beta)``, ``beta``
    halving every round (:meth:`ModelSpec.dagger_beta_at`), adds the labelled states and trains
    ``epochs_round`` passes over the aggregate; each round is appended to ``log["phases"]``, then
    ``after_round(r)`` is called (e.g. to save the round's model)."""
    spec = learner.spec
    for r in range(spec.dagger_rounds):
        beta = spec.dagger_beta_at(r)
        new = rollin(r, beta)
        learner.add(new.samples)
        loss = learner.train(spec.epochs_round, rng, desc=f"{spec.name}: DAgger {r + 1} train")
        log["phases"].append(phase_entry(f"dagger{r + 1}", beta, new, loss, t0))
        logger.info("%s: DAgger %d: beta %.2f, roll-in success %.3f, +%d states (total %d), loss %.3f (%.0f s)",
                    spec.name, r + 1, beta, new.successes / max(new.episodes, 1), len(new.samples), len(learner),
                    loss, time.time() - t0)
        if after_round is not None:
            after_round(r)
