#!/usr/bin/env python
"""Make the seeded default set of TextWorld games with the ``tw-make`` that ``textworld`` ships.

For each challenge of :data:`londi.envs.textworld.CHALLENGES` (``simple``, ``coin_collector``,
``treasure_hunter``, ``cooking``) and each seed ``first_seed .. first_seed + n_games - 1`` this
runs ``tw-make`` with fixed settings and that seed (no download) and writes
``<challenge>-<settings tag>-sNNN.z8`` (the tag digests the settings and the textworld version,
see :func:`londi.envs.textworld.settings_tag`) with its ``.json`` (needed for admissible commands
and the expert) and ``.ni``, and records what it made in ``manifest.json``. Games that are
already there are kept (``--force`` remakes them). ``--check`` then plays every game's
walkthrough and the policy-commands expert (both **oracles**) through the LONDI env and records
whether they reach the maximum score.

With the defaults the games land in the cache that the registered ids
``londi/TextWorld-{Simple,CoinCollector,TreasureHunter,Cooking}-v0`` read, so they start at
once afterwards::

    python scripts/make_textworld_games.py                       # 4 x 5 games into the cache
    python scripts/make_textworld_games.py --out games/ --challenges cooking --n-games 20
    python scripts/make_textworld_games.py --check               # and replay them (oracles)

Each game takes a few seconds to make (tw-make compiles it with Inform 7).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from londi.envs.textworld import (
    CHALLENGES,
    FIRST_SEED,
    default_cache_dir,
    game_name,
    make_game,
    tw_make_command,
)

logger = logging.getLogger("make_textworld_games")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None,
                   help=f"output folder (default: the registered ids' cache, {default_cache_dir()})")
    p.add_argument("--challenges", nargs="+", default=list(CHALLENGES), choices=list(CHALLENGES),
                   help="which challenges to make (default: all)")
    p.add_argument("--n-games", type=int, default=5, help="games per challenge (default 5)")
    p.add_argument("--first-seed", type=int, default=FIRST_SEED, help=f"first tw-make seed (default {FIRST_SEED})")
    p.add_argument("--force", action="store_true", help="remake games that already exist")
    p.add_argument("--check", action="store_true",
                   help="play each game's walkthrough and the policy-commands expert (oracles) through "
                        "londi's TextWorld env and record whether they reach the maximum score")
    args = p.parse_args(argv)
    if args.n_games <= 0:
        p.error("--n-games must be positive")
    return args


def write_json_atomic(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        json.dump(data, f, indent=2)
        tmp = f.name
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def check_game(path: Path) -> dict[str, object]:
    """Play the walkthrough, then the expert, through the env; the return of each (oracles)."""
    from londi.agents.expert import OracleExpert
    from londi.envs.textworld import TextWorldTextEnv

    env = TextWorldTextEnv(path, max_steps=200)
    try:
        _, info = env.reset(seed=0)
        walk_return, walk_steps = 0.0, 0
        for command in env.walkthrough or []:
            _, reward, terminated, truncated, info = env.step(command)
            walk_return += reward
            walk_steps += 1
            if terminated or truncated:
                break
        walk_won = bool(info["won"])
        _, info = env.reset(seed=0)
        expert, expert_return, expert_steps = OracleExpert(), 0.0, 0
        while True:
            _, reward, terminated, truncated, info = env.step(expert.act(info["text_obs"]).action)
            expert_return += reward
            expert_steps += 1
            if terminated or truncated:
                break
        return {
            "max_score": info["max_score"],
            "walkthrough_return": walk_return, "walkthrough_steps": walk_steps, "walkthrough_won": walk_won,
            "expert_return": expert_return, "expert_steps": expert_steps, "expert_won": bool(info["won"]),
        }
    finally:
        env.close()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    out = (args.out or default_cache_dir()).expanduser()
    import textworld

    jobs = [(c, s) for c in args.challenges for s in range(args.first_seed, args.first_seed + args.n_games)]
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"games": {}}
    manifest["textworld_version"] = textworld.__version__
    t0 = time.perf_counter()
    for challenge, seed in tqdm(jobs, desc="tw-make", unit="game"):
        target = out / f"{game_name(challenge, seed)}.z8"
        kept = not args.force and target.is_file() and target.with_suffix(".json").is_file()
        t = time.perf_counter()
        path = make_game(challenge, seed, out, force=args.force)
        if kept and path.name in manifest["games"]:
            continue  # an existing game keeps its record (and the time it took to make)
        cmd = tw_make_command(challenge, seed, path)
        manifest["games"][path.name] = {
            "challenge": challenge,
            "seed": seed,
            "tw_make": " ".join(["tw-make", *cmd[1:]]),
            "seconds": None if kept else round(time.perf_counter() - t, 2),  # None: made earlier
        }
        write_json_atomic(manifest_path, manifest)  # after every game: a crash loses nothing made
    logger.info("%d games in %s (%.1f s)", len(jobs), out, time.perf_counter() - t0)
    if not args.check:
        return 0
    failed = []
    for challenge, seed in tqdm(jobs, desc="check", unit="game"):
        name = f"{game_name(challenge, seed)}.z8"
        result = check_game(out / name)
        manifest["games"][name]["check"] = result
        ok = (result["walkthrough_won"] and result["expert_won"]
              and result["walkthrough_return"] == result["expert_return"] == result["max_score"])
        if not ok:
            failed.append(name)
    write_json_atomic(manifest_path, manifest)
    logger.info("walkthrough and expert reach the maximum score in %d/%d games%s", len(jobs) - len(failed),
                len(jobs), f"; not in: {', '.join(failed)}" if failed else "")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
