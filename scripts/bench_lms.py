#!/usr/bin/env python
"""Measure the shipped LM pair (QUICK and DEEPTHINK) on held-out BabyAI-Text episodes.

For each model, in one process and on the same held-out seeds, this plays full episodes with
the model in control (through :class:`londi.agents.lm.HFPolicy`, the code path any checkpoint
uses) and reports:

* success rate (95% Wilson interval) and mean return;
* device-seconds, wall milliseconds, tokens and estimated FLOPs per call (from the policies'
  :class:`~londi.core.meter.CallRecord` s);
* the per-step agreement with the expert (**an oracle**: Minigrid's BabyAIBot) on "easy" states
  (the goal object is in view straight ahead) and "hard" states (in view but off to the side,
  or not in view), measured on the states the model itself visits.

Example (the command behind the table in docs/benchmarks.md)::

    python scripts/bench_lms.py --episodes 200 --threads 1 --out runs/bench_lms.json

A command line over :mod:`londi.agents.training.evaluation` (the measurements and tables). The
held-out seeds (from ``HELDOUT_SEED_START``, 500,000) are never used by ``scripts/train_lms.py``,
which draws its training episodes from seeds ``>= 1_000_000``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from londi.agents.training.evaluation import (
    agreement_table,
    evaluate_policy,
    expert_state_agreement,
    markdown_table,
)
from londi.agents.training.specs import HELDOUT_SEED_START


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from londi.agents.checkpoints import SHIPPED_MODELS

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
