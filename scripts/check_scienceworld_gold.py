#!/usr/bin/env python
"""Replay the gold path of every ScienceWorld task through the LONDI wrapper and check score 100.

For each of the package's 30 tasks this makes :class:`londi.envs.scienceworld.ScienceWorldTextEnv`
(``expert=True``, the default ``easy`` simplifications), resets it to variation 0, plays the gold
path (**the oracle**, ``get_gold_action_sequence``) through ``env.step`` and records the final
score, whether the episode terminated with success, the gold-path length, how many gold actions
were missing from the simulator's valid-action list when played, and the wall time (load and
replay). The step limit is lifted for the replay (``--max-steps``) so that the gold paths longer
than the default limit of 100 steps finish; they are flagged ``longer_than_default_limit``.

Example (the command behind the figures in docs/benchmarks.md)::

    python scripts/check_scienceworld_gold.py --out runs/bench/scienceworld_gold.json

Exit status 0 when every task reaches score 100, 1 otherwise.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from londi.envs.scienceworld import (
    DEFAULT_MAX_STEPS,
    DEFAULT_SIMPLIFICATIONS,
    SPLITS,
    ScienceWorldTextEnv,
    scienceworld_task_names,
)
from tqdm import tqdm

logger = logging.getLogger("check_scienceworld_gold")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/bench/scienceworld_gold.json"))
    p.add_argument("--tasks", nargs="+", default=None, help="task names (default: all 30)")
    p.add_argument("--variation", type=int, default=0)
    p.add_argument("--simplifications", default=DEFAULT_SIMPLIFICATIONS)
    p.add_argument("--max-steps", type=int, default=1000, help="step limit for the replay (default 1000)")
    return p.parse_args(argv)


def write_json_atomic(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        json.dump(data, f, indent=2)
        tmp = f.name
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def check_task(task: str, variation: int, simplifications: str, max_steps: int) -> dict:
    """Replay ``task``'s gold path at ``variation``; one JVM per task, closed afterwards."""
    t0 = time.perf_counter()
    env = ScienceWorldTextEnv(task, simplifications=simplifications, max_steps=max_steps)
    try:
        split = next(s for s in SPLITS if variation in env.split_variations(s))
        if split != env.split:  # the reset options take variations of the env's own split
            env.close()
            env = ScienceWorldTextEnv(task, split=split, simplifications=simplifications, max_steps=max_steps)
        t_load = time.perf_counter()
        _, info = env.reset(options={"variation": variation})
        load_s = time.perf_counter() - t_load
        gold = env.gold_path
        steps, missing, terminated, truncated = 0, 0, False, False
        t_play = time.perf_counter()
        for action in gold:
            missing += action not in info["text_obs"].admissible_actions
            _, _, terminated, truncated, info = env.step(action)
            steps += 1
            if terminated or truncated:
                break
        play_s = time.perf_counter() - t_play
    finally:
        env.close()
    return {
        "task": task,
        "variation": variation,
        "split": split,
        "score": info["score"],
        "success": bool(terminated and info["success"]),
        "gold_length": len(gold),
        "steps_played": steps,
        "gold_actions_not_in_valid_list": missing,
        "longer_than_default_limit": steps > DEFAULT_MAX_STEPS,
        "reset_seconds": round(load_s, 2),
        "replay_seconds": round(play_s, 2),
        "seconds_per_step": round(play_s / max(steps, 1), 4),
        "total_seconds": round(time.perf_counter() - t0, 2),
    }


def main(argv: list[str] | None = None) -> int:
    # The package and py4j log every load and shutdown at INFO; this script reports per task.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    args = parse_args(argv)
    tasks = args.tasks or scienceworld_task_names()
    results = []
    t0 = time.perf_counter()
    for task in tqdm(tasks, desc="gold paths", unit="task"):
        row = check_task(task, args.variation, args.simplifications, args.max_steps)
        results.append(row)
        tqdm.write(f"{task:50s} score {row['score']:4d}  steps {row['steps_played']:4d}  {row['total_seconds']:6.1f} s")
    total = time.perf_counter() - t0
    import scienceworld

    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible ({platform.platform()})",
        "scienceworld_version": scienceworld.__version__,
        "simplifications": args.simplifications,
        "variation": args.variation,
        "tasks": len(results),
        "reached_100": sum(r["score"] == 100 for r in results),
        "total_seconds": round(total, 1),
        "total_steps": sum(r["steps_played"] for r in results),
        "results": results,
    }
    write_json_atomic(args.out, report)
    logger.info("%d/%d tasks reach score 100 in %.1f s; results in %s",
                report["reached_100"], len(results), total, args.out)
    failed = [r["task"] for r in results if r["score"] != 100]
    if failed:
        logger.error("below 100: %s", ", ".join(failed))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
