#!/usr/bin/env python
"""Train the shipped LM pair (QUICK and DEEPTHINK) by behaviour cloning from the BabyAI expert.

Both models are causal language models in Hugging Face format (a small Llama trained from
scratch, with a word-level tokenizer wrapped as ``PreTrainedTokenizerFast``), trained to write
the expert's action after the shared prompt (:func:`londi.agents.prompt.build_prompt`):

1. **Expert demonstrations**: episodes played by the expert (Minigrid's BabyAIBot, **an
   oracle**), every state labelled with its action.
2. **DAgger rounds**: episodes played by the model being trained (mixed with the expert with a
   probability ``beta`` that halves every round), every visited state labelled by the expert,
   so that the model learns to recover from states off the expert's path. The data are
   aggregated and training continues on the aggregate.
3. **Held-out evaluation** through :class:`londi.agents.lm.HFPolicy` (the code path every
   checkpoint uses), on seeds never used in training, then a model card, the prompt settings
   (``londi_policy.json``) and ``SHA256SUMS`` are written next to the weights.

The loss is the language-model loss on the action token (the prompt tokens are context only);
the tokenizer keeps each action (``turn left``, ``go forward``, ...) as one token, so scoring an
action is one next-token probability.

Commands::

    python scripts/train_lms.py                      # the default pair into the package (agents/models/)
    python scripts/train_lms.py --small --out /tmp/m # the pipeline in under 2 minutes (tests)

Training episodes use seeds from :data:`TRAIN_SEED_START` (1,000,000) upwards; the held-out
evaluation uses ``scripts/bench_lms.py``'s seeds (500,000 + i). The same seed, thread count and
package versions give the same checkpoints.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for bench_lms when imported by tests
from bench_lms import (  # noqa: E402
    HELDOUT_SEED_START,
    EvalResult,
    agreement_table,
    evaluate_policy,
    expert_state_agreement,
    markdown_table,
)

logger = logging.getLogger("train_lms")

#: Training episodes use seeds from here upwards (held-out evaluation seeds lie below).
TRAIN_SEED_START = 1_000_000
#: Pre-tokenization into words, except for phrases that become single tokens: the action names
#: (so scoring an action is one next-token probability), "You see a", the mission ("go to the
#: red ball"), a coloured object ("red ball", "locked blue door") and a step offset ("2 steps
#: left", "1 step right and 3 steps forward"). The phrases make the prompts about a third as
#: long, and they shorten the chain of attention steps between the mission and the matching
#: line of the observation (mission token -> the offset token that follows the same object).
_COLOURS = "red|green|blue|purple|yellow|grey"
_TYPES = "ball|box|key|door"
_OFFSET = r"\d+ steps? (?:left|right) and \d+ steps? forward|\d+ steps? (?:left|right|forward)"
PRETOKENIZER_PATTERN = (
    rf"go to (?:the|a) (?:{_COLOURS}) (?:{_TYPES})"
    r"|turn left|turn right|go forward|pick up|You see a|You carry a"
    rf"|(?:(?:open|closed|locked) )?(?:{_COLOURS}) (?:{_TYPES})"
    rf"|{_OFFSET}"
    r"|[A-Za-z]+|\d+|[^\sA-Za-z\d]"
)
SPECIAL_TOKENS = ("<pad>", "<unk>", "<eos>")
#: Words always in the vocabulary (the prompt template, the BabyAI-Text renderer and missions),
#: so that unseen-but-possible words do not map to <unk>.
BASE_WORDS = tuple(
    "Goal of the agent : Possible actions , Observation Action Inventory . ( ) more "
    "You wall step steps left right forward and carry nothing a an "
    "red green blue purple yellow grey ball box key door open closed locked "
    "go to the pick up put next then after you in front of behind on your drop toggle".split()
) + ("turn left", "turn right", "go forward", "pick up", "You see a", "You carry a")


def _compound_words() -> list[str]:
    """Every go-to mission, coloured object and step offset the BabyAI-Text renderer can write."""
    out = []
    for colour in _COLOURS.split("|"):
        for kind in _TYPES.split("|"):
            out.append(f"{colour} {kind}")
            out.append(f"go to the {colour} {kind}")
            out.append(f"go to a {colour} {kind}")
        for state in ("open", "closed", "locked"):
            out.append(f"{state} {colour} door")

    def steps(n: int, word: str) -> str:
        return f"{n} step{'s' if n != 1 else ''} {word}"

    for n in range(1, 10):
        for side in ("left", "right", "forward"):
            out.append(steps(n, side))
    for n in range(1, 4):
        for side in ("left", "right"):
            for m in range(1, 7):
                out.append(f"{steps(n, side)} and {steps(m, 'forward')}")
    return out


ACTIONS = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")
AUGMENTATIONS = ("none", "colours", "colours+mirror")


@dataclass
class ModelSpec:
    """Architecture, prompt and training schedule of one model."""

    name: str
    """Folder name under the output directory (``quick`` / ``deepthink``)."""
    hidden_size: int
    """Model width (d_model)."""
    num_layers: int
    """Transformer blocks."""
    num_heads: int
    """Attention heads (hidden_size must be divisible by it)."""
    intermediate_size: int
    """Width of the SwiGLU feed-forward layer."""
    history_length: int
    """Past (observation, action) pairs in the prompt."""
    demo_episodes: int
    """Expert episodes for the first dataset."""
    dagger_rounds: int
    """DAgger rounds after the expert data."""
    dagger_episodes: int
    """Episodes rolled in by the learner per DAgger round."""
    dagger_beta: float
    """Probability that the expert acts in the first DAgger round (halved each round)."""
    epochs_demo: float
    """Passes over the expert data before the first DAgger round."""
    epochs_round: float
    """Passes over the aggregated data after each DAgger round."""
    batch_size: int = 64
    """Training batch size."""
    lr: float = 2e-3
    """Peak learning rate (AdamW, warm-up then cosine decay per phase)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    list_actions: bool = False
    """List the admissible actions in the prompt (scoring models do not need them)."""
    lm_loss_weight: float = 0.0
    """Weight of the auxiliary next-token loss on the prompt's text (see ``Learner._loss``)."""
    aux_weight: float = 1.0
    """Weight of the training-only auxiliary head that predicts, from the state at the prompt's
    last token, where the goal object is in the current observation (see ``goal_offset``)."""
    match_weight: float = 1.0
    """Weight of the training-only auxiliary head that predicts, at every object token of the
    prompt and at the offset token after it, whether that object is the mission's object."""
    temperature: float = 0.5
    """Decoding saved with the model (``londi_policy.json``) and used in the DAgger roll-ins:
    the action distribution is ``softmax(log-likelihood / temperature)``."""
    sample: bool = True
    """Draw the action from that distribution (``True``) or take the most likely one. Sampling
    keeps a cloned policy from repeating the same mistake in a loop (a deterministic policy that
    turns left where the expert turned right, then right where it turned left, never escapes)."""
    augment: str = "colours"
    """Data augmentation per training sample: ``"none"``; ``"colours"`` (rename colours and
    object types consistently across goal, observations and history: the expert's choice does
    not depend on them, and it forces the model to match the goal to the line instead of
    learning per-colour shortcuts); ``"colours+mirror"`` (also swap left and right)."""

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"{self.name}: hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if not self.temperature > 0:
            raise ValueError(f"{self.name}: temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.dagger_beta <= 1.0:
            raise ValueError(f"{self.name}: dagger_beta must be in [0, 1], got {self.dagger_beta}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"{self.name}: augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        for field_name in ("demo_episodes", "batch_size", "num_layers", "hidden_size"):
            if getattr(self, field_name) <= 0:
                raise ValueError(f"{self.name}: {field_name} must be positive")


#: QUICK: one tiny layer without history, trained briefly on expert demonstrations only. One
#: attention layer cannot match the mission to a line of the observation, so it learns what the
#: text shows without that match (walk on, turn at walls): right when the goal is straight ahead,
#: often wrong when it is off to the side or out of view.
QUICK = ModelSpec(
    name="quick", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, history_length=0,
    demo_episodes=600, dagger_rounds=0, dagger_episodes=0, dagger_beta=0.5,
    epochs_demo=4.0, epochs_round=0.0, lr=3e-3, augment="none", aux_weight=0.0, match_weight=0.0,
)
#: DEEPTHINK: eight wider layers that read the last three steps, expert data plus DAgger rounds,
#: and the two auxiliary heads that teach it to find the mission's object in the observation.
DEEPTHINK = ModelSpec(
    name="deepthink", hidden_size=192, num_layers=8, num_heads=6, intermediate_size=512, history_length=3,
    demo_episodes=1500, dagger_rounds=2, dagger_episodes=500, dagger_beta=0.5,
    epochs_demo=3.0, epochs_round=1.0, lr=1e-3,
)
#: The default pair (``quick-dagger``, ``deepthink-dagger``): the same architectures, trained with
#: learner-led DAgger rounds (a low ``dagger_beta``, so that the model itself acts on most roll-in
#: steps and its own mistakes get labelled). QUICK then succeeds on 0.680 of the held-out episodes
#: and DEEPTHINK on 0.975 (docs/models.md). DEEPTHINK-DAGGER's shipped weights were trained with
#: this recipe on a lent GPU (321 s, its model card); QUICK-DAGGER's on the 2-core CPU (55 s).
QUICK_DAGGER = replace(QUICK, name="quick-dagger", dagger_rounds=3, dagger_episodes=300, dagger_beta=0.25,
                       epochs_round=2.0)
DEEPTHINK_DAGGER = replace(DEEPTHINK, name="deepthink-dagger", demo_episodes=3000, dagger_rounds=3,
                           dagger_episodes=1000, dagger_beta=0.25, epochs_demo=4.0, epochs_round=1.5)
SPECS = {"quick-dagger": QUICK_DAGGER, "deepthink-dagger": DEEPTHINK_DAGGER, "quick": QUICK, "deepthink": DEEPTHINK}
#: What ``--models`` trains by default: the default pair.
DEFAULT_MODELS = ["quick-dagger", "deepthink-dagger"]
#: ``--small``: the whole pipeline (demos, a DAgger round, saving) in well under two minutes.
_SMALL_QUICK = replace(QUICK, demo_episodes=150, epochs_demo=4.0)
_SMALL_DEEPTHINK = replace(
    DEEPTHINK, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, history_length=1,
    demo_episodes=120, dagger_rounds=1, dagger_episodes=40, epochs_demo=4.0, epochs_round=2.0, lr=2e-3,
)
SMALL = {
    "quick": _SMALL_QUICK,
    "deepthink": _SMALL_DEEPTHINK,
    "quick-dagger": replace(_SMALL_QUICK, name="quick-dagger", dagger_rounds=1, dagger_episodes=40, dagger_beta=0.25,
                            epochs_round=2.0),
    "deepthink-dagger": replace(_SMALL_DEEPTHINK, name="deepthink-dagger", dagger_beta=0.25),
}


# ------------------------------------------------------------------------------ tokenizer
def _pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    # invert=True keeps the pattern's matches as the pieces and drops what lies between (spaces).
    return pre_tokenizers.Split(Regex(PRETOKENIZER_PATTERN), behavior="removed", invert=True)


def build_tokenizer(texts):
    """A word-level tokenizer whose vocabulary is :data:`BASE_WORDS` plus every piece in ``texts``."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    pre = _pre_tokenizer()
    words = set(BASE_WORDS) | set(ACTIONS) | set(_compound_words())
    for text in texts:
        words.update(piece for piece, _ in pre.pre_tokenize_str(text))
    words.difference_update(SPECIAL_TOKENS)
    vocab = {tok: i for i, tok in enumerate(list(SPECIAL_TOKENS) + sorted(words))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>", model_max_length=1024
    )
    for a in ACTIONS:  # the design's invariant: one token per action
        ids = tok(" " + a, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, (a, ids)
    return tok


def augmentation_tables(tokenizer, augment: str, rng: np.random.Generator, n: int = 256):
    """Token-id lookup tables that rename colours and object types (and mirror left/right).

    Each table maps every token id to the id of its renamed token; compounds such as
    ``"red ball"`` or ``"2 steps left"`` are single tokens, so renaming is a lookup. The first
    table is the identity. Returns ``None`` for ``augment="none"``.
    """
    if augment == "none":
        return None
    vocab = tokenizer.get_vocab()
    colours, kinds = _COLOURS.split("|"), ["ball", "box", "key"]  # doors keep their type
    tables = [np.arange(len(vocab))]
    while len(tables) < n:
        cmap = dict(zip(colours, rng.permutation(colours)))
        kmap = dict(zip(kinds, rng.permutation(kinds)))
        mirror = augment == "colours+mirror" and rng.random() < 0.5
        side = {"left": "right", "right": "left"} if mirror else {}
        lut = np.arange(len(vocab))
        for tok, i in vocab.items():
            words = tok.split(" ")
            new = [cmap.get(w, kmap.get(w, side.get(w, w))) if len(words) > 1 or w in side else w for w in words]
            if len(words) > 1 and words[-1] == "door":
                new[-1] = "door"
            renamed = " ".join(new)
            if renamed in vocab:
                lut[i] = vocab[renamed]
        tables.append(lut)
    return tables


#: Classes of the auxiliary offset targets: lateral -3..3 (index dx + 3) or forward 0..6, plus
#: the last class for "the goal object is not in view".
OFFSET_CLASSES = 8
_GOAL_RE = re.compile(r"go to (?:the|a) (\w+) (\w+)")
_OFFSET_RE = re.compile(r"(\d+) steps? (left|right|forward)")


def goal_offset(obs) -> tuple[int, int]:
    """Where the mission's object is in the current observation, read from the text itself.

    Returns ``(lateral class, forward class)`` of the nearest matching object (see
    :data:`OFFSET_CLASSES`); ``(7, 7)`` when none is in view or the mission is not a go-to.
    This is the auxiliary training target (no privileged state is used).
    """
    m = _GOAL_RE.search(obs.goal)
    none = (OFFSET_CLASSES - 1, OFFSET_CLASSES - 1)
    if m is None:
        return none
    prefix = f"You see a {m.group(1)} {m.group(2)} "
    best = None
    for line in obs.text.splitlines():
        if not line.startswith(prefix):
            continue
        dx = dy = 0
        for n, word in _OFFSET_RE.findall(line[len(prefix):]):
            if word == "forward":
                dy = int(n)
            else:
                dx = int(n) if word == "right" else -int(n)
        if best is None or abs(dx) + dy < abs(best[0]) + best[1]:
            best = (dx, dy)
    if best is None:
        return none
    return (min(max(best[0], -3), 3) + 3, min(best[1], 6))


def object_token_tables(tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """``(object index per token id or -1, is-mission-token per token id)`` for the match head.

    Object tokens are the coloured-object compounds (``"red ball"``); mission tokens are the
    go-to compounds (``"go to the red ball"``), which share the object's index.
    """
    vocab = tokenizer.get_vocab()
    obj_of = np.full(len(vocab), -1, dtype=np.int64)
    is_goal = np.zeros(len(vocab), dtype=bool)
    objects: dict[str, int] = {}
    pattern = re.compile(rf"^(go to (?:the|a) )?((?:{_COLOURS}) (?:{_TYPES}))$")
    for tok, i in vocab.items():
        m = pattern.match(tok)
        if m:
            obj_of[i] = objects.setdefault(m.group(2), len(objects))
            is_goal[i] = m.group(1) is not None
    return obj_of, is_goal


def _mirror_offset(aux: tuple[int, int]) -> tuple[int, int]:
    lateral, forward = aux
    return (6 - lateral if lateral < OFFSET_CLASSES - 1 else lateral, forward)


# ------------------------------------------------------------------------------ data
@dataclass
class Sample:
    obs: object  # TextObservation
    label: str  # the expert's (oracle's) action


def _make_envs(n: int):
    from londi.envs import DEFAULT_ENV_ID, make_env

    return [make_env(DEFAULT_ENV_ID, disable_env_checker=True) for _ in range(n)]


def collect(envs, seeds, *, act_fn=None, beta: float = 1.0, rng=None, desc: str = "collect"):
    """Play one episode per seed on ``envs`` in parallel; label every state with the oracle.

    ``act_fn(list_of_obs) -> list_of_actions`` is the learner; with probability ``beta`` (per
    step) the expert's action is played instead. ``act_fn=None`` plays the expert alone.
    Returns ``(samples, successes, episodes)``.
    """
    from tqdm.auto import tqdm

    seeds = list(seeds)
    samples: list[Sample] = []
    successes = 0
    next_seed = 0
    slots: list = [None] * len(envs)  # current obs per env, None when idle
    bar = tqdm(total=len(seeds), desc=desc, leave=False)

    def start(i: int) -> None:
        nonlocal next_seed
        if next_seed < len(seeds):
            _, info = envs[i].reset(seed=int(seeds[next_seed]))
            next_seed += 1
            slots[i] = info["text_obs"]
        else:
            slots[i] = None

    for i in range(len(envs)):
        start(i)
    while any(s is not None for s in slots):
        active = [i for i, s in enumerate(slots) if s is not None]
        obs_list = [slots[i] for i in active]
        learner = act_fn(obs_list) if act_fn is not None else [None] * len(active)
        for i, obs, mine in zip(active, obs_list, learner):
            oracle = obs.oracle_action
            if oracle is not None:
                samples.append(Sample(obs, oracle))
            use_expert = mine is None or (oracle is not None and rng is not None and rng.random() < beta)
            action = oracle if use_expert and oracle is not None else (mine or "go forward")
            _, _, term, trunc, info = envs[i].step(action)
            if term or trunc:
                successes += int(info.get("success", False))
                bar.update(1)
                start(i)
            else:
                slots[i] = info["text_obs"]
    bar.close()
    return samples, successes, len(seeds)


# ------------------------------------------------------------------------------ model
class Learner:
    """A model being trained, its tokenizer and its prompt settings."""

    def __init__(self, spec: ModelSpec, tokenizer, seed: int, device: str = "cpu") -> None:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        from londi.agents.prompt import build_prompt

        self.spec = spec
        self.tokenizer = tokenizer
        self._build_prompt = build_prompt
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=spec.hidden_size,
            intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads,
            num_key_value_heads=spec.num_heads,
            max_position_embeddings=1024,
            tie_word_embeddings=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=None,
        )
        torch.manual_seed(seed)
        self.model = LlamaForCausalLM(config).to(device)
        self.device = device
        self.action_ids = [tokenizer(" " + a, add_special_tokens=False)["input_ids"][0] for a in ACTIONS]
        self.ids: list[list[int]] = []
        self.labels: list[int] = []
        self._action_tensor = torch.tensor(self.action_ids, device=device)
        self.luts = augmentation_tables(tokenizer, spec.augment, np.random.default_rng(seed + 7))
        turn_left, turn_right = self.action_ids[0], self.action_ids[1]
        self.mirrored = [bool(lut[turn_left] == turn_right) for lut in self.luts] if self.luts else []
        self.aux: list[tuple[int, int]] = []
        # Training-only head (not saved): goal object's lateral and forward offset classes.
        self.aux_head = torch.nn.Linear(spec.hidden_size, 2 * OFFSET_CLASSES).to(device)
        self.match_head = torch.nn.Linear(spec.hidden_size, 1).to(device)
        obj_of, is_goal = object_token_tables(tokenizer)
        self._obj_of = torch.tensor(obj_of, device=device)
        self._is_goal = torch.tensor(is_goal, device=device)

    @classmethod
    def from_checkpoint(cls, spec: ModelSpec, folder: Path, seed: int, device: str = "cpu") -> "Learner":
        """A learner that continues training the checkpoint in ``folder`` (same architecture)."""
        from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

        if not (folder / "config.json").is_file():
            raise SystemExit(f"--init-from: {folder} is not a checkpoint folder (no config.json)")
        model = AutoModelForCausalLM.from_pretrained(folder)
        got = (model.config.hidden_size, model.config.num_hidden_layers, model.config.intermediate_size)
        want = (spec.hidden_size, spec.num_layers, spec.intermediate_size)
        if got != want:
            raise SystemExit(f"--init-from: {folder} has (hidden, layers, ffn) {got}, the spec asks for {want}")
        learner = cls(spec, PreTrainedTokenizerFast.from_pretrained(folder), seed, device=device)
        learner.model = model.to(device)
        return learner

    def prompt(self, obs) -> str:
        return self._build_prompt(obs, history_length=self.spec.history_length, list_actions=self.spec.list_actions)

    def encode(self, observations) -> list[list[int]]:
        return self.tokenizer([self.prompt(o) for o in observations], add_special_tokens=False)["input_ids"]

    def add(self, samples: list[Sample]) -> None:
        self.ids.extend(self.encode([s.obs for s in samples]))
        self.labels.extend(self.action_ids[ACTIONS.index(s.label)] for s in samples)
        self.aux.extend(goal_offset(s.obs) for s in samples)

    def _batch(self, seqs):
        import torch

        lengths = torch.tensor([len(s) for s in seqs])
        out = torch.full((len(seqs), int(lengths.max())), self.tokenizer.pad_token_id, dtype=torch.long)
        for r, s in enumerate(seqs):
            out[r, : len(s)] = torch.tensor(s)
        return out.to(self.device), lengths.to(self.device)

    def _last_logits(self, inp, lengths):
        import torch

        # Right padding and a causal model: a real token never attends to the pads after it, so
        # no attention mask is needed; read the state at each sequence's last real token.
        h = self.model.model(input_ids=inp).last_hidden_state
        last = h[torch.arange(len(lengths), device=h.device), lengths - 1]
        return self.model.lm_head(last)

    def _loss(self, inp, lengths, target, aux):
        """Cross-entropy of the expert's action after the prompt, plus ``lm_loss_weight`` times
        the next-token loss on the prompt's own text (goal and observations).

        The auxiliary language-modelling loss gives a training signal at every token, and
        predicting an object's offsets from the previous observation trains the same "find the
        earlier mention and read what follows it" attention that picking the action needs
        (find the goal's object in the observation, read its offset). Past actions in the
        history are not predicted: in DAgger data they are the learner's, not the expert's.
        """
        import torch
        import torch.nn.functional as F

        h = self.model.model(input_ids=inp).last_hidden_state
        rows = torch.arange(len(lengths), device=h.device)
        last = h[rows, lengths - 1]
        loss = F.cross_entropy(self.model.lm_head(last), target)
        if self.spec.aux_weight > 0:
            pred = self.aux_head(last).view(-1, 2, OFFSET_CLASSES)
            loss = loss + self.spec.aux_weight * F.cross_entropy(pred.reshape(-1, OFFSET_CLASSES), aux.reshape(-1))
        if self.spec.match_weight > 0:
            target, mask = self._match_targets(inp, lengths)
            if mask.any():
                logit = self.match_head(h).squeeze(-1)
                loss = loss + self.spec.match_weight * F.binary_cross_entropy_with_logits(logit[mask], target[mask])
        if self.spec.lm_loss_weight > 0:
            logits = self.model.lm_head(h[:, :-1])
            nxt = inp[:, 1:].clone()
            pos = torch.arange(nxt.shape[1], device=h.device)[None, :]
            skip = (pos >= (lengths[:, None] - 1)) | torch.isin(nxt, self._action_tensor)
            nxt[skip] = -100
            loss = loss + self.spec.lm_loss_weight * F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), nxt.reshape(-1), ignore_index=-100
            )
        return loss

    def _match_targets(self, inp, lengths):
        """Per-token targets of the match head: 1 at an object token (and the offset token after
        it) whose object is the mission's, 0 at other objects; masked elsewhere."""
        import torch

        obj = self._obj_of[inp]
        goal = self._is_goal[inp]
        goal_obj = torch.where(goal, obj, torch.full_like(obj, -1)).max(dim=1).values
        is_obj = (obj >= 0) & ~goal
        pos = torch.arange(inp.shape[1], device=inp.device)[None, :]
        is_obj &= pos < lengths[:, None]
        match = (obj == goal_obj[:, None]) & is_obj
        after = torch.zeros_like(is_obj)
        after[:, 1:] = is_obj[:, :-1]
        match_after = torch.zeros_like(match)
        match_after[:, 1:] = match[:, :-1]
        mask = (is_obj | after) & (goal_obj[:, None] >= 0)
        return (match | match_after).float(), mask

    def act_batch(self, observations, rng: np.random.Generator | None = None) -> list[str]:
        """Actions for a batch of observations, decoded as HFPolicy does with this model's
        settings (greedy, or sampled at ``spec.temperature`` when ``spec.sample`` and ``rng``)."""
        import torch

        self.model.eval()
        with torch.inference_mode():
            inp, lengths = self._batch(self.encode(observations))
            logits = self._last_logits(inp, lengths)[:, self.action_ids].double().cpu()
        if not (self.spec.sample and rng is not None):
            return [ACTIONS[int(i)] for i in logits.argmax(-1)]
        probs = torch.softmax(logits / self.spec.temperature, dim=-1).numpy()
        return [ACTIONS[int(rng.choice(len(ACTIONS), p=p / p.sum()))] for p in probs]

    def train(self, epochs: float, rng: np.random.Generator, desc: str) -> float:
        """``epochs`` passes over all data so far (length-bucketed batches); returns the last loss."""
        import torch
        from tqdm.auto import tqdm

        spec = self.spec
        n = len(self.ids)
        steps = max(1, int(math.ceil(epochs * n / spec.batch_size)))
        order: list[list[int]] = []
        while len(order) < steps:
            perm = rng.permutation(n)
            # Sort within chunks of 32 batches by length: less padding, still shuffled.
            chunk = spec.batch_size * 32
            batches = []
            for c in range(0, n, chunk):
                part = sorted(perm[c : c + chunk], key=lambda i: len(self.ids[i]))
                batches += [part[b : b + spec.batch_size] for b in range(0, len(part), spec.batch_size)]
            order += [batches[i] for i in rng.permutation(len(batches))]
        order = order[:steps]
        params = [*self.model.parameters(), *self.aux_head.parameters(), *self.match_head.parameters()]
        opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay, betas=(0.9, 0.98))
        warm = max(1, steps // 20)

        def lr_at(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            progress = (step - warm) / max(1, steps - warm)
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        self.model.train()
        bar = tqdm(order, desc=desc, leave=False)
        ema = None
        for idx in bar:
            seqs, targets = [self.ids[i] for i in idx], [self.labels[i] for i in idx]
            aux = [self.aux[i] for i in idx]
            if self.luts is not None:  # one random renaming per sample
                pick = rng.integers(len(self.luts), size=len(idx))
                seqs = [self.luts[k][s].tolist() for k, s in zip(pick, seqs)]
                targets = [int(self.luts[k][t]) for k, t in zip(pick, targets)]
                aux = [_mirror_offset(a) if self.mirrored[k] else a for k, a in zip(pick, aux)]
            inp, lengths = self._batch(seqs)
            target = torch.tensor(targets, device=self.device)
            loss = self._loss(inp, lengths, target, torch.tensor(aux, device=self.device))
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

    def save(self, folder: Path, extra: dict) -> None:
        """Save weights, tokenizer and prompt settings into ``folder`` (replaced atomically)."""
        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        self.model.to("cpu").save_pretrained(tmp)
        self.model.to(self.device)
        self.tokenizer.save_pretrained(tmp)
        settings = {
            "history_length": self.spec.history_length,
            "list_actions": self.spec.list_actions,
            "temperature": self.spec.temperature,
            "sample": self.spec.sample,
            "trained_on": extra.get("env_id"),
            "spec": asdict(self.spec),
        }
        (tmp / "londi_policy.json").write_text(json.dumps(settings, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.replace(folder)


def train_model(
    spec: ModelSpec,
    *,
    seed: int,
    out_dir: Path,
    threads: int,
    n_envs: int = 32,
    device: str = "cpu",
    init_from: Path | None = None,
    keep_rounds: bool = False,
) -> dict:
    """Collect data, train with DAgger and save ``spec`` under ``out_dir/spec.name``. Returns a log.

    ``init_from``: a checkpoint folder of the same architecture (weights and tokenizer) to continue
    training from instead of starting from random weights: a fine-tuning run, usually with more
    DAgger rounds at a lower ``dagger_beta`` (``--set``) and another ``--seed`` (fresh episodes).

    ``keep_rounds``: also save the model after every DAgger round, as ``out_dir/NAME-roundK`` with
    the log so far in ``train_log.json``, so that a run stopped part-way (a time limit, a crash)
    keeps the rounds it finished, and the rounds can be compared.
    """
    from londi.envs import DEFAULT_ENV_ID

    rng = np.random.default_rng(seed)
    log: dict = {"spec": asdict(spec), "seed": seed, "threads": threads, "device": device, "phases": [],
                 "init_from": str(init_from) if init_from else None}
    if device.startswith("cuda"):
        import torch

        log["device_name"] = torch.cuda.get_device_name(torch.device(device))
    t_start = time.time()
    envs = _make_envs(n_envs)
    # Seeds: disjoint blocks per model and phase, all >= TRAIN_SEED_START.
    # (by role, so that a QUICK's seeds stay its own whatever the spec is named)
    base = TRAIN_SEED_START + (0 if spec.name.startswith("quick") else 500_000) + seed * 1_000_000
    demo_seeds = range(base, base + spec.demo_episodes)
    samples, succ, n = collect(envs, demo_seeds, desc=f"{spec.name}: expert demos")
    logger.info("%s: %d expert episodes, %d states, expert success %.3f", spec.name, n, len(samples), succ / n)
    if init_from is None:
        tokenizer = build_tokenizer([_prompt_text(s.obs, spec) for s in samples])
        learner = Learner(spec, tokenizer, seed, device=device)
    else:
        learner = Learner.from_checkpoint(spec, Path(init_from), seed, device=device)
    learner.add(samples)
    loss = learner.train(spec.epochs_demo, rng, desc=f"{spec.name}: train on demos") if spec.epochs_demo > 0 else float("nan")
    log["phases"].append({"phase": "demos", "episodes": n, "states": len(samples), "expert_success": succ / n,
                          "loss": loss, "elapsed_s": time.time() - t_start})
    logger.info("%s: demos: %d states, loss %.3f (%.0f s)", spec.name, len(learner.ids), loss, time.time() - t_start)
    for r in range(spec.dagger_rounds):
        beta = spec.dagger_beta * 0.5**r
        start = base + 100_000 * (r + 1)
        seeds = range(start, start + spec.dagger_episodes)
        new, succ, n = collect(envs, seeds, act_fn=lambda obs: learner.act_batch(obs, rng), beta=beta, rng=rng,
                               desc=f"{spec.name}: DAgger {r + 1} roll-in (beta {beta:.2f})")
        learner.add(new)
        loss = learner.train(spec.epochs_round, rng, desc=f"{spec.name}: DAgger {r + 1} train")
        log["phases"].append({"phase": f"dagger{r + 1}", "beta": beta, "episodes": n, "states": len(new),
                              "rollin_success": succ / n, "loss": loss, "elapsed_s": time.time() - t_start})
        logger.info("%s: DAgger %d: beta %.2f, roll-in success %.3f, +%d states (total %d), loss %.3f (%.0f s)",
                    spec.name, r + 1, beta, succ / n, len(new), len(learner.ids), loss, time.time() - t_start)
        if keep_rounds:
            kept = out_dir / f"{spec.name}-round{r + 1}"
            learner.save(kept, {"env_id": DEFAULT_ENV_ID})
            (kept / "train_log.json").write_text(json.dumps({**log, "train_states": len(learner.ids)}, indent=2,
                                                            default=str))
    for env in envs:
        env.close()
    log["train_states"] = len(learner.ids)
    log["train_seconds"] = time.time() - t_start
    log["parameters"] = int(learner.model.num_parameters())
    learner.save(out_dir / spec.name, {"env_id": DEFAULT_ENV_ID})
    return log


def _prompt_text(obs, spec: ModelSpec) -> str:
    from londi.agents.prompt import build_prompt

    return build_prompt(obs, history_length=spec.history_length, list_actions=spec.list_actions)


# ------------------------------------------------------------------------------ model cards
def model_card(spec: ModelSpec, log: dict, results: list[EvalResult], command: str, eval_threads: int) -> str:
    mine = next(r for r in results if r.model == spec.name)
    phases = "\n".join(
        f"| {p['phase']} | {p.get('beta', 1.0):.2f} | {p['episodes']} | {p['states']} | "
        f"{p.get('rollin_success', p.get('expert_success', float('nan'))):.3f} | {p['loss']:.3f} | {p['elapsed_s']:.0f} |"
        for p in log["phases"]
    )
    return f"""# {spec.name.upper()}: a behaviour-cloned text policy for BabyAI-Text GoToLocal

A causal language model (Llama architecture, trained from scratch in this project) that writes the
next action after LONDI's shared prompt (`londi.agents.prompt.build_prompt`). It is one half of
LONDI's shipped QUICK/DEEPTHINK pair and is loaded like any Hugging Face checkpoint:
`londi.agents.lm.load_policy("{spec.name}")`, or `AutoModelForCausalLM.from_pretrained(<this folder>)`.

## Model

| | |
|---|---|
| architecture | LlamaForCausalLM, {spec.num_layers} layer(s), d_model {spec.hidden_size}, {spec.num_heads} heads, SwiGLU {spec.intermediate_size}, tied embeddings |
| parameters | {log['parameters']:,} |
| tokenizer | word level ({len_vocab(log)} tokens), each action one token; `PreTrainedTokenizerFast` |
| prompt | `build_prompt(obs, history_length={spec.history_length}, list_actions={spec.list_actions})` (saved in `londi_policy.json`) |
| action choice | {_choice_text(spec)} |

## Training data and procedure

Env `londi/BabyAIText-GoToLocal-v0`. Labels come from Minigrid's BabyAIBot, **an oracle** that
reads the full game state. First {spec.demo_episodes} expert episodes, then {spec.dagger_rounds} DAgger
round(s) of {spec.dagger_episodes} episodes each, rolled in by the model itself (the expert acts
with probability beta per step) and labelled by the expert; training continues on the aggregate
({log['train_states']:,} states in all). Loss: next-token cross-entropy on the action token.
AdamW, peak learning rate {spec.lr}, batch {spec.batch_size}, {spec.epochs_demo} epoch(s) after the
demos and {spec.epochs_round} after each round. Training seeds >= {TRAIN_SEED_START:,}; seed {log['seed']},
{log['threads']} torch thread(s); {log['train_seconds']:.0f} s on {_trained_on(log)}.

| phase | beta | episodes | states | success of the roll-in (demos: expert) | loss | elapsed s |
|---|---|---|---|---|---|---|
{phases}

Training command: `{command}`

## Evaluation

{mine.episodes} held-out episodes (seeds {HELDOUT_SEED_START:,} to {HELDOUT_SEED_START + mine.episodes - 1:,}, never used in
training), the model in control at every step, through `londi.agents.lm.HFPolicy` on the CPU with
{eval_threads} torch thread(s) (device-seconds = process CPU time per call). Measured {time.strftime("%Y-%m-%d")} on a
2-core CPU container, {"the models measured in this run in the same process" if len(results) > 1 else "alone"}:

{markdown_table(results)}
Per-step agreement with the expert (oracle) on the states each model visits, by where the goal
object is ("ahead": in view straight ahead, the easy case; "side": in view off to the side;
"unseen": not in view):

{agreement_table(results)}
## Intended use and limits

Built for LONDI's demo and tests: a cheap/strong pair whose gap depends on the state, on 2 CPU
cores, with nothing downloaded. It knows one level (GoToLocal) and the BabyAI-Text renderer's
words; anything else maps to `<unk>`. It is not a general language model.
"""


def _choice_text(spec: ModelSpec) -> str:
    how = f"sampled from softmax(log-likelihood / {spec.temperature})" if spec.sample else "the most likely one"
    return f"log-likelihood of each admissible action given the prompt (GLAM style); the action is {how}"


def _trained_on(log: dict) -> str:
    if str(log.get("device", "cpu")).startswith("cuda"):
        return f"a GPU ({log.get('device_name', log['device'])})"
    return "a 2-core CPU container"


def len_vocab(log: dict) -> int:
    return int(log.get("vocab_size", 0))


# ------------------------------------------------------------------------------ main
def apply_overrides(specs: dict[str, ModelSpec], overrides: list[str], parser: argparse.ArgumentParser) -> dict:
    """``MODEL.FIELD=VALUE`` strings applied to copies of ``specs`` (values parsed by the field's type)."""
    from dataclasses import fields

    types = {f.name: f.type for f in fields(ModelSpec)}
    out = dict(specs)
    for item in overrides:
        key, sep, value = item.partition("=")
        model, dot, field_name = key.partition(".")
        if not sep or not dot or model not in out or field_name not in types or field_name == "name":
            parser.error(f"--set {item!r}: expected MODEL.FIELD=VALUE with MODEL in {sorted(out)} and FIELD a ModelSpec field")
        kind = types[field_name] if isinstance(types[field_name], str) else types[field_name].__name__
        try:
            parsed = {"int": int, "float": float, "str": str}.get(kind, None)
            if kind == "bool":
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                parsed_value = value.lower() in ("true", "1")
            else:
                parsed_value = parsed(value)
            out[model] = replace(out[model], **{field_name: parsed_value})
        except (TypeError, ValueError) as exc:
            parser.error(f"--set {item!r}: {exc}")
    return out


def _read_training_log(args: argparse.Namespace, out_dir: Path,
                       parser: argparse.ArgumentParser) -> tuple[dict[str, ModelSpec], dict[str, dict], str]:
    """For ``--evaluate-only``: the specs, logs and command of the run that trained ``--out``."""
    if not args.log_json or not Path(args.log_json).is_file():
        parser.error("--evaluate-only needs --log-json: the log that the training run wrote")
    if not args.eval_episodes:
        parser.error("--evaluate-only needs --eval-episodes > 0")
    if args.overrides or args.small or args.init_from or args.keep_rounds:
        parser.error("--evaluate-only trains nothing: --set, --small, --init-from and --keep-rounds do not apply "
                     "(the spec comes from --log-json)")
    try:
        payload = json.loads(Path(args.log_json).read_text())
        logs = {name: payload["logs"][name] for name in args.models}
        specs = {name: ModelSpec(**logs[name]["spec"]) for name in args.models}
        command = str(payload["command"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        parser.error(f"--log-json {args.log_json}: not a training log for {args.models}: {exc!r}")
    missing = [name for name in args.models if not (out_dir / name / "config.json").is_file()]
    if missing:
        parser.error(f"--evaluate-only: no trained model for {missing} in {out_dir}")
    return specs, logs, command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the shipped QUICK/DEEPTHINK LM pair (behaviour cloning + DAgger).")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=sorted(SPECS),
                        help="which models to train (default: the default pair, %(default)s; quick and "
                             "deepthink are the first pair)")
    parser.add_argument("--out", default=None, help="output folder (default: the package's shipped models folder)")
    parser.add_argument("--small", action="store_true", help="tiny data and models: the pipeline in under 2 minutes")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights, batches and DAgger mixing")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for training (1 is fastest on a shared 2-core machine: with 2, "
                             "every step waits for the thread that another process preempted)")
    parser.add_argument("--eval-episodes", type=int, default=200, help="held-out episodes per model (0: skip)")
    parser.add_argument("--eval-threads", type=int, default=1, help="torch threads while measuring cost per call")
    parser.add_argument("--device", default="cpu", help="where to train: cpu, cuda or cuda:N (evaluation is on the CPU)")
    parser.add_argument("--envs", type=int, default=32, help="environments played in parallel while collecting")
    parser.add_argument("--log-json", default=None, help="also write the training and evaluation log here")
    parser.add_argument("--init-from", default=None,
                        help="continue training the checkpoints in this folder (DIR/<model>) instead of from scratch")
    parser.add_argument("--keep-rounds", action="store_true",
                        help="also save the model after every DAgger round (OUT/NAME-roundK), so a stopped run keeps them")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="train nothing: measure the models already in --out (trained elsewhere, e.g. on a GPU) on "
                             "the held-out episodes here and write their model cards; --log-json must be the log their "
                             "training run wrote (it gives the spec, phases and command; the results are added to it)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="MODEL.FIELD=VALUE",
                        help="override a ModelSpec field, e.g. --set deepthink.dagger_rounds=3 (repeatable)")
    args = parser.parse_args(argv)
    if args.threads <= 0 or args.eval_threads <= 0 or args.envs <= 0 or args.eval_episodes < 0:
        parser.error("--threads, --eval-threads and --envs must be positive; --eval-episodes >= 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    import torch

    from londi.agents.lm import HFPolicy, shipped_models_dir, write_checksums

    torch.set_num_threads(args.threads)
    out_dir = Path(args.out) if args.out else shipped_models_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = apply_overrides(SMALL if args.small else SPECS, args.overrides, parser)
    invoked = "python scripts/train_lms.py " + " ".join(argv if argv is not None else sys.argv[1:])
    command = invoked  # the training command, for the cards and the log
    logs: dict[str, dict] = {}
    t0 = time.time()
    if args.evaluate_only:
        specs, logs, command = _read_training_log(args, out_dir, parser)
    else:
        for name in args.models:
            init_from = Path(args.init_from) / name if args.init_from else None
            logs[name] = train_model(specs[name], seed=args.seed, out_dir=out_dir, threads=args.threads,
                                     n_envs=args.envs, device=args.device, init_from=init_from,
                                     keep_rounds=args.keep_rounds)
            logger.info("%s: trained in %.0f s", name, logs[name]["train_seconds"])
    results: list[EvalResult] = []
    if args.eval_episodes:
        torch.set_num_threads(args.eval_threads)
        seeds = range(HELDOUT_SEED_START, HELDOUT_SEED_START + args.eval_episodes)
        for name in args.models:
            policy = HFPolicy(out_dir / name, name=name, device="cpu")
            logs[name]["vocab_size"] = len(policy.tokenizer)
            result = evaluate_policy(policy, seeds, desc=f"{name}: held-out eval")
            result.expert_agreement = expert_state_agreement(policy, seeds)
            results.append(result)
        print(markdown_table(results))
        print(agreement_table(results))
    for name in args.models:
        folder = out_dir / name
        if results:
            card = model_card(specs[name], logs[name], results, command.strip(), args.eval_threads)
            (folder / "MODEL_CARD.md").write_text(card)
        write_checksums(folder)
    if args.log_json:
        payload = {"logs": logs, "results": [r.to_dict() for r in results], "command": command.strip(),
                   "total_seconds": time.time() - t0}
        if args.evaluate_only:
            payload["evaluate_command"] = invoked
        Path(args.log_json).write_text(json.dumps(payload, indent=2, default=str))
    logger.info("done in %.0f s; models in %s", time.time() - t0, out_dir)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
