"""Measuring a trained LM on held-out episodes, with the model in control at every step.

:func:`play_episode` is the loop every measurement shares (reset and seed the policy, play,
collect each call's :class:`~londi.core.meter.CallRecord`); on top of it:

* BabyAI-Text: :func:`evaluate_policy` (success with a 95% Wilson interval, return, cost per
  call, agreement with the oracle on the states the model visits, by :func:`state_difficulty`),
  :func:`expert_state_agreement` (greedy agreement on the oracle's own states) and the Markdown
  tables of the model cards (:func:`markdown_table`, :func:`agreement_table`);
* the text games: :func:`evaluate_on_envs` over a setup's held-out envs and :func:`results_table`.

Held-out episodes use env seeds from :data:`~londi.agents.training.specs.HELDOUT_SEED_START`
(500,000 + i), never used in training.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from londi.agents.base import Decision
from londi.agents.training.specs import HELDOUT_SEED_START
from londi.core.meter import CallRecord
from londi.envs import DEFAULT_ENV_ID, make_env
from londi.envs.babyai_text import MIXED_TRAIN_LOCAL_LEVELS, matches_target, mission_target

#: Categories of BabyAI states, by where the goal object is.
DIFFICULTIES = ("ahead", "side", "unseen")


def state_difficulty(goal: str, text: str) -> str:
    """Where the mission's current target object (:func:`~londi.envs.babyai_text.mission_target`:
    the go-to or pick-up object; for put-next-to, the object to carry, then the one to put it
    by) is in the text observation.

    ``"ahead"``: a matching object is in view straight ahead (no left/right offset) - the easy
    case; ``"side"``: matching objects are in view but all off to the side; ``"unseen"``: none
    is in view (or the mission has no target). ``side`` and ``unseen`` are the "hard" states.
    """
    target = mission_target(goal, text)
    if target is None:
        return "unseen"
    lines = [ln.strip() for ln in text.splitlines() if matches_target(ln, target)]
    if not lines:
        return "unseen"
    if any(" left" not in ln and " right" not in ln for ln in lines):
        return "ahead"
    return "side"


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


class RandomPolicy:
    """Uniformly random over the admissible actions (seeded): the floor every trained model must beat."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def act(self, obs):

        n = len(obs.admissible_actions)
        action = obs.admissible_actions[int(self._rng.integers(n))]
        return Decision(action=action, record=CallRecord(model=self.name), probs=np.full(n, 1.0 / n))


def play_episode(policy: Any, env: Any, seed: int,
                 on_step: Callable[[Any, Any], None] | None = None) -> tuple[bool, float, int]:
    """One episode of ``env`` from ``seed`` with ``policy`` choosing every action (reset first, and
    seeded with ``seed`` where it can be: the same draws for the same episode); ``on_step(obs,
    decision)`` sees every call. Returns ``(success, return, steps)``."""
    policy.reset()
    if hasattr(policy, "set_seed"):
        policy.set_seed(int(seed))
    _, info = env.reset(seed=int(seed))
    obs, ret, n, done = info["text_obs"], 0.0, 0, False
    while not done:
        decision = policy.act(obs)
        if on_step is not None:
            on_step(obs, decision)
        _, r, term, trunc, info = env.step(decision.action)
        obs, ret, n, done = info["text_obs"], ret + r, n + 1, term or trunc
    return bool(info.get("success", False)), ret, n


# ------------------------------------------------------------------------------ BabyAI-Text
@dataclass
class EvalResult:
    """What :func:`evaluate_policy` measured for one model."""

    model: str
    episodes: int
    successes: int
    mean_return: float
    mean_steps: float
    calls: int
    device_seconds_per_call: float
    wall_ms_per_call: float
    input_tokens_per_call: float
    output_tokens_per_call: float
    flops_per_call: float
    parameters: int
    history_length: int
    agreement: dict[str, list[int]] = field(default_factory=dict)  # on own states: difficulty -> [agree, total]
    expert_agreement: dict[str, list[int]] = field(default_factory=dict)  # on the expert's states (greedy)
    seeds: list[int] = field(default_factory=list)
    level: str = ""  # the level measured, for a model of the task mix ("" for a one-level model)

    @property
    def label(self) -> str:
        """The model's name, and the level when there is one (the tables' first column)."""
        return f"{self.model} ({self.level})" if self.level else self.model

    @property
    def success_rate(self) -> float:
        return self.successes / max(self.episodes, 1)

    def agreement_rate(self, kinds: tuple[str, ...]) -> float:
        return _rate(self.agreement, kinds)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["success_rate"] = self.success_rate
        d["success_ci95"] = wilson(self.successes, self.episodes)
        d["agreement_easy"] = self.agreement_rate(("ahead",))
        d["agreement_hard"] = self.agreement_rate(("side", "unseen"))
        d["expert_agreement_easy"] = _rate(self.expert_agreement, ("ahead",))
        d["expert_agreement_hard"] = _rate(self.expert_agreement, ("side", "unseen"))
        return d


def _rate(table: dict[str, list[int]], kinds: tuple[str, ...]) -> float:
    agree = sum(table.get(k, [0, 0])[0] for k in kinds)
    total = sum(table.get(k, [0, 0])[1] for k in kinds)
    return agree / total if total else float("nan")


def evaluation_envs(env_id: str) -> list[tuple[str, str]]:
    """``(level, env id)`` to measure a model trained on ``env_id``: each level of the task mix
    (``londi/BabyAIText-MixedTrainLocal-v0``) on its own, else ``[("", env_id)]``."""
    from londi.envs.registration import BABYAI_PREFIX

    if env_id == f"{BABYAI_PREFIX}MixedTrainLocal-v0":
        return [(level, f"{BABYAI_PREFIX}{level}-v0") for level in MIXED_TRAIN_LOCAL_LEVELS]
    return [("", env_id)]


def evaluate_policy(policy, seeds, *, env_id: str | None = None, progress: bool = True, desc: str = "") -> EvalResult:
    """Play one episode per seed with ``policy`` in control and collect the metrics above."""
    from tqdm.auto import tqdm


    env = make_env(env_id or DEFAULT_ENV_ID)
    seeds = list(seeds)
    succ, rets, steps = 0, [], []
    records = []
    agreement = {k: [0, 0] for k in DIFFICULTIES}

    def on_step(obs, decision) -> None:
        records.append(decision.record)
        if obs.oracle_action is not None:  # the oracle label, for agreement only
            kind = state_difficulty(obs.goal, obs.text)
            agreement[kind][0] += int(decision.action == obs.oracle_action)
            agreement[kind][1] += 1

    try:
        for seed in tqdm(seeds, desc=desc or f"eval {policy.name}", disable=not progress, leave=False):
            ok, ret, n = play_episode(policy, env, seed, on_step)
            succ += int(ok)
            rets.append(ret)
            steps.append(n)
    finally:
        env.close()
    return EvalResult(
        model=policy.name,
        episodes=len(seeds),
        successes=succ,
        mean_return=float(np.mean(rets)),
        mean_steps=float(np.mean(steps)),
        calls=len(records),
        device_seconds_per_call=float(np.mean([r.device_seconds for r in records])),
        wall_ms_per_call=1000 * float(np.mean([r.wall_seconds for r in records])),
        input_tokens_per_call=float(np.mean([r.input_tokens for r in records])),
        output_tokens_per_call=float(np.mean([r.output_tokens for r in records])),
        flops_per_call=float(np.mean([r.flops for r in records])),
        parameters=int(getattr(policy, "n_parameters", 0)),
        history_length=int(getattr(policy, "history_length", 0)),
        agreement=agreement,
        seeds=[int(s) for s in seeds],
    )


def expert_state_agreement(policy, seeds, *, env_id: str | None = None, progress: bool = True) -> dict[str, list[int]]:
    """Greedy agreement with the expert (oracle) on the states of the expert's own episodes.

    The expert plays; at every state the model's most likely action is compared with the
    expert's. All models are asked about the same states, so this isolates *where* a model
    errs (by :func:`state_difficulty`) from where its own mistakes would have led it.
    Returns ``{difficulty: [agree, total]}``.
    """
    from tqdm.auto import tqdm


    env = make_env(env_id or DEFAULT_ENV_ID)
    out = {k: [0, 0] for k in DIFFICULTIES}
    try:
        for seed in tqdm(list(seeds), desc=f"expert states {policy.name}", disable=not progress, leave=False):
            _, info = env.reset(seed=int(seed))
            obs, done = info["text_obs"], False
            while not done and obs.oracle_action is not None:
                if hasattr(policy, "score"):
                    choice = obs.admissible_actions[int(np.argmax(policy.score(obs)[0]))]
                else:
                    choice = policy.act(obs).action
                kind = state_difficulty(obs.goal, obs.text)
                out[kind][0] += int(choice == obs.oracle_action)
                out[kind][1] += 1
                _, _, term, trunc, info = env.step(obs.oracle_action)
                obs, done = info["text_obs"], term or trunc
    finally:
        env.close()
    return out


def markdown_table(results: list[EvalResult]) -> str:
    """The results as a Markdown table (one row per model)."""
    head = (
        "| model | success (95% CI) | mean return | steps/episode | device-ms/call | wall-ms/call | "
        "parameters | tokens/call (in + scored) | GFLOPs/call | agreement with expert, easy / hard states |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in results:
        lo, hi = wilson(r.successes, r.episodes)
        rows.append(
            f"| {r.label} | {r.success_rate:.3f} ({lo:.2f}-{hi:.2f}) | {r.mean_return:.3f} | {r.mean_steps:.1f} | "
            f"{1000 * r.device_seconds_per_call:.2f} | {r.wall_ms_per_call:.2f} | {r.parameters:,} | "
            f"{r.input_tokens_per_call:.0f} + {r.output_tokens_per_call:.0f} | {r.flops_per_call / 1e9:.3f} | "
            f"{_rate(r.expert_agreement, ('ahead',)):.2f} / {_rate(r.expert_agreement, ('side', 'unseen')):.2f} |"
        )
    return head + "\n".join(rows) + "\n"


def agreement_table(results: list[EvalResult]) -> str:
    """Per-step agreement with the expert (oracle) by state difficulty, as Markdown: on the
    expert's own states (greedy choice, the same states for every model) and on the states each
    model visits when it plays (its own decoding)."""
    head = "| model | states | " + " | ".join(f"{k} (agree/steps)" for k in DIFFICULTIES) + " |\n"
    head += "|---|---|" + "---|" * len(DIFFICULTIES) + "\n"
    rows = []
    for r in results:
        for label, table in (("expert's, greedy", r.expert_agreement), ("own, as played", r.agreement)):
            if not table:
                continue
            cells = []
            for k in DIFFICULTIES:
                a, t = table.get(k, [0, 0])
                cells.append(f"{a / t:.2f} ({a}/{t})" if t else "n/a")
            rows.append(f"| {r.label} | {label} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


# ------------------------------------------------------------------------------ text games
def evaluate_on_envs(policy, env_kwargs: list[dict], episodes: int, *, progress: bool = True) -> dict:
    """``episodes`` held-out episodes with ``policy`` in control on each env of ``env_kwargs``
    (``make_env`` id and keyword arguments): success, return, cost and actions scored per call."""
    from tqdm.auto import tqdm


    per_env, dev, wall, n_actions, n_scored = {}, [], [], [], []

    def on_step(obs, d) -> None:
        dev.append(d.record.device_seconds)
        wall.append(d.record.wall_seconds)
        n_actions.append(len(obs.admissible_actions))
        n_scored.append(int(np.count_nonzero(d.probs)) if d.probs is not None else 0)

    for kwargs in env_kwargs:
        kw = dict(kwargs)
        env = make_env(kw.pop("id"), disable_env_checker=True, **kw)
        succ, rets, steps = 0, [], []
        try:
            for i in tqdm(range(episodes), desc=f"eval {policy.name} on {kwargs['id']}", leave=False,
                          disable=not progress):
                ok, ret, n = play_episode(policy, env, HELDOUT_SEED_START + i, on_step)
                succ += int(ok)
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
    """:func:`evaluate_on_envs` results as a Markdown table (one row per model)."""
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
