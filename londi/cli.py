"""The ``londi`` command.

``londi envs`` lists env ids; ``londi train`` trains a switch; ``londi eval`` evaluates methods
on held-out episodes; ``londi demo`` does both on the default env with the shipped LMs.
Errors in the user's input end the command with one clear line and exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Any

from londi.argtypes import non_negative_float as _non_negative_float
from londi.argtypes import non_negative_int as _non_negative_int
from londi.argtypes import positive_int as _positive_int
from londi.errors import LondiError, UnknownChoiceError

logger = logging.getLogger("londi")

#: Methods ``londi eval`` knows besides the baselines of :mod:`londi.baselines` (if present).
CORE_METHODS = ("expert", "always-quick", "always-deepthink", "londi")

#: Modules that add their own subcommands through ``register(subparsers)``.
PLUGIN_COMMANDS = ("londi.serve",)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


# ---------------------------------------------------------------------------------- commands
def cmd_envs(args: argparse.Namespace) -> int:
    from londi.envs import DEFAULT_ENV_ID, env_ids

    for env_id in env_ids():
        print(env_id + ("  (default)" if env_id == DEFAULT_ENV_ID else ""))
    return 0


def method_names() -> list[str]:
    names = list(CORE_METHODS)
    try:
        from londi.baselines import BASELINES

        names += list(BASELINES)
    except ImportError:
        pass
    return names


def build_method(name: str, args: argparse.Namespace, quick: Any, deepthink: Any) -> Any:
    """A :class:`~londi.evaluate.Method` for ``name`` (validated against :func:`method_names`)."""
    from londi.agents.expert import OracleExpert
    from londi.evaluate import Method
    from londi.rules import AlwaysDeepthink, AlwaysQuick

    budget = getattr(args, "budget", None)
    if name == "expert":
        oracle = OracleExpert()
        return Method(AlwaysQuick(), oracle, oracle)
    if name == "always-quick":
        return Method(AlwaysQuick(), quick, deepthink, budget)
    if name == "always-deepthink":
        return Method(AlwaysDeepthink(), quick, deepthink, budget)
    if name == "londi":
        from londi.train import load_switches

        if not args.switch:
            raise LondiError("--method londi needs --switch RUN_DIR (a folder written by `londi train`)")
        from londi.calibrated import learned_switch_rule
        from londi.envs import DEFAULT_ENV_ID

        model, config = load_switches(args.switch, call_cost=getattr(args, "cost", None))
        if budget is None:
            budget = config.budget
        rule = learned_switch_rule(
            model, config, quick=quick, deepthink=deepthink, env_id=args.env or DEFAULT_ENV_ID, seed=args.seed,
            budget=budget, rate=args.rate, calibrate_limit=not getattr(args, "no_calibrate", False),
            calibration_episodes=args.calibration_episodes, progress=not args.no_progress,
        )
        return Method(rule, quick, deepthink, budget)
    from londi.baselines import make_baseline

    return make_baseline(name, args=args, quick=quick, deepthink=deepthink)


def cmd_eval(args: argparse.Namespace) -> int:
    from londi.envs import DEFAULT_ENV_ID, env_ids
    from londi.evaluate import evaluate_methods, format_table
    from londi.io import atomic_write_json

    env_id = args.env or DEFAULT_ENV_ID
    ids = env_ids()
    if env_id not in ids:
        raise UnknownChoiceError("env id", env_id, ids)
    names = [m.strip() for m in args.method.split(",") if m.strip()]
    valid = method_names()
    for n in names:
        if n not in valid:
            raise UnknownChoiceError("method", n, valid)
    if "londi" in names:  # fail on a bad run folder before loading any model
        from londi.train import load_switches

        if not args.switch:
            raise LondiError("--method londi needs --switch RUN_DIR (a folder written by `londi train`)")
        load_switches(args.switch)
    elif getattr(args, "cost", None) is not None:
        raise LondiError("--cost sets the cost a trained switch acts at: it needs --method londi")
    needs_lms = any(n != "expert" for n in names)
    quick = deepthink = None
    if needs_lms:
        quick, deepthink = load_pair(args)
    methods = {n: build_method(n, args, quick, deepthink) for n in names}
    results = evaluate_methods(methods, env_id=env_id, episodes=args.episodes, seed=args.seed,
                               progress=not args.no_progress)
    print(format_table(results))
    if args.out:
        atomic_write_json(args.out, results)
        print(f"wrote {args.out}")
    return 0


def load_pair(args: argparse.Namespace) -> tuple[Any, Any]:
    """QUICK and DEEPTHINK from ``--quick``/``--deepthink`` (names, folders or server URLs); a
    served DEEPTHINK falls back to QUICK when it fails."""
    from londi.agents.loading import load_text_policy

    quick = load_text_policy(args.quick, role="quick", http_api=args.http_api)
    deepthink = load_text_policy(args.deepthink, role="deepthink", fallback=quick, http_api=args.http_api)
    return quick, deepthink


def cmd_train(args: argparse.Namespace) -> int:
    from londi.envs import DEFAULT_ENV_ID
    from londi.train import TrainConfig, default_run_dir, train_switch

    config = TrainConfig(
        env=args.env or DEFAULT_ENV_ID, quick=args.quick, deepthink=args.deepthink,
        cost=args.cost, budget=args.budget, cost_limit=args.cost_limit, steps=args.steps, seed=args.seed,
        lagrangian_multiplier_init=args.lagrangian_multiplier_init, lambda_lr=args.lambda_lr,
        lagrangian_upper_bound=args.lagrangian_upper_bound, gamma=args.gamma,
        select_every=args.select_every, select_episodes=args.select_episodes,
        **{k: v for k, v in (("features", args.features), ("n_steps", args.n_steps)) if v is not None},
    ).validate()
    run_dir = Path(args.out) if args.out else default_run_dir(config)
    quick, deepthink = load_pair(args)
    model = train_switch(config, run_dir, quick=quick, deepthink=deepthink, progress=not args.no_progress)
    model.get_env().close()  # stop an env's simulator (ScienceWorld's JVM) now, not in a finaliser
    print(f"trained switch written to {run_dir}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from londi.demo import run_demo
    from londi.evaluate import format_table

    print("LONDI demo: training a switch between the shipped QUICK and DEEPTHINK LMs on BabyAI-Text, "
          "then evaluating it on held-out episodes (no downloads, CPU only).", flush=True)
    results = run_demo(args.out, steps=args.steps, episodes=args.episodes, seed=args.seed, cost=args.cost,
                       progress=not args.no_progress)
    print(format_table(results))
    print(f"\nwrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'success_vs_calls.png'} "
          f"({results['wall_seconds']['total']:.0f} s)")
    return 0


# ---------------------------------------------------------------------------------- parser
def _add_lm_args(p: argparse.ArgumentParser) -> None:
    from londi.agents.lm import DEFAULT_DEEPTHINK, DEFAULT_QUICK

    p.add_argument("--quick", default=DEFAULT_QUICK,
                   help=f"QUICK model: shipped name, checkpoint folder or server URL (default: {DEFAULT_QUICK})")
    p.add_argument("--deepthink", default=DEFAULT_DEEPTHINK,
                   help="DEEPTHINK model: shipped name, checkpoint folder or OpenAI-compatible server URL "
                        f"such as http://127.0.0.1:8000/v1 (key from LONDI_API_KEY) (default: {DEFAULT_DEEPTHINK})")
    p.add_argument("--http-api", choices=("chat", "completions"), default="chat",
                   help="API of a served model: chat (instruction models) or completions (base models, "
                        "`londi serve`) (default chat)")


def cmd_sweep(args: argparse.Namespace) -> int:
    from londi.sweep import cell_dir, is_finished, load_config, run_sweep

    config = load_config(args.config)
    out = Path(args.out) if args.out else Path("runs") / f"sweep__{config.name}"
    if args.dry_run:
        for cell in config.cells:
            status = "finished" if is_finished(cell_dir(out, cell)) else "to run"
            print(f"{cell.name:<60} {status}")
        print(f"{len(config.cells)} cells; output folder {out}")
        return 0
    summary = run_sweep(config, out, workers=args.workers, max_cells=args.max_cells, progress=not args.no_progress,
                        report=False if args.no_report else None)
    print(f"sweep {config.name}: {summary.total} cells, {len(summary.skipped)} already finished, "
          f"{len(summary.ran)} run now, {len(summary.failed)} failed, {len(summary.remaining)} left; folder {out}")
    if summary.report is not None:
        print(f"report: {summary.report}")
    for name, error in summary.failed.items():
        print(f"failed: {name}: {error}", file=sys.stderr)
    if summary.failed:
        print("rerun the same command to retry the failed cells (finished cells are kept)", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from londi.report import write_report

    path = write_report(args.run_dir, args.out, metric=args.metric, quick_method=args.quick_method,
                        deepthink_method=args.deepthink_method, oracle_method=args.oracle_method, seed=args.seed)
    print(path)  # the command's result for the user: where the report is
    return 0


def _add_sweep_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a grid of methods x parameters x seeds (resumable), then write the report",
        description="Run every cell of a sweep config (see experiments/*.json and the londi.sweep docs) into "
                    "DIR/cells/<method>__<params>__seed<k>/. Finished cells are never rerun: run the same "
                    "command again to continue a stopped sweep.",
    )
    p.add_argument("config", metavar="CONFIG", help="sweep config file (JSON)")
    p.add_argument("--out", default=None, help="sweep folder (default runs/sweep__<name>)")
    p.add_argument("--workers", type=_positive_int, default=2,
                   help="cells run in parallel processes (default 2; 1 runs them in this process)")
    p.add_argument("--max-cells", type=_non_negative_int, default=None,
                   help="run at most N unfinished cells, then stop (rerun to continue)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and whether they are finished")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)


def _add_report_parser(sub: Any) -> None:
    from londi.report import METRICS

    p = sub.add_parser(
        "report",
        help="tabulate and plot the results.json files of a run or sweep",
        description="Find every results.json under DIR (a demo's DIR/results.json or a sweep's "
                    "DIR/cells/*/results.json), pool seeds, merge each method's parameter values into a "
                    "curve and write report.md, report.json and PNG plots.",
    )
    p.add_argument("run_dir", metavar="DIR", type=Path, help="run or sweep folder")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: DIR)")
    p.add_argument("--metric", choices=METRICS, default="success",
                   help="performance measure (default: success)")
    p.add_argument("--quick-method", default="always_quick", help="name of the always-QUICK baseline")
    p.add_argument("--deepthink-method", default="always_deepthink", help="name of the always-DEEPTHINK baseline")
    p.add_argument("--oracle-method", default="oracle", help="name of the hindsight oracle method")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed for pooled cells (default: 0)")
    p.set_defaults(func=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="londi", description="Learn when a text-game agent should pay for a large LM.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    parser.add_argument("--threads", type=_positive_int, default=1,
                        help="PyTorch CPU threads (default 1: the small models here run fastest on one "
                             "thread, and parallel sweeps use one process per core)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("envs", help="list the registered env ids")
    p.set_defaults(func=cmd_envs)

    p = sub.add_parser("eval", help="evaluate methods on held-out episodes")
    p.add_argument("--env", default=None, help="env id (default: the demo's env)")
    p.add_argument("--method", required=True,
                   help="method(s), comma-separated: " + ", ".join(CORE_METHODS) + " and the baselines")
    p.add_argument("--switch", default=None,
                   help="run folder of a trained switch (for --method londi), or several comma-separated: an "
                        "ensemble of switches trained alike with different seeds, acting on their mean values")
    p.add_argument("--cost", type=_non_negative_float, default=None,
                   help="per-call cost c the switch acts at (default: its trained c); the reward and cost values "
                        "are learned apart, so c changes without retraining")
    p.add_argument("--episodes", type=_positive_int, default=200, help="held-out episodes (default 200)")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="run seed (default 0)")
    p.add_argument("--budget", type=_non_negative_int, default=None, help="hard cap on DEEPTHINK calls per episode")
    p.add_argument("--rate", type=float, default=None,
                   help="target DEEPTHINK call rate (random, periodic, uncertainty, router and task-router baselines; "
                        "for londi, the switch's cost weight is calibrated to it)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="evaluate a Lagrangian switch (--cost-limit) at its trained weight c + lambda instead of "
                        "the weight calibrated to its limit on calibration episodes")
    p.add_argument("--threshold", type=float, default=None,
                   help="fixed threshold for the uncertainty and router baselines (instead of --rate)")
    p.add_argument("--calibration-episodes", type=_positive_int, default=None,
                   help="training-seed episodes used to calibrate or train baselines (default: the baseline's), "
                        "or to calibrate a trained switch (default 96 for a Lagrangian limit, 12 for --rate)")
    p.add_argument("--out", default=None, help="write results.json here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_lm_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="train a switch (LONDI, LONDI-B with --budget, Lagrangian with --cost-limit)")
    p.add_argument("--env", default=None, help="env id (default: the demo's env)")
    p.add_argument("--cost", type=_non_negative_float, default=0.02, help="per-call cost c of DEEPTHINK (default 0.02)")
    p.add_argument("--budget", type=_non_negative_int, default=None, help="hard cap B on DEEPTHINK calls per episode")
    p.add_argument("--cost-limit", type=_non_negative_float, default=None,
                   help="limit L on expected DEEPTHINK calls per episode (Lagrangian)")
    p.add_argument("--lagrangian-multiplier-init", type=_non_negative_float, default=0.0)
    p.add_argument("--lambda-lr", type=float, default=0.02)
    p.add_argument("--lagrangian-upper-bound", type=_non_negative_float, default=None)
    p.add_argument("--features", default=None,
                   help="switch features: quick, choice, goal, bow, minilm, oracle (the expert's label: an oracle, for controlled "
                        "experiments) or a + combination (default: TrainConfig.features)")
    p.add_argument("--steps", type=_positive_int, default=8000, help="training env steps (default 8000)")
    p.add_argument("--gamma", type=float, default=0.99, help="discount of the reward and cost values (default 0.99)")
    p.add_argument("--n-steps", type=_positive_int, default=None,
                   help="n-step targets for the switch's values (default: TrainConfig.n_steps)")
    p.add_argument("--select-every", type=_non_negative_int, default=None,
                   help="evaluate the greedy switch every N steps on selection episodes and keep the best "
                        "weights (default 2000, and 0 with --cost-limit; 0: keep the last; see londi.selection)")
    p.add_argument("--select-episodes", type=_positive_int, default=120,
                   help="selection episodes per evaluation (default 120)")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--out", default=None, help="run folder (default runs/<env>__<method>__<seed>__<time>)")
    p.add_argument("--no-progress", action="store_true")
    _add_lm_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("demo", help="train and evaluate a switch on the default env (the README's main job)")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--steps", type=_positive_int, default=None, help="training steps (default: the demo's)")
    p.add_argument("--episodes", type=_positive_int, default=None, help="held-out episodes (default: the demo's)")
    p.add_argument("--cost", type=_non_negative_float, default=None, help="per-call cost (default: the demo's)")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    _add_sweep_parser(sub)
    _add_report_parser(sub)
    for module in PLUGIN_COMMANDS:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    import torch

    torch.set_num_threads(args.threads)
    if args.command == "demo":
        from londi import demo

        args.steps = args.steps or demo.DEMO_STEPS
        args.episodes = args.episodes or demo.DEMO_EPISODES
        args.cost = demo.DEMO_COST if args.cost is None else args.cost
    try:
        return int(args.func(args) or 0)
    except (LondiError, ValueError) as exc:
        print(f"londi: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("londi: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
