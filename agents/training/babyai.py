"""The BabyAI-Text pairs (``quick``, ``deepthink``, ``quick-dagger``, ``deepthink-dagger``).

Behaviour cloning from Minigrid's BabyAI bot (**an oracle** that reads the full game state) on
``londi/BabyAIText-GoToLocal-v0``: expert demonstrations, then DAgger rounds in which the model
itself plays (:func:`~londi.agents.training.rollout.rollin_lockstep` over 32 envs, the
learner's batched forward pass as the actor) and the expert labels every visited state.

Each action is one token (:func:`~londi.agents.training.tokenizer.babyai_tokenizer`), so the
loss is the cross-entropy of the action token after the prompt; two training-only heads (not
saved) teach the model to find the mission's object in the observation (:func:`goal_offset`,
:func:`object_token_tables`), and colours and object types are renamed per sample
(:func:`augmentation_tables`). Training seeds are ``>= 1,000,000`` (disjoint blocks per role,
phase and ``--seed``); the same seed, thread count and package versions give the same weights.
"""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from londi.agents.prompt import build_prompt
from londi.agents.training.rollout import Collected, Sample, rollin_lockstep
from londi.agents.training.specs import TRAIN_SEED_START, ModelSpec
from londi.agents.training.tokenizer import ACTIONS, COLOURS, OBJECT_TYPES, babyai_tokenizer
from londi.agents.training.trainer import Learner, run_dagger
from londi.envs import DEFAULT_ENV_ID, make_env
from londi.envs.babyai_text import mission_target, target_offset

logger = logging.getLogger("londi.agents.training")

#: Classes of the auxiliary offset targets: lateral -3..3 (index dx + 3) or forward 0..6, plus
#: the last class for "the goal object is not in view".
OFFSET_CLASSES = 8


def goal_offset(obs) -> tuple[int, int]:
    """Where the mission's current target object (:func:`~londi.envs.babyai_text.mission_target`)
    is in the current observation, read from the text itself.

    Returns ``(lateral class, forward class)`` of the nearest matching object (see
    :data:`OFFSET_CLASSES`); ``(7, 7)`` when none is in view or the mission has no target.
    This is the auxiliary training target (no privileged state is used).
    """
    best = target_offset(obs.goal, obs.text)
    if best is None:
        return (OFFSET_CLASSES - 1, OFFSET_CLASSES - 1)
    return (min(max(best[0], -3), 3) + 3, min(best[1], 6))


def target_token(obs, vocab: dict[str, int]) -> int:
    """The token id naming the mission's current target: its coloured-object compound
    (``"red ball"``), or its object type alone (``"ball"``) for a mission without a colour
    (``"pick up a ball"``: any ball counts); ``-1`` when there is none (the match head then skips
    the sample)."""
    target = mission_target(obs.goal, obs.text)
    if target is None:
        return -1
    colour, kind = target
    return vocab.get(kind if colour is None else f"{colour} {kind}", -1)


def object_token_tables(tokenizer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(object index, is-mission-token, object-type index)`` per token id, for the match head.

    Object tokens are the coloured-object compounds (``"red ball"``); mission tokens are the
    go-to compounds (``"go to the red ball"``), which share the object's index. The type index
    (-1 for none) is set for the compounds and for the type words alone (``"ball"``), so that a
    mission without a colour matches every object of its type.
    """
    vocab = tokenizer.get_vocab()
    obj_of = np.full(len(vocab), -1, dtype=np.int64)
    kind_of = np.full(len(vocab), -1, dtype=np.int64)
    is_goal = np.zeros(len(vocab), dtype=bool)
    objects: dict[str, int] = {}
    pattern = re.compile(rf"^(go to (?:the|a) )?((?:{'|'.join(COLOURS)}) ({'|'.join(OBJECT_TYPES)}))$")
    for tok, i in vocab.items():
        m = pattern.match(tok)
        if m:
            obj_of[i] = objects.setdefault(m.group(2), len(objects))
            kind_of[i] = OBJECT_TYPES.index(m.group(3))
            is_goal[i] = m.group(1) is not None
        elif tok in OBJECT_TYPES:
            kind_of[i] = OBJECT_TYPES.index(tok)
    return obj_of, is_goal, kind_of


def augmentation_tables(tokenizer, augment: str, rng: np.random.Generator, n: int = 256):
    """Token-id lookup tables that rename colours and object types (and mirror left/right).

    Each table maps every token id to the id of its renamed token; compounds such as
    ``"red ball"`` or ``"2 steps left"`` are single tokens, so renaming is a lookup. The first
    table is the identity. Returns ``None`` for ``augment="none"``.
    """
    if augment == "none":
        return None
    vocab = tokenizer.get_vocab()
    colours, kinds = list(COLOURS), ["ball", "box", "key"]  # doors keep their type
    tables = [np.arange(len(vocab))]
    while len(tables) < n:
        cmap = dict(zip(colours, rng.permutation(colours)))
        kmap = dict(zip(kinds, rng.permutation(kinds)))
        mirror = augment == "colours+mirror" and rng.random() < 0.5
        side = {"left": "right", "right": "left"} if mirror else {}
        lut = np.arange(len(vocab))
        for tok, i in vocab.items():
            words = tok.split(" ")
            # Every token is renamed, the type words alone too: "pick up a key" must become
            # "pick up a box" wherever "red key" becomes "green box".
            new = [cmap.get(w, kmap.get(w, side.get(w, w))) for w in words]
            if len(words) > 1 and words[-1] == "door":
                new[-1] = "door"
            renamed = " ".join(new)
            if renamed in vocab:
                lut[i] = vocab[renamed]
        tables.append(lut)
    return tables


def _mirror_offset(aux: tuple[int, int]) -> tuple[int, int]:
    lateral, forward = aux
    return (6 - lateral if lateral < OFFSET_CLASSES - 1 else lateral, forward)


class ActionLearner(Learner):
    """A BabyAI model being trained: the loss is on the one action token after the prompt, plus
    the auxiliary heads' losses (``spec.aux_weight``, ``spec.match_weight``, ``spec.lm_loss_weight``)."""

    def __init__(self, spec: ModelSpec, tokenizer, seed: int, device: str = "cpu") -> None:
        import torch

        super().__init__(spec, tokenizer, seed, device=device)
        self.action_ids = [tokenizer(" " + a, add_special_tokens=False)["input_ids"][0] for a in ACTIONS]
        self.ids: list[list[int]] = []
        self.labels: list[int] = []
        self.aux: list[tuple[int, int]] = []
        self.targets: list[int] = []  # token id of the current target object per sample (-1: none)
        self._vocab = tokenizer.get_vocab()
        self._action_tensor = torch.tensor(self.action_ids, device=device)
        self.luts = augmentation_tables(tokenizer, spec.augment, np.random.default_rng(seed + 7))
        turn_left, turn_right = self.action_ids[0], self.action_ids[1]
        self.mirrored = [bool(lut[turn_left] == turn_right) for lut in self.luts] if self.luts else []
        # Training-only heads (not saved): goal object's lateral and forward offset classes; match.
        self.aux_head = torch.nn.Linear(spec.hidden_size, 2 * OFFSET_CLASSES).to(device)
        self.match_head = torch.nn.Linear(spec.hidden_size, 1).to(device)
        obj_of, is_goal, kind_of = object_token_tables(tokenizer)
        self._obj_of = torch.tensor(obj_of, device=device)
        self._is_goal = torch.tensor(is_goal, device=device)
        self._kind_of = torch.tensor(kind_of, device=device)

    @classmethod
    def from_checkpoint(cls, spec: ModelSpec, folder: Path, seed: int, device: str = "cpu") -> ActionLearner:
        """A learner that continues training the checkpoint in ``folder`` (same architecture);
        ``ValueError`` when it is not one."""
        from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

        if not (folder / "config.json").is_file():
            raise ValueError(f"{folder} is not a checkpoint folder (no config.json)")
        model = AutoModelForCausalLM.from_pretrained(folder)
        got = (model.config.hidden_size, model.config.num_hidden_layers, model.config.intermediate_size)
        want = (spec.hidden_size, spec.num_layers, spec.intermediate_size)
        if got != want:
            raise ValueError(f"{folder} has (hidden, layers, ffn) {got}, the spec asks for {want}")
        learner = cls(spec, PreTrainedTokenizerFast.from_pretrained(folder), seed, device=device)
        learner.model = model.to(device)
        return learner

    def add(self, samples: list[Sample]) -> None:
        self.ids.extend(self.encode([s.obs for s in samples]))
        self.labels.extend(self.action_ids[ACTIONS.index(s.label)] for s in samples)
        self.aux.extend(goal_offset(s.obs) for s in samples)
        self.targets.extend(target_token(s.obs, self._vocab) for s in samples)

    def __len__(self) -> int:
        return len(self.ids)

    def example_length(self, i: int) -> int:
        return len(self.ids[i])

    def parameters(self) -> list:
        return [*self.model.parameters(), *self.aux_head.parameters(), *self.match_head.parameters()]

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

    def batch_loss(self, indices, rng: np.random.Generator):
        """Cross-entropy of the expert's action after the prompt, plus the auxiliary losses; with
        augmentation, one random renaming per sample (drawn from ``rng``)."""
        import torch

        seqs, targets = [self.ids[i] for i in indices], [self.labels[i] for i in indices]
        aux = [self.aux[i] for i in indices]
        goal_tokens = [self.targets[i] for i in indices]
        if self.luts is not None:  # one random renaming per sample
            pick = rng.integers(len(self.luts), size=len(indices))
            seqs = [self.luts[k][s].tolist() for k, s in zip(pick, seqs)]
            targets = [int(self.luts[k][t]) for k, t in zip(pick, targets)]
            goal_tokens = [int(self.luts[k][g]) if g >= 0 else -1 for k, g in zip(pick, goal_tokens)]
            aux = [_mirror_offset(a) if self.mirrored[k] else a for k, a in zip(pick, aux)]
        inp, lengths = self._batch(seqs)
        target = torch.tensor(targets, device=self.device)
        return self._loss(inp, lengths, target, torch.tensor(aux, device=self.device),
                          torch.tensor(goal_tokens, device=self.device))

    def _loss(self, inp, lengths, target, aux, goal_tokens):
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
            target, mask = self._match_targets(inp, lengths, goal_tokens)
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

    def _match_targets(self, inp, lengths, goal_tokens):
        """Per-token targets of the match head: 1 at an object token (and the offset token after
        it) that is the mission's current target (``goal_tokens``: per sample, the id of its
        compound, or of its type word for a mission without a colour, -1 for none), 0 at other
        objects; masked elsewhere and in samples without a target."""
        import torch

        obj = self._obj_of[inp]
        goal = self._is_goal[inp]
        known = goal_tokens >= 0
        safe = goal_tokens.clamp(min=0)
        goal_obj = torch.where(known, self._obj_of[safe], torch.full_like(goal_tokens, -1))
        goal_kind = torch.where(known, self._kind_of[safe], torch.full_like(goal_tokens, -1))
        is_obj = (obj >= 0) & ~goal
        pos = torch.arange(inp.shape[1], device=inp.device)[None, :]
        is_obj &= pos < lengths[:, None]
        same = torch.where((goal_obj >= 0)[:, None], obj == goal_obj[:, None], self._kind_of[inp] == goal_kind[:, None])
        match = same & is_obj
        after = torch.zeros_like(is_obj)
        after[:, 1:] = is_obj[:, :-1]
        match_after = torch.zeros_like(match)
        match_after[:, 1:] = match[:, :-1]
        mask = (is_obj | after) & (goal_kind >= 0)[:, None]  # -1 for no target, or none known
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


def make_envs(n: int, env_id: str | None = None, levels: tuple[str, ...] | None = None) -> list:
    """``n`` BabyAI-Text envs (default: ``londi.envs.DEFAULT_ENV_ID``) for :func:`rollin_lockstep`;
    ``levels``: a mixed env's levels (see :attr:`ModelSpec.levels`)."""

    kwargs = {"levels": levels} if levels else {}
    return [make_env(env_id or DEFAULT_ENV_ID, disable_env_checker=True, **kwargs) for _ in range(n)]


def collect(envs, seeds, *, actor=None, beta: float = 1.0, rng=None, desc: str = "collect") -> Collected:
    """:func:`rollin_lockstep` with BabyAI's fallback action (``go forward``)."""
    return rollin_lockstep(envs, seeds, actor=actor, beta=beta, rng=rng, fallback_action="go forward", desc=desc)


def seed_base(spec: ModelSpec, seed: int) -> int:
    """First env seed of ``spec``'s demonstrations for ``--seed seed``. Seeds are disjoint blocks
    per role and phase, all >= ``TRAIN_SEED_START`` (by role, so that a QUICK's seeds stay its
    own whatever the spec is named): demos from here, DAgger round ``r`` from ``+ 100,000 * r``."""
    return TRAIN_SEED_START + (0 if spec.name.startswith("quick") else 500_000) + seed * 1_000_000


def train_model(spec: ModelSpec, *, seed: int, out_dir: Path, threads: int, n_envs: int = 32, device: str = "cpu",
                init_from: Path | None = None, keep_rounds: bool = False) -> dict:
    """Collect data, train with DAgger and save ``spec`` under ``out_dir/spec.name``. Returns a log.

    The episodes are ``spec.env``'s. ``init_from``: a checkpoint folder of the same architecture
    (weights and tokenizer) to continue training from instead of starting from random weights: a
    fine-tuning run, usually with more DAgger rounds at a lower ``dagger_beta`` and another
    ``seed`` (fresh episodes). Without it, ``spec.init_from`` names the shipped model to start
    from, if any.

    ``keep_rounds``: also save the model after every DAgger round, as ``out_dir/NAME-roundK`` with
    the log so far in ``train_log.json``, so that a run stopped part-way (a time limit, a crash)
    keeps the rounds it finished, and the rounds can be compared. No card, no checksums here.
    """

    if init_from is None and spec.init_from:
        from londi.agents.checkpoints import shipped_models_dir

        init_from = shipped_models_dir() / spec.init_from
    rng = np.random.default_rng(seed)
    log: dict = {"spec": asdict(spec), "seed": seed, "threads": threads, "device": device, "phases": [],
                 "init_from": str(init_from) if init_from else None}
    if device.startswith("cuda"):
        import torch

        log["device_name"] = torch.cuda.get_device_name(torch.device(device))
    t_start = time.time()
    envs = make_envs(n_envs, spec.env, spec.level_names())
    base = seed_base(spec, seed)
    demos = collect(envs, range(base, base + spec.demo_episodes), desc=f"{spec.name}: expert demos")
    samples, succ, n = demos
    logger.info("%s: %d expert episodes, %d states, expert success %.3f", spec.name, n, len(samples), succ / n)
    if init_from is None:
        learner = ActionLearner(spec, babyai_tokenizer([prompt_text(s.obs, spec) for s in samples]), seed,
                                device=device)
    else:
        learner = ActionLearner.from_checkpoint(spec, Path(init_from), seed, device=device)
    learner.add(samples)
    loss = learner.train(spec.epochs_demo, rng, desc=f"{spec.name}: train on demos") if spec.epochs_demo > 0 else float("nan")
    log["phases"].append({"phase": "demos", "episodes": n, "states": len(samples), "expert_success": succ / n,
                          "loss": loss, "elapsed_s": time.time() - t_start})
    logger.info("%s: demos: %d states, loss %.3f (%.0f s)", spec.name, len(learner), loss, time.time() - t_start)

    def rollin(r: int, beta: float) -> Collected:
        start = base + 100_000 * (r + 1)
        return collect(envs, range(start, start + spec.dagger_episodes), actor=lambda obs: learner.act_batch(obs, rng),
                       beta=beta, rng=rng, desc=f"{spec.name}: DAgger {r + 1} roll-in (beta {beta:.2f})")

    def keep(r: int) -> None:
        if keep_rounds:
            kept = out_dir / f"{spec.name}-round{r + 1}"
            learner.save(kept, trained_on=spec.env)
            (kept / "train_log.json").write_text(json.dumps({**log, "train_states": len(learner)}, indent=2,
                                                            default=str))

    run_dagger(learner, rng, rollin, log=log, t0=t_start, after_round=keep)
    for env in envs:
        env.close()
    log["train_states"] = len(learner)
    log["train_seconds"] = time.time() - t_start
    log["parameters"] = int(learner.model.num_parameters())
    learner.save(out_dir / spec.name, trained_on=spec.env)
    return log


def prompt_text(obs, spec: ModelSpec) -> str:
    """The prompt a model trained with ``spec`` sees for ``obs``."""

    return build_prompt(obs, history_length=spec.history_length, list_actions=spec.list_actions)
