"""Episodes per second of ``londi eval`` with one env against several played side by side.

On the default pair and env: always-QUICK, always-DEEPTHINK and LONDI, each evaluated with
``--num-envs 1``, with ``--num-envs N`` (the games in this process) and with ``--num-envs N
--env-processes`` (each game in its own worker process), on the same held-out episodes in one
run. Reports episodes per second, the ratio to ``--num-envs 1``, and how many episodes differ
from ``--num-envs 1``'s (a batched forward sums in another order, which can flip a sampled action
that sits on a boundary).

    python scripts/bench_vector.py --episodes 200 --seed 9 --out runs/bench_vector

Without ``--switch`` a LONDI switch is trained first with ``londi train``'s defaults (into
``OUT/switch``, reused when it is there). Results: ``OUT/bench_vector.json`` and a markdown table
on stdout. The figures depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from londi.agents.lm import load_policy
from londi.core.io import atomic_write_json
from londi.evaluation.loop import evaluate_methods
from londi.evaluation.registry import build_method
from londi.learn.train import TrainConfig, train_switch

METHODS = ("always-quick", "always-deepthink", "londi")
KEYS = ("success", "return", "steps", "quick_calls", "deepthink_calls")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=9, help="run seed (default 9, the validation seed)")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every configuration")
    parser.add_argument("--switch", default=None, help="a trained switch (default: train one into OUT/switch)")
    parser.add_argument("--out", default="runs/bench_vector")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    switch = Path(args.switch) if args.switch else out / "switch"
    if not (switch / "model.zip").exists():
        print(f"training a switch into {switch} (londi train's defaults)", file=sys.stderr)
        train_switch(TrainConfig().validate(), switch, progress=False).get_env().close()
    quick, deepthink = load_policy("quick-dagger"), load_policy("deepthink-dagger")
    configs = [("num-envs 1", 1, False), (f"num-envs {args.num_envs}", args.num_envs, False),
               (f"num-envs {args.num_envs}, env processes", args.num_envs, True)]
    rows: list[dict[str, Any]] = []
    for method in METHODS:
        reference = None
        for label, n, processes in configs:
            built = build_method(method, quick=quick, deepthink=deepthink, switch=str(switch) if method == "londi" else None)
            t0 = time.perf_counter()
            results = evaluate_methods({method: built}, episodes=args.episodes, seed=args.seed, progress=False,
                                       num_envs=n, env_processes=processes)
            wall = time.perf_counter() - t0
            entry = results["methods"][method]
            episodes = [tuple(e[k] for k in KEYS) for e in entry["per_episode"]]
            if reference is None:
                reference = (episodes, args.episodes / wall)
            rows.append({
                "method": method, "config": label, "num_envs": n, "env_processes": processes, "wall_seconds": wall,
                "episodes_per_second": args.episodes / wall, "ratio": (args.episodes / wall) / reference[1],
                "differing_episodes": sum(a != b for a, b in zip(episodes, reference[0])),
                "success": entry["success"], "deepthink_call_frac": entry["deepthink_call_frac"],
                "device_seconds_per_episode": entry["device_seconds"]["total"],
            })
            print(f"{method:<17} {label:<28} {rows[-1]['episodes_per_second']:6.2f} eps/s  x{rows[-1]['ratio']:.2f}  "
                  f"differing {rows[-1]['differing_episodes']}", file=sys.stderr, flush=True)
    report = {"episodes": args.episodes, "seed": args.seed, "threads": args.threads, "switch": str(switch),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), "
                         f"{os.cpu_count()} CPUs", "date": time.strftime("%Y-%m-%d"), "rows": rows}
    atomic_write_json(out / "bench_vector.json", report)
    print("| method | configuration | episodes/s | vs num-envs 1 | differing episodes | success | DT frac |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['config']} | {r['episodes_per_second']:.2f} | {r['ratio']:.2f}x | "
              f"{r['differing_episodes']} / {args.episodes} | {r['success']:.3f} | {r['deepthink_call_frac']:.3f} |")
    print(json.dumps({"written": str(out / "bench_vector.json")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
