#!/usr/bin/env python
"""Play the ScienceWorld oracle (the gold path) through the LONDI wrapper and check score 100.

For each of the package's 30 tasks this makes :class:`londi.envs.scienceworld.ScienceWorldTextEnv`
(``expert=True``, the default ``easy`` simplifications), resets it to variation 0 and plays the
env's oracle labels (``TextObservation.oracle_action``: the gold path of
``get_gold_action_sequence``, **the oracle**, spelled as the simulator's valid-action list spells
it, its no-ops skipped) through ``env.step``, as :class:`~londi.agents.expert.OracleExpert`
does. It records the final score, whether the episode terminated with success, the gold-path
length, the steps played, how many labels were respelled onto the valid list, how many labels
were missing from the valid list (0 expected: the expert refuses those), and the wall time (load
and replay). The step limit is the task's default (``TASK_MAX_STEPS``, ``--max-steps`` to change
it); episodes cut by it are flagged ``truncated``.

``--lengths K`` checks the step limits instead: it loads ``K`` evenly spaced variations of each
split of each task (no replay) and checks that their gold paths fit the task's default limit.

Examples (the commands behind the figures in docs/benchmarks.md)::

    python scripts/check_scienceworld_gold.py --out runs/bench/scienceworld_gold.json
    python scripts/check_scienceworld_gold.py --lengths 5 --out runs/bench/scienceworld_gold_lengths.json

Exit status 0 when every task reaches score 100 (every gold path fits), 1 otherwise.
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

from tqdm import tqdm

from londi.envs.scienceworld import (
    DEFAULT_SIMPLIFICATIONS,
    SPLITS,
    ScienceWorldTextEnv,
    scienceworld_task_names,
)

logger = logging.getLogger("check_scienceworld_gold")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/bench/scienceworld_gold.json"))
    p.add_argument("--tasks", nargs="+", default=None, help="task names (default: all 30)")
    p.add_argument("--variation", type=int, default=0)
    p.add_argument("--simplifications", default=DEFAULT_SIMPLIFICATIONS)
    p.add_argument("--max-steps", type=int, default=None,
                   help="step limit for the replay (default: the task's default limit, TASK_MAX_STEPS)")
    p.add_argument("--lengths", type=int, default=0, metavar="K",
                   help="instead of replaying, load K evenly spaced variations of each split and check "
                        "that their gold paths fit the task's default step limit")
    return p.parse_args(argv)


def write_json_atomic(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        json.dump(data, f, indent=2)
        tmp = f.name
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def check_task(task: str, variation: int, simplifications: str, max_steps: int | None) -> dict:
    """Play ``task``'s oracle labels at ``variation``; one JVM per task, closed afterwards."""
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
        steps, respelled, unlisted, terminated, truncated = 0, 0, 0, False, False
        t_play = time.perf_counter()
        while info["oracle_action"] is not None:
            label = info["oracle_action"]
            unlisted += label not in info["text_obs"].admissible_actions
            respelled += label != info["gold_action"]
            _, _, terminated, truncated, info = env.step(label)
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
        "labels_respelled": respelled,
        "labels_not_in_valid_list": unlisted,
        "max_steps": env.max_steps,
        "truncated": bool(truncated),
        "reset_seconds": round(load_s, 2),
        "replay_seconds": round(play_s, 2),
        "seconds_per_step": round(play_s / max(steps, 1), 4),
        "total_seconds": round(time.perf_counter() - t0, 2),
    }


def gold_lengths(task: str, simplifications: str, per_split: int) -> dict:
    """The gold-path length of ``per_split`` evenly spaced variations of each split (loads only,
    no replay): what the per-task step limits (``TASK_MAX_STEPS``) are chosen from."""
    t0 = time.perf_counter()
    env = ScienceWorldTextEnv(task, simplifications=simplifications)
    lengths: dict[str, dict[int, int]] = {}
    try:
        for split in SPLITS:
            variations = env.split_variations(split)
            step = max(len(variations) / per_split, 1.0)
            picked = sorted({variations[int(i * step)] for i in range(min(per_split, len(variations)))})
            sw = env._sw
            lengths[split] = {}
            for variation in picked:
                sw.load(env.task, variation, env.simplifications, generateGoldPath=True)
                lengths[split][variation] = len(sw.get_gold_action_sequence())
    finally:
        env.close()
    longest = max(n for per in lengths.values() for n in per.values())
    return {
        "task": task,
        "lengths": {split: {str(v): n for v, n in per.items()} for split, per in lengths.items()},
        "longest": longest,
        "max_steps": env.max_steps,
        "fits_default_limit": longest <= env.max_steps,
        "total_seconds": round(time.perf_counter() - t0, 2),
    }


def main(argv: list[str] | None = None) -> int:
    # The package and py4j log every load and shutdown at INFO; this script reports per task.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    args = parse_args(argv)
    tasks = args.tasks or scienceworld_task_names()
    if args.lengths:
        return main_lengths(args, tasks, argv)
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
    failed = [r["task"] for r in results if r["score"] != 100 or r["labels_not_in_valid_list"]]
    if failed:
        logger.error("below 100: %s", ", ".join(failed))
    return 0 if not failed else 1


def main_lengths(args: argparse.Namespace, tasks: list[str], argv: list[str] | None) -> int:
    results = []
    t0 = time.perf_counter()
    for task in tqdm(tasks, desc="gold lengths", unit="task"):
        row = gold_lengths(task, args.simplifications, args.lengths)
        results.append(row)
        tqdm.write(f"{task:50s} longest {row['longest']:4d}  limit {row['max_steps']:4d}  {row['total_seconds']:6.1f} s")
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.date.today().isoformat(),
        "simplifications": args.simplifications,
        "variations_per_split": args.lengths,
        "total_seconds": round(time.perf_counter() - t0, 1),
        "results": results,
    }
    write_json_atomic(args.out, report)
    short = [r["task"] for r in results if not r["fits_default_limit"]]
    if short:
        logger.error("gold paths longer than the default step limit: %s", ", ".join(short))
    return 0 if not short else 1


if __name__ == "__main__":
    sys.exit(main())
