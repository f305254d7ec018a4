#!/usr/bin/env python
"""Train the shipped BabyAI-Text LM pairs (QUICK and DEEPTHINK) by behaviour cloning from the BabyAI expert.

A command line over :mod:`londi.agents.training` (the recipes are
``londi.agents.training.specs.BABYAI_SPECS``; the pipeline is
``londi.agents.training.babyai.train_model``): expert demonstrations from Minigrid's BabyAIBot
(**an oracle**), DAgger rounds (the model plays, mixed with the expert with a probability
``beta`` that halves every round; the expert labels every visited state), then a held-out
evaluation through :class:`londi.agents.lm.HFPolicy`, the model card, ``londi_policy.json`` and
``SHA256SUMS``.

Commands::

    python scripts/train_lms.py                      # the default pair into the package (agents/models/)
    python scripts/train_lms.py --models quick-mix deepthink-mix   # the task-mix pair (GoTo, PickupLoc, PutNext)
    python scripts/train_lms.py --small --out /tmp/m # the pipeline in under 2 minutes (tests)

Training episodes use seeds from 1,000,000 upwards; the held-out evaluation uses seeds
500,000 + i. The same seed, thread count and package versions give the same checkpoints.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from londi.agents.training.specs import (
    BABYAI_SMALL,
    BABYAI_SPECS,
    DEFAULT_MODELS,
    HELDOUT_SEED_START,
    ModelSpec,
    apply_overrides,
)

logger = logging.getLogger("train_lms")


def _read_training_log(args: argparse.Namespace, out_dir: Path,
                       parser: argparse.ArgumentParser) -> tuple[dict[str, ModelSpec], dict[str, dict], str]:
    """For ``--evaluate-only``: the specs, logs and command of the run that trained ``--out``."""
    if not args.log_json or not Path(args.log_json).is_file():
        parser.error("--evaluate-only needs --log-json: the log that the training run wrote")
    if not args.eval_episodes:
        parser.error("--evaluate-only needs --eval-episodes > 0")
    if args.overrides or args.small or args.init_from or args.keep_rounds:
        parser.error("--evaluate-only trains nothing: --set, --small, --init-from and --keep-rounds do not apply "
                     "(the spec comes from --log-json)")
    try:
        payload = json.loads(Path(args.log_json).read_text())
        logs = {name: payload["logs"][name] for name in args.models}
        specs = {name: ModelSpec(**logs[name]["spec"]) for name in args.models}
        command = str(payload["command"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        parser.error(f"--log-json {args.log_json}: not a training log for {args.models}: {exc!r}")
    missing = [name for name in args.models if not (out_dir / name / "config.json").is_file()]
    if missing:
        parser.error(f"--evaluate-only: no trained model for {missing} in {out_dir}")
    return specs, logs, command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train the shipped QUICK/DEEPTHINK LM pair (behaviour cloning + DAgger).")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=sorted(BABYAI_SPECS),
                        help="which models to train (default: the default pair, %(default)s; quick and "
                             "deepthink are the first pair)")
    parser.add_argument("--out", default=None, help="output folder (default: the package's shipped models folder)")
    parser.add_argument("--small", action="store_true", help="tiny data and models: the pipeline in under 2 minutes")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights, batches and DAgger mixing")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for training (1 is fastest on a shared 2-core machine: with 2, "
                             "every step waits for the thread that another process preempted)")
    parser.add_argument("--eval-episodes", type=int, default=200,
                        help="held-out episodes per model, per level for a task-mix model (0: skip)")
    parser.add_argument("--eval-threads", type=int, default=1, help="torch threads while measuring cost per call")
    parser.add_argument("--device", default="cpu", help="where to train: cpu, cuda or cuda:N (evaluation is on the CPU)")
    parser.add_argument("--envs", type=int, default=32, help="environments played in parallel while collecting")
    parser.add_argument("--log-json", default=None, help="also write the training and evaluation log here")
    parser.add_argument("--init-from", default=None,
                        help="continue training the checkpoints in this folder (DIR/<model>) instead of from scratch")
    parser.add_argument("--keep-rounds", action="store_true",
                        help="also save the model after every DAgger round (OUT/NAME-roundK), so a stopped run keeps them")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="train nothing: measure the models already in --out (trained elsewhere, e.g. on a GPU) on "
                             "the held-out episodes here and write their model cards; --log-json must be the log their "
                             "training run wrote (it gives the spec, phases and command; the results are added to it)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="MODEL.FIELD=VALUE",
                        help="override a ModelSpec field, e.g. --set deepthink.dagger_rounds=3 (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads <= 0 or args.eval_threads <= 0 or args.envs <= 0 or args.eval_episodes < 0:
        parser.error("--threads, --eval-threads and --envs must be positive; --eval-episodes >= 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    import torch

    from londi.agents.checkpoints import shipped_models_dir
    from londi.agents.lm import HFPolicy
    from londi.agents.training.babyai import train_model
    from londi.agents.training.cards import babyai_card
    from londi.agents.training.checkpoint import finish_checkpoint
    from londi.agents.training.evaluation import (
        agreement_table,
        evaluate_policy,
        evaluation_envs,
        expert_state_agreement,
        markdown_table,
    )

    torch.set_num_threads(args.threads)
    out_dir = Path(args.out) if args.out else shipped_models_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        specs = apply_overrides(BABYAI_SMALL if args.small else BABYAI_SPECS, args.overrides)
    except ValueError as exc:
        parser.error(str(exc))
    invoked = "python scripts/train_lms.py " + " ".join(argv if argv is not None else sys.argv[1:])
    command = invoked  # the training command, for the cards and the log
    logs: dict[str, dict] = {}
    t0 = time.time()
    if args.evaluate_only:
        specs, logs, command = _read_training_log(args, out_dir, parser)
    else:
        for name in args.models:
            init_from = Path(args.init_from) / name if args.init_from else None
            try:
                logs[name] = train_model(specs[name], seed=args.seed, out_dir=out_dir, threads=args.threads,
                                         n_envs=args.envs, device=args.device, init_from=init_from,
                                         keep_rounds=args.keep_rounds)
            except ValueError as exc:  # --init-from: not a checkpoint of this architecture
                parser.error(f"--init-from: {exc}")
            logger.info("%s: trained in %.0f s", name, logs[name]["train_seconds"])
    results = []
    if args.eval_episodes:
        torch.set_num_threads(args.eval_threads)
        seeds = range(HELDOUT_SEED_START, HELDOUT_SEED_START + args.eval_episodes)
        for name in args.models:
            policy = HFPolicy(out_dir / name, name=name, device="cpu")
            logs[name]["vocab_size"] = len(policy.tokenizer)
            for level, env_id in evaluation_envs(specs[name].env):  # a mix model: each level alone
                result = evaluate_policy(policy, seeds, env_id=env_id, desc=f"{name}: held-out eval {level}".strip())
                result.expert_agreement = expert_state_agreement(policy, seeds, env_id=env_id)
                result.level = level
                results.append(result)
        print(markdown_table(results))
        print(agreement_table(results))
    for name in args.models:
        card = babyai_card(specs[name], logs[name], results, command.strip(), args.eval_threads) if results else None
        finish_checkpoint(out_dir / name, card)
    if args.log_json:
        payload = {"logs": logs, "results": [r.to_dict() for r in results], "command": command.strip(),
                   "total_seconds": time.time() - t0}
        if args.evaluate_only:
            payload["evaluate_command"] = invoked
        Path(args.log_json).write_text(json.dumps(payload, indent=2, default=str))
    logger.info("done in %.0f s; models in %s", time.time() - t0, out_dir)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
