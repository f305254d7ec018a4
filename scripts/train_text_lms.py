#!/usr/bin/env python
"""Train a QUICK/DEEPTHINK LM pair for TextWorld or ScienceWorld by behaviour cloning from the oracle.

A command line over :mod:`londi.agents.training` (the recipes are
``londi.agents.training.specs.TEXT_SPECS``; the games' setups and the pipeline are in
``londi.agents.training.textgames``): oracle demonstrations (TextWorld's ``policy_commands``,
ScienceWorld's gold path, **oracles**), DAgger rounds for the models whose recipe has them, a
held-out evaluation through the class ``load_policy`` returns, then ``MODEL_CARD.md`` and
``SHA256SUMS`` next to the weights.

Commands::

    python scripts/train_text_lms.py textworld                  # agents/models/textworld-{quick,deepthink}
    python scripts/train_text_lms.py scienceworld               # agents/models/scienceworld-{quick,deepthink}
    python scripts/train_text_lms.py textworld --small --out /tmp/m   # a minute-long pipeline (tests)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from londi.agents.training.specs import GAMES, TEXT_SMALL, TEXT_SPECS, TRAIN_SEED_START, apply_overrides
from londi.agents.training.textgames import SW_TASKS, TW_TRAIN_GAME_SEEDS

logger = logging.getLogger("train_text_lms")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train a TextWorld or ScienceWorld QUICK/DEEPTHINK pair "
                                                 "(behaviour cloning from the oracle, DAgger for TextWorld).")
    parser.add_argument("game", choices=GAMES)
    parser.add_argument("--tasks", nargs="+", default=list(SW_TASKS), help="ScienceWorld tasks")
    parser.add_argument("--train-games", type=int, default=len(TW_TRAIN_GAME_SEEDS), help="TextWorld training games")
    parser.add_argument("--games-dir", default="runs/text_lms/tw_games", help="where the training games are made")
    parser.add_argument("--models", nargs="+", default=["quick", "deepthink"], choices=["quick", "deepthink"])
    parser.add_argument("--out", default=None, help="output folder (default: the package's models folder)")
    parser.add_argument("--small", action="store_true", help="tiny data and models (tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--eval-episodes", type=int, default=20, help="held-out episodes per env (0: skip)")
    parser.add_argument("--log-json", default=None, help="also write the training and evaluation log here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="MODEL.FIELD=VALUE",
                        help="override a ModelSpec field, e.g. --set deepthink.epochs_demo=8 (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads <= 0 or args.eval_episodes < 0 or args.train_games <= 0:
        parser.error("--threads and --train-games must be positive, --eval-episodes >= 0")
    if args.game == "textworld" and args.train_games > len(TW_TRAIN_GAME_SEEDS):
        parser.error(f"--train-games: at most {len(TW_TRAIN_GAME_SEEDS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    import torch

    from londi.agents.checkpoints import shipped_models_dir
    from londi.agents.lm import load_policy
    from londi.agents.training.cards import text_game_card
    from londi.agents.training.checkpoint import finish_checkpoint
    from londi.agents.training.evaluation import RandomPolicy, evaluate_on_envs, results_table
    from londi.agents.training.textgames import collect, scienceworld_setup, textworld_setup, train_model
    from londi.envs.scienceworld import resolve_task

    torch.set_num_threads(args.threads)
    out_dir = Path(args.out) if args.out else shipped_models_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        specs = apply_overrides((TEXT_SMALL if args.small else TEXT_SPECS)[args.game], args.overrides)
    except ValueError as exc:
        parser.error(str(exc))
    command = "python scripts/train_text_lms.py " + " ".join(argv if argv is not None else sys.argv[1:])
    t0 = time.time()
    if args.game == "textworld":
        setup = textworld_setup(args.train_games, Path(args.games_dir))
    else:
        setup = scienceworld_setup([resolve_task(t) for t in args.tasks])
    # One set of oracle demonstrations for both models. TextWorld: one oracle episode per training
    # game (the oracle and the games are deterministic: more passes repeat it); ScienceWorld: the
    # larger demo_episodes of the two models, per task.
    n_demo = 1 if args.game == "textworld" else max(specs[m].demo_episodes for m in args.models)
    demos = collect(setup, n_demo, TRAIN_SEED_START + 10_000 * args.seed, desc="oracle demos")
    logger.info("oracle demos: %d states, %d episodes, oracle success %.3f", len(demos.samples), demos.episodes,
                demos.successes / max(demos.episodes, 1))
    logs = {}
    for name in args.models:
        logs[name] = train_model(specs[name], setup, seed=args.seed, out_dir=out_dir, prefix=args.game, demos=demos)
    results = []
    if args.eval_episodes:
        for name in args.models:
            policy = load_policy(out_dir / f"{args.game}-{name}", name=f"{args.game}-{name}", device="cpu")
            results.append(evaluate_on_envs(policy, setup.eval_env_kwargs, args.eval_episodes))
        results.append(evaluate_on_envs(RandomPolicy(seed=args.seed), setup.eval_env_kwargs, args.eval_episodes))
        print(results_table(results))
    for name in args.models:
        card = (text_game_card(args.game, specs[name], logs[name], setup, results, command.strip(), args.eval_episodes)
                if results else None)
        finish_checkpoint(out_dir / f"{args.game}-{name}", card)
    if args.log_json:
        Path(args.log_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.log_json).write_text(json.dumps({"logs": logs, "results": results, "command": command.strip(),
                                                   "excluded_variations": setup.excluded,
                                                   "total_seconds": time.time() - t0}, indent=2, default=str))
    logger.info("done in %.0f s; models in %s", time.time() - t0, out_dir)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
