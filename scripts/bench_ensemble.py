"""Benchmark: a switch ensemble against a single switch, on the baselines' held-out episodes.

For each run seed ``s`` it trains (or reuses) ``--members`` switches with the demo's settings and
training seeds ``s, s + stride, s + 2 stride, ...``, then evaluates on the 200 held-out episodes
of seed ``s``, in one process and on the same episodes: always-QUICK, always-DEEPTHINK, the
first member alone (``londi``, the single switch of the baselines sweep) and the ensemble
(``londi-ensemble``, :class:`londi.learn.ensemble.SwitchEnsemble`) at each ``--act-costs`` weight.
Results go to ``OUT/seed<s>/results.json`` and ``OUT/seed<s>/ensemble-c<c>/results.json``
(written atomically; a finished file is not recomputed), so ``londi report OUT`` pools the seeds
and draws the curves::

    python scripts/bench_ensemble.py --seeds 0 1 2 --out runs/ensemble
    londi report runs/ensemble

The act cost 0.0125 was chosen on the validation seed (``londi.evaluation.loop.VALIDATION_SEED``), never
on seeds 0-2 (docs/benchmarks.md, "A switch ensemble").
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

logger = logging.getLogger("bench_ensemble")


def member_dirs(root: Path, seed: int, members: int, stride: int) -> list[Path]:
    return [root / f"switch_seed{seed + k * stride}" for k in range(members)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="run seeds (held-out blocks)")
    p.add_argument("--members", type=int, default=3, help="switches per ensemble (default 3)")
    p.add_argument("--stride", type=int, default=3, help="training seeds of seed s: s, s+stride, ... (default 3)")
    p.add_argument("--cost", type=float, default=0.01, help="per-call cost the members are trained at")
    p.add_argument("--act-costs", type=float, nargs="+", default=[0.01, 0.0125],
                   help="per-call costs the ensemble acts at (one point each)")
    p.add_argument("--steps", type=int, default=8000, help="training steps per member")
    p.add_argument("--episodes", type=int, default=200, help="held-out episodes per seed")
    p.add_argument("--switch-root", default=None, help="where members are trained (default OUT/switches)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", default="runs/ensemble")
    args = p.parse_args(argv)
    if args.members < 1 or args.stride < 1:
        p.error("--members and --stride must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    import torch

    torch.set_num_threads(args.threads)
    from londi.agents import load_policy
    from londi.core.io import atomic_write_json
    from londi.evaluation.loop import evaluate_methods, format_table
    from londi.learn.train import TrainConfig, load_switches, train_switch
    from londi.rules import AlwaysDeepthink, AlwaysQuick, LearnedSwitch
    from londi.rules.base import Method

    out = Path(args.out)
    root = Path(args.switch_root) if args.switch_root else out / "switches"
    quick, deepthink = load_policy("quick"), load_policy("deepthink")
    for seed in args.seeds:
        dirs = member_dirs(root, seed, args.members, args.stride)
        for d in dirs:
            member_seed = int(d.name.removeprefix("switch_seed"))
            t0 = time.perf_counter()
            # select_every=0: the members measured in docs/benchmarks.md kept their last weights
            train_switch(TrainConfig(cost=args.cost, steps=args.steps, seed=member_seed, select_every=0), d,
                         quick=quick, deepthink=deepthink, progress=False)
            logger.info("member %s ready (%.0f s)", d, time.perf_counter() - t0)
        member_seeds = [int(d.name.removeprefix("switch_seed")) for d in dirs]
        base = out / f"seed{seed}" / "results.json"
        if not base.is_file():
            single, config = load_switches(dirs[0])
            methods = {"always-quick": Method(AlwaysQuick(), quick, deepthink),
                       "always-deepthink": Method(AlwaysDeepthink(), quick, deepthink),
                       "londi": Method(LearnedSwitch(single, features=config.features), quick, deepthink)}
            res = evaluate_methods(methods, episodes=args.episodes, seed=seed, progress=False)
            res["methods"]["londi"]["config"] = {"cost": args.cost, "train_seed": member_seeds[0]}
            atomic_write_json(base, res)
            print(format_table(res), flush=True)
        for c in args.act_costs:
            path = out / f"seed{seed}" / f"ensemble-c{c:g}" / "results.json"
            if path.is_file():
                continue
            ensemble, config = load_switches(dirs, call_cost=c)
            rule = LearnedSwitch(ensemble, features=config.features, name="londi-ensemble")
            res = evaluate_methods({"londi-ensemble": Method(rule, quick, deepthink)}, episodes=args.episodes,
                                   seed=seed, progress=False)
            res["methods"]["londi-ensemble"]["config"] = {"cost": c, "train_cost": args.cost,
                                                          "train_seeds": member_seeds}
            atomic_write_json(path, res)
            print(format_table(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
