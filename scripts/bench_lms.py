#!/usr/bin/env python
"""Measure the shipped LM pair (QUICK and DEEPTHINK) on held-out BabyAI-Text episodes.

For each model, in one process and on the same held-out seeds, this plays full episodes with
the model in control (through :class:`londi.agents.lm.HFPolicy`, the code path any checkpoint
uses) and reports:

* success rate (95% Wilson interval) and mean return;
* device-seconds, wall milliseconds, tokens and estimated FLOPs per call (from the policies'
  :class:`~londi.meter.CallRecord` s);
* the per-step agreement with the expert (**an oracle**: Minigrid's BabyAIBot) on "easy" states
  (the goal object is in view straight ahead) and "hard" states (in view but off to the side,
  or not in view), measured on the states the model itself visits.

Example (the command behind the table in docs/benchmarks.md)::

    python scripts/bench_lms.py --episodes 200 --threads 1 --out runs/bench_lms.json

The held-out seeds (:data:`HELDOUT_SEEDS`) are never used by ``scripts/train_lms.py``, which
draws its training episodes from seeds ``>= 1_000_000``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

#: Seeds of the held-out evaluation episodes (the LMs never trained on seeds below 1_000_000).
HELDOUT_SEED_START = 500_000
#: Categories of states, by where the goal object is.
DIFFICULTIES = ("ahead", "side", "unseen")
_GOAL_RE = re.compile(r"go to (?:the|a) (\w+) (\w+)")


def state_difficulty(goal: str, text: str) -> str:
    """Where the goal object of a GoTo mission is in the text observation.

    ``"ahead"``: a matching object is in view straight ahead (no left/right offset) - the easy
    case; ``"side"``: matching objects are in view but all off to the side; ``"unseen"``: none
    is in view (or the mission is not a simple go-to). ``side`` and ``unseen`` are the "hard"
    states.
    """
    m = _GOAL_RE.search(goal)
    if m is None:
        return "unseen"
    target = f"You see a {m.group(1)} {m.group(2)}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(target)]
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

    @property
    def success_rate(self) -> float:
        return self.successes / max(self.episodes, 1)

    def agreement_rate(self, kinds: tuple[str, ...]) -> float:
        agree = sum(self.agreement.get(k, [0, 0])[0] for k in kinds)
        total = sum(self.agreement.get(k, [0, 0])[1] for k in kinds)
        return agree / total if total else float("nan")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["success_rate"] = self.success_rate
        d["success_ci95"] = wilson(self.successes, self.episodes)
        d["agreement_easy"] = self.agreement_rate(("ahead",))
        d["agreement_hard"] = self.agreement_rate(("side", "unseen"))
        for name, table in (("expert_agreement_easy", ("ahead",)), ("expert_agreement_hard", ("side", "unseen"))):
            agree = sum(self.expert_agreement.get(k, [0, 0])[0] for k in table)
            total = sum(self.expert_agreement.get(k, [0, 0])[1] for k in table)
            d[name] = agree / total if total else float("nan")
        return d


class RandomPolicy:
    """Uniformly random over the admissible actions (seeded): the floor every trained model must beat."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def act(self, obs):
        from londi.agents.base import Decision
        from londi.meter import CallRecord

        n = len(obs.admissible_actions)
        action = obs.admissible_actions[int(self._rng.integers(n))]
        return Decision(action=action, record=CallRecord(model=self.name), probs=np.full(n, 1.0 / n))


def evaluate_policy(policy, seeds, *, env_id: str | None = None, progress: bool = True, desc: str = "") -> EvalResult:
    """Play one episode per seed with ``policy`` in control and collect the metrics above."""
    from tqdm.auto import tqdm

    from londi.envs import DEFAULT_ENV_ID, make_env

    env = make_env(env_id or DEFAULT_ENV_ID)
    seeds = list(seeds)
    succ, rets, steps = 0, [], []
    dev_s, wall_s, tok_in, tok_out, flops = [], [], [], [], []
    agreement = {k: [0, 0] for k in DIFFICULTIES}
    try:
        for seed in tqdm(seeds, desc=desc or f"eval {policy.name}", disable=not progress, leave=False):
            policy.reset()
            if hasattr(policy, "set_seed"):  # sampling policies: the same draws for the same episode
                policy.set_seed(int(seed))
            _, info = env.reset(seed=int(seed))
            obs = info["text_obs"]
            ret, n, done = 0.0, 0, False
            while not done:
                decision = policy.act(obs)
                rec = decision.record
                dev_s.append(rec.device_seconds)
                wall_s.append(rec.wall_seconds)
                tok_in.append(rec.input_tokens)
                tok_out.append(rec.output_tokens)
                flops.append(rec.flops)
                if obs.oracle_action is not None:  # the oracle label, for agreement only
                    kind = state_difficulty(obs.goal, obs.text)
                    agreement[kind][0] += int(decision.action == obs.oracle_action)
                    agreement[kind][1] += 1
                _, r, term, trunc, info = env.step(decision.action)
                obs = info["text_obs"]
                ret += r
                n += 1
                done = term or trunc
            succ += int(info.get("success", False))
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
        calls=len(dev_s),
        device_seconds_per_call=float(np.mean(dev_s)),
        wall_ms_per_call=1000 * float(np.mean(wall_s)),
        input_tokens_per_call=float(np.mean(tok_in)),
        output_tokens_per_call=float(np.mean(tok_out)),
        flops_per_call=float(np.mean(flops)),
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

    from londi.envs import DEFAULT_ENV_ID, make_env

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


def _rate(table: dict[str, list[int]], kinds: tuple[str, ...]) -> float:
    agree = sum(table.get(k, [0, 0])[0] for k in kinds)
    total = sum(table.get(k, [0, 0])[1] for k in kinds)
    return agree / total if total else float("nan")


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
            f"| {r.model} | {r.success_rate:.3f} ({lo:.2f}-{hi:.2f}) | {r.mean_return:.3f} | {r.mean_steps:.1f} | "
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
            rows.append(f"| {r.model} | {label} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from londi.agents.lm import SHIPPED_MODELS

    parser.add_argument("--models", nargs="+", default=list(SHIPPED_MODELS),
                        help="shipped names or checkpoint folders (default: the default pair, %(default)s)")
    parser.add_argument("--episodes", type=int, default=200, help="held-out episodes per model")
    parser.add_argument("--seed-start", type=int, default=HELDOUT_SEED_START, help="first held-out seed")
    parser.add_argument("--env", default=None, help="env id (default: londi's DEFAULT_ENV_ID)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: leave torch's default)")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.episodes <= 0:
        parser.error("--episodes must be positive")

    import torch

    from londi.agents.lm import load_policy

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    seeds = range(args.seed_start, args.seed_start + args.episodes)
    results = []
    t0 = time.time()
    for spec in args.models:
        policy = load_policy(spec, device=args.device)
        result = evaluate_policy(policy, seeds, env_id=args.env, desc=f"eval {policy.name}")
        result.expert_agreement = expert_state_agreement(policy, seeds, env_id=args.env)
        results.append(result)
    env_id = args.env or "londi/BabyAIText-GoToLocal-v0"
    print(f"env {env_id}, {args.episodes} held-out episodes (seeds {seeds.start}..{seeds.stop - 1}), "
          f"device {args.device}, torch threads {torch.get_num_threads()}, {time.time() - t0:.0f} s")
    print(markdown_table(results))
    print(agreement_table(results))
    if len(results) >= 2 and results[0].device_seconds_per_call > 0:
        ratio = results[-1].device_seconds_per_call / results[0].device_seconds_per_call
        print(f"device-seconds per call, {results[-1].model} / {results[0].model}: {ratio:.1f}x")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "env": env_id,
            "threads": torch.get_num_threads(),
            "device": args.device,
            "command": "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
            "results": [r.to_dict() for r in results],
        }
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
