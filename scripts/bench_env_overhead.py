#!/usr/bin/env python
"""Measure what the LONDI ScienceWorld and TextWorld wrappers add per step over the raw packages.

Side by side in one process, with the same actions and the same seeds, a raw package env and a
wrapped env play the same episode in **lockstep**: step k is played on both sides back to back
(which of the two goes first alternates from step to step), and each call is timed. A burst of
load on the shared machine thus hits both sides of a pair alike.

* ScienceWorld: the raw ``scienceworld.ScienceWorldEnv`` driven with the package calls the wrapper
  makes (``load`` with the gold path, ``get_gold_action_sequence``, ``step("look around")``, then
  ``step`` per action) next to :class:`~londi.envs.scienceworld.ScienceWorldTextEnv`
  (``reset(seed=...)``, ``step``). The package's own ``reset()`` would load the task a second
  time, so the wrapper's reset is the cheaper one. Each side needs its own JVM, and two JVMs can
  differ by ~10% in speed (their JIT compilers decide differently), so the two JVMs swap roles
  every round. The variation is the one the wrapper draws from the seed; each side plays the gold
  path (**oracle**) its own load generated: the package names look-alike objects differently from
  one load to the next, so one JVM's gold actions can fail in the other (the share of identical
  action pairs is reported). Unrecorded rounds warm both JITs up first.
* TextWorld: ``textworld.start`` with the very ``EnvInfos`` the wrapper requests (admissible
  commands, policy commands, description, inventory, ...) next to
  :class:`~londi.envs.textworld.TextWorldTextEnv`; the actions are the game's walkthrough. Two
  instances swap roles every round here too (one instance can be a few percent faster than
  another, e.g. from its memory layout). One game per challenge of the default set (made with
  ``tw-make`` on first use).

Reported per env: mean and median step time of each side; the end-to-end overhead, the median
over step pairs of ``wrapped / raw - 1`` with a 95% bootstrap interval over rounds; and the
wrapper's *own* time per step (its step time minus the time of the package call inside it,
measured in the same call), the precise figure, which the exit status checks against
``--limit``. Python's cyclic GC is off while a round is timed (and run between rounds), so that
its pauses do not land at random on one side. Example (the command behind docs/benchmarks.md)::

    python scripts/bench_env_overhead.py --out runs/bench/env_overhead.json
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from londi.envs.scienceworld import ScienceWorldTextEnv
from londi.envs.textworld import CHALLENGES, TextWorldTextEnv, default_games

logger = logging.getLogger("bench_env_overhead")

SW_TASKS = ("find-non-living-thing", "chemistry-mix", "power-component")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/bench/env_overhead.json"))
    p.add_argument("--sw-tasks", nargs="*", default=list(SW_TASKS))
    p.add_argument("--sw-rounds", type=int, default=24, help="recorded ScienceWorld rounds (seeds) per task")
    p.add_argument("--sw-warmup", type=int, default=3, help="unrecorded ScienceWorld rounds first (JIT)")
    p.add_argument("--tw-challenges", nargs="*", default=list(CHALLENGES))
    p.add_argument("--tw-rounds", type=int, default=80, help="recorded TextWorld rounds per game")
    p.add_argument("--tw-warmup", type=int, default=3, help="unrecorded TextWorld rounds first")
    p.add_argument("--tw-cache-dir", type=Path, default=None, help="where the TextWorld games are (made)")
    p.add_argument("--limit", type=float, default=5.0, help="fail if the wrapper's own time exceeds this %% of a raw step")
    return p.parse_args(argv)


class Timed:
    """Wraps a callable and keeps the duration of its last call (the package call inside the
    wrapper's step)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.last = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.last = time.perf_counter() - t


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Collect, then keep the cyclic GC off while a round is timed (both sides alike)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Rounds:
    """Per-round lists of step times (seconds) of both sides, and the package time inside the
    wrapper's steps."""

    def __init__(self) -> None:
        self.raw: list[list[float]] = []
        self.wrapped: list[list[float]] = []
        self.inner: list[list[float]] = []
        self.same_action: list[int] = []
        self.raw_resets: list[float] = []
        self.wrapped_resets: list[float] = []

    def new_round(self) -> None:
        self.raw.append([])
        self.wrapped.append([])
        self.inner.append([])
        self.same_action.append(0)

    def summary(self) -> dict[str, Any]:
        raw_all, wrapped_all, inner_all = (
            [x for row in rows for x in row] for rows in (self.raw, self.wrapped, self.inner)
        )
        own = [w - i for w, i in zip(wrapped_all, inner_all)]
        raw_mean, wrapped_mean = statistics.fmean(raw_all), statistics.fmean(wrapped_all)
        per_round = [np.log(np.array(w) / np.array(r)) for r, w in zip(self.raw, self.wrapped)]
        paired = float(np.expm1(np.median(np.concatenate(per_round))))
        # The pairs of one round share the machine's state, so the interval resamples rounds.
        rng = np.random.default_rng(0)
        boot = [
            np.median(np.concatenate([per_round[i] for i in rng.integers(len(per_round), size=len(per_round))]))
            for _ in range(2_000)
        ]
        lo, hi = np.expm1(np.percentile(boot, [2.5, 97.5]))
        out = {
            "rounds": len(self.raw),
            "steps": len(raw_all),
            "same_action_pct": round(100 * sum(self.same_action) / len(raw_all), 1),
            "raw_ms_mean": round(1e3 * raw_mean, 4),
            "raw_ms_median": round(1e3 * statistics.median(raw_all), 4),
            "wrapped_ms_mean": round(1e3 * wrapped_mean, 4),
            "wrapped_ms_median": round(1e3 * statistics.median(wrapped_all), 4),
            "overhead_pct_mean": round(100 * (wrapped_mean / raw_mean - 1), 2),
            "overhead_pct_paired_median": round(100 * paired, 2),
            "overhead_pct_paired_ci95": [round(100 * float(lo), 2), round(100 * float(hi), 2)],
            "own_ms_mean": round(1e3 * statistics.fmean(own), 4),
            "own_ms_median": round(1e3 * statistics.median(own), 4),
            "own_pct_of_raw": round(100 * statistics.fmean(own) / raw_mean, 3),
            "own_pct_of_raw_median": round(100 * statistics.median(own) / statistics.median(raw_all), 3),
        }
        if self.raw_resets:
            out["raw_reset_s_mean"] = round(statistics.fmean(self.raw_resets), 3)
            out["wrapped_reset_s_mean"] = round(statistics.fmean(self.wrapped_resets), 3)
        out["raw_ms_per_round"] = [[round(1e3 * x, 3) for x in row] for row in self.raw]
        out["wrapped_ms_per_round"] = [[round(1e3 * x, 3) for x in row] for row in self.wrapped]
        return out


def lockstep(
    rounds: Rounds, record: bool, raw_actions: list[str], wrapped_actions: list[str],
    raw_step: Callable[[str], bool], wrapped_step: Callable[[str], bool], inner: Timed, first_raw: bool,
) -> None:
    """Play each side's actions, step k of both back to back (alternating which goes first),
    until both are done; a pair is recorded while both sides still play."""
    if record:
        rounds.new_round()
    done = {"raw": False, "wrapped": False}
    plays = {"raw": (raw_actions, raw_step), "wrapped": (wrapped_actions, wrapped_step)}
    for k in range(max(len(raw_actions), len(wrapped_actions))):
        order = ("raw", "wrapped") if (k % 2 == 0) == first_raw else ("wrapped", "raw")
        times: dict[str, float] = {}
        for side in order:
            actions, step = plays[side]
            if done[side] or k >= len(actions):
                continue
            t = time.perf_counter()
            done[side] = step(actions[k])
            times[side] = time.perf_counter() - t
        if record and len(times) == 2:
            rounds.raw[-1].append(times["raw"])
            rounds.wrapped[-1].append(times["wrapped"])
            rounds.inner[-1].append(inner.last)
            rounds.same_action[-1] += raw_actions[k] == wrapped_actions[k]
        if done["raw"] and done["wrapped"]:
            return
    raise RuntimeError(f"an episode did not end: {done}")


# ---------------------------------------------------------------------- ScienceWorld
def bench_scienceworld(task: str, n_rounds: int, warmup: int) -> dict[str, Any]:
    # Two wrapped envs, each with its own JVM. In each round one plays the wrapped side and the
    # *package object inside the other* plays the raw side; the roles swap every round, so that
    # a difference between the two JVMs' JIT-compiled code (which can reach 10%) cancels out.
    envs = [ScienceWorldTextEnv(task, expert=True, max_steps=10_000) for _ in range(2)]
    rounds = Rounds()
    try:
        variations = envs[0].split_variations()
        for env in envs:
            env.reset(seed=0)  # start both JVMs the same way
        for r in range(-warmup, n_rounds):  # negative rounds warm both JITs up, unrecorded
            seed = r % n_rounds
            env, raw = envs[r % 2], envs[1 - r % 2]._sw
            # The variation the wrapper draws from this seed (gymnasium seeds np_random this way).
            variation = int(variations[int(np.random.default_rng(seed).integers(len(variations)))])
            first_raw = r % 4 < 2
            with no_gc():
                for side in ("raw", "wrapped") if first_raw else ("wrapped", "raw"):
                    t = time.perf_counter()
                    if side == "raw":
                        # The package calls the wrapper's reset makes: its own reset() would load
                        # the task a second time (its server-side reset is a load), which changes
                        # how much garbage the JVM collects during the following steps.
                        raw.load(task, variation, env.simplifications, generateGoldPath=True)
                        raw_gold = raw.get_gold_action_sequence()
                        raw_obs = raw.step("look around")[0]
                        t_raw = time.perf_counter() - t
                    else:
                        _, info = env.reset(seed=seed)
                        t_wrapped = time.perf_counter() - t
                # ScienceWorld may list a room's objects in another order on another load of the
                # same variation, so the first observations are compared as sets of lines.
                if info["variation"] != variation or sorted(info["text_obs"].text.splitlines()) != sorted(
                    raw_obs.splitlines()
                ):
                    raise RuntimeError("the raw and wrapped episodes start differently")
                inner = Timed(env._sw.step)
                env._sw.step = inner  # time the package call inside the wrapper's step
                try:
                    lockstep(
                        rounds, r >= 0, raw_gold, list(env.gold_path),
                        raw_step=lambda a, raw=raw: raw.step(a)[2],
                        wrapped_step=lambda a, env=env: any(env.step(a)[2:4]),
                        inner=inner, first_raw=first_raw,
                    )
                finally:
                    del env._sw.step
            if r >= 0:
                rounds.raw_resets.append(t_raw)
                rounds.wrapped_resets.append(t_wrapped)
        return rounds.summary()
    finally:
        for env in envs:
            env.close()


# ---------------------------------------------------------------------- TextWorld
def bench_textworld(game: Path, n_rounds: int, warmup: int) -> dict[str, Any]:
    # As for ScienceWorld, two wrapped envs swap roles every round: the raw side is the textworld
    # env inside the other one (``textworld.start`` with the very ``EnvInfos`` the wrapper
    # requests), so that a difference between the two instances (memory layout) cancels out.
    envs = [TextWorldTextEnv(game, expert=True, max_steps=10_000) for _ in range(2)]
    rounds = Rounds()
    try:
        for env in envs:
            env.reset(seed=0)
        walkthrough = envs[0].walkthrough
        for r in range(-warmup, n_rounds):
            env, raw = envs[r % 2], envs[1 - r % 2]._env
            first_raw = r % 4 < 2
            with no_gc():
                if first_raw:
                    raw.reset()
                    env.reset(seed=max(r, 0))
                else:
                    env.reset(seed=max(r, 0))
                    raw.reset()
                inner = Timed(env._env.step)
                env._env.step = inner  # time the package call inside the wrapper's step
                try:
                    lockstep(
                        rounds, r >= 0, walkthrough, walkthrough,
                        raw_step=lambda a, raw=raw: raw.step(a)[2],
                        wrapped_step=lambda a, env=env: any(env.step(a)[2:4]),
                        inner=inner, first_raw=first_raw,
                    )
                finally:
                    del env._env.step
        return rounds.summary()
    finally:
        for env in envs:
            env.close()


def write_json_atomic(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        json.dump(data, f, indent=2)
        tmp = f.name
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    # The packages log every load and shutdown at INFO; this script reports per env.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    args = parse_args(argv)
    rows: dict[str, dict[str, Any]] = {}
    for challenge in args.tw_challenges:
        game = default_games(challenge, n_games=1, cache_dir=args.tw_cache_dir)[0]
        rows[f"TextWorld {challenge}"] = bench_textworld(game, args.tw_rounds, args.tw_warmup)
        logger.info("TextWorld %s done", challenge)
    for task in args.sw_tasks:
        rows[f"ScienceWorld {task}"] = bench_scienceworld(task, args.sw_rounds, args.sw_warmup)
        logger.info("ScienceWorld %s done", task)
    import scienceworld
    import textworld

    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible",
        "scienceworld_version": scienceworld.__version__,
        "textworld_version": textworld.__version__,
        "limit_pct": args.limit,
        "results": rows,
    }
    write_json_atomic(args.out, report)
    print("| env | rounds / steps | raw ms/step (mean / median) | wrapped ms/step (mean / median) "
          "| end-to-end: median of paired steps (95% CI) | wrapper's own time per step (mean, % of raw) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        lo, hi = r["overhead_pct_paired_ci95"]
        print(f"| {name} | {r['rounds']} / {r['steps']} | {r['raw_ms_mean']:.2f} / {r['raw_ms_median']:.2f} "
              f"| {r['wrapped_ms_mean']:.2f} / {r['wrapped_ms_median']:.2f} "
              f"| {r['overhead_pct_paired_median']:+.2f}% ({lo:+.2f}% .. {hi:+.2f}%) "
              f"| {1e3 * r['own_ms_mean']:.0f} us ({r['own_pct_of_raw']:.2f}%) |")
    for name, r in rows.items():
        if "raw_reset_s_mean" in r:
            print(f"{name}: reset {r['raw_reset_s_mean']:.3f} s raw (load + look around) vs "
                  f"{r['wrapped_reset_s_mean']:.3f} s wrapped")
    worst = max(r["own_pct_of_raw"] for r in rows.values()) if rows else 0.0
    logger.info("results in %s; the wrappers' own time is at most %.2f%% of a raw step", args.out, worst)
    return 0 if worst <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
