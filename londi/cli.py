"""The ``londi`` command.

``londi envs`` lists env ids; ``londi train`` trains a switch; ``londi eval`` evaluates methods
on held-out episodes; ``londi demo`` does both on the default env with the shipped LMs.
Errors in the user's input end the command with one clear line and exit status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
import sys
from pathlib import Path
from typing import Any

from londi.agents import serving
from londi.core.argtypes import call_rate as _call_rate
from londi.core.argtypes import non_negative_float as _non_negative_float
from londi.core.argtypes import non_negative_int as _non_negative_int
from londi.core.argtypes import positive_int as _positive_int
from londi.core.errors import EndpointFailureError, LondiError, UnknownChoiceError

logger = logging.getLogger("londi")


def _default(cls: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls``: options backed by a dataclass read their
    defaults from it (never copies of them), e.g. ``_default(TrainConfig, "cost")``."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise TypeError(f"{cls.__name__}.{name} has no default")
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def _param_default(func: Any, name: str) -> Any:
    """The default of parameter ``name`` of ``func`` (for options backed by a function, not a dataclass)."""
    default = inspect.signature(func).parameters[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{func.__name__}({name}) has no default")
    return default


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
    """The methods ``londi eval --method`` takes: the registry's (:mod:`londi.evaluation.registry`)."""
    from londi.evaluation.registry import method_names as registered

    return registered()


def build_method(name: str, args: argparse.Namespace, quick: Any, deepthink: Any) -> Any:
    """A :class:`~londi.rules.base.Method` for ``name``, built by the registry from the ``londi eval`` flags."""
    from londi.evaluation.registry import build_method as build

    return build(
        name, quick=quick, deepthink=deepthink, env_id=args.env, progress=not args.no_progress,
        seed=args.seed, rate=args.rate, budget=getattr(args, "budget", None), threshold=getattr(args, "threshold", None),
        calibration_episodes=getattr(args, "calibration_episodes", None), switch=getattr(args, "switch", None),
        cost=getattr(args, "cost", None), calibrate=not getattr(args, "no_calibrate", False),
        allow_policy_mismatch=getattr(args, "allow_policy_mismatch", False),
    )


def cmd_eval(args: argparse.Namespace) -> int:
    from londi.core.io import atomic_write_json
    from londi.envs import DEFAULT_ENV_ID, env_ids
    from londi.evaluation.loop import evaluate_methods, format_table
    from londi.evaluation.registry import get_method

    env_id = args.env or DEFAULT_ENV_ID
    ids = env_ids()
    if env_id not in ids:
        raise UnknownChoiceError("env id", env_id, ids)
    names = [m.strip() for m in args.method.split(",") if m.strip()]
    specs = [get_method(n) for n in names]  # an unknown name fails here, naming the valid ones
    if "londi" in names:  # fail on a bad run folder before loading any model
        from londi.learn.train import load_switches

        if not args.switch:
            raise LondiError("--method londi needs --switch RUN_DIR (a folder written by `londi train`)")
        load_switches(args.switch)
    elif getattr(args, "cost", None) is not None:
        raise LondiError("--cost sets the cost a trained switch acts at: it needs --method londi")
    needs_lms = any(spec.needs_lms for spec in specs)
    quick = deepthink = None
    if needs_lms:
        quick, deepthink = load_pair(args)
    methods = {n: build_method(n, args, quick, deepthink) for n in names}
    try:
        results = evaluate_methods(methods, env_id=env_id, episodes=args.episodes, seed=args.seed,
                                   progress=not args.no_progress, num_envs=args.num_envs,
                                   env_processes=args.env_processes)
    except EndpointFailureError as exc:
        if args.out and exc.partial_results is not None:
            atomic_write_json(args.out, exc.partial_results)  # "valid": false, with the error
            print(f"wrote {args.out} (marked invalid: the run stopped)", file=sys.stderr)
        raise
    print(format_table(results))
    if args.out:
        atomic_write_json(args.out, results)
        print(f"wrote {args.out}")
    return 0


def load_pair(args: argparse.Namespace) -> tuple[Any, Any]:
    """QUICK and DEEPTHINK from ``--quick``/``--deepthink`` (names, folders or server URLs); a
    served DEEPTHINK falls back to QUICK when it fails."""
    from londi.agents.checkpoints import default_pair
    from londi.agents.loading import load_text_policy
    from londi.envs import DEFAULT_ENV_ID

    default_quick, default_deepthink = default_pair(args.env or DEFAULT_ENV_ID)
    args.quick, args.deepthink = args.quick or default_quick, args.deepthink or default_deepthink
    http = {"http_api": args.http_api, "http_list_actions": args.http_list_actions == "yes",
            "http_concurrency": args.http_concurrency}
    quick = load_text_policy(args.quick, role="quick", **http)
    deepthink = load_text_policy(args.deepthink, role="deepthink", fallback=quick, **http)
    return quick, deepthink


def cmd_train(args: argparse.Namespace) -> int:
    from londi.envs import DEFAULT_ENV_ID
    from londi.learn.train import TrainConfig, default_run_dir, train_switch

    # every `londi train` option named like a TrainConfig field lands in that field
    values = {name: getattr(args, name) for name in args.config_fields}
    values["env"] = values.get("env") or DEFAULT_ENV_ID
    config = TrainConfig(**values).validate()
    run_dir = Path(args.out) if args.out else default_run_dir(config)
    args.quick, args.deepthink = config.quick, config.deepthink  # the env's default pair unless named
    quick, deepthink = load_pair(args)
    model = train_switch(config, run_dir, quick=quick, deepthink=deepthink, progress=not args.no_progress)
    model.get_env().close()  # stop an env's simulator (ScienceWorld's JVM) now, not in a finaliser
    print(f"trained switch written to {run_dir}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from londi.demo import run_demo
    from londi.evaluation.loop import format_table

    print("LONDI demo: training a switch between the shipped QUICK and DEEPTHINK LMs on BabyAI-Text, "
          "then evaluating it on held-out episodes (no downloads, CPU only).", flush=True)
    results = run_demo(args.out, steps=args.steps, episodes=args.episodes, seed=args.seed, cost=args.cost,
                       rate=None if args.no_calibrate else args.rate, calibration_episodes=args.calibration_episodes,
                       progress=not args.no_progress)
    print(format_table(results))
    calibration = results.get("calibration")
    if calibration:
        print(f"londi acts at a DEEPTHINK call rate of {results['demo_rate']:g}: its cost weight, trained at "
              f"{calibration['trained_weight']:.3g}, calibrated to {calibration['threshold']:.3g} on "
              f"{calibration['episodes_per_round']} training-seed episodes")
    print(f"\nwrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'success_vs_calls.png'} "
          f"({results['wall_seconds']['total']:.0f} s)")
    return 0


# ---------------------------------------------------------------------------------- parser
def _add_lm_args(p: argparse.ArgumentParser) -> None:
    """``--quick``, ``--deepthink`` (default: the env's default pair, :func:`londi.agents.checkpoints.default_pair`,
    filled in by :func:`load_pair`) and the served-model options."""
    from londi.agents.checkpoints import DEFAULT_DEEPTHINK, DEFAULT_QUICK, MIX_DEEPTHINK, MIX_QUICK

    pair = (f"the env's default pair: {DEFAULT_QUICK} / {DEFAULT_DEEPTHINK} on GoToLocal, {MIX_QUICK} / "
            f"{MIX_DEEPTHINK} on the other BabyAI-Text levels")
    p.add_argument("--quick", default=None,
                   help=f"QUICK model: shipped name, checkpoint folder or server URL (default: {pair})")
    p.add_argument("--deepthink", default=None,
                   help="DEEPTHINK model: shipped name, checkpoint folder or OpenAI-compatible server URL "
                        f"such as http://127.0.0.1:8000/v1 (key from LONDI_API_KEY) (default: {pair})")
    p.add_argument("--http-api", choices=("chat", "completions"), default="chat",
                   help="API of a served model: chat (instruction models) or completions (base models, "
                        "`londi serve`) (default chat)")
    p.add_argument("--http-list-actions", choices=("yes", "no"), default="yes",
                   help="list the admissible actions in a served model's prompt (default %(default)s: an "
                        "instruction model must see its choices; pass no for the checkpoints shipped here, "
                        "which were trained without the list, served by `londi serve` or `transformers serve`)")
    from londi.agents.http import DEFAULT_MAX_CONCURRENCY

    p.add_argument("--http-concurrency", type=_positive_int, default=DEFAULT_MAX_CONCURRENCY,
                   help="requests to a served model in flight at once when --num-envs > 1 asks for several "
                        "episodes' states together (default %(default)s)")


def cmd_sweep(args: argparse.Namespace) -> int:
    from londi.evaluation.sweep import cell_dir, is_finished, run_sweep
    from londi.evaluation.sweep_config import load_config

    config = load_config(args.config)
    out = Path(args.out) if args.out else Path("runs") / f"sweep__{config.name}"
    if args.dry_run:
        for cell in config.cells:
            status = "finished" if is_finished(cell_dir(out, cell)) else "to run"
            print(f"{cell.name:<60} {status}")
        print(f"{len(config.cells)} cells; output folder {out}")
        return 0
    summary = run_sweep(config, out, workers=args.workers, max_cells=args.max_cells, progress=not args.no_progress,
                        report=False if args.no_report else None, executor=args.executor, address=args.address,
                        cpus_per_cell=args.cpus_per_cell, gpus_per_cell=args.gpus_per_cell,
                        max_retries=args.max_retries)
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
    from londi.evaluation.report import write_report

    path = write_report(args.run_dir, args.out, metric=args.metric, quick_method=args.quick_method,
                        deepthink_method=args.deepthink_method, oracle_method=args.oracle_method, seed=args.seed)
    print(path)  # the command's result for the user: where the report is
    return 0


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _add_sweep_parser(sub: Any) -> None:
    from londi.evaluation import executors
    from londi.evaluation.sweep import EXECUTORS, run_sweep

    p = sub.add_parser(
        "sweep",
        help="run a grid of methods x parameters x seeds (resumable), then write the report",
        description="Run every cell of a sweep config (see experiments/*.json and the londi.evaluation.sweep docs) into "
                    "DIR/cells/<method>__<params>__seed<k>/. Finished cells are never rerun: run the same "
                    "command again to continue a stopped sweep.",
    )
    p.add_argument("config", metavar="CONFIG", help="sweep config file (JSON)")
    p.add_argument("--out", default=None, help="sweep folder (default runs/sweep__<name>)")
    p.add_argument("--workers", type=_positive_int, default=_param_default(run_sweep, "workers"),
                   help="cells run in parallel processes (default %(default)s; 1 runs them in this process)")
    p.add_argument("--max-cells", type=_non_negative_int, default=_param_default(run_sweep, "max_cells"),
                   help="run at most N unfinished cells, then stop (rerun to continue)")
    p.add_argument("--executor", choices=EXECUTORS, default=_param_default(run_sweep, "executor"),
                   help="where cells run: local (a process pool, --workers) or ray (each cell a Ray task, on this "
                        f"machine or a Ray cluster; needs {executors.INSTALL_HINT}) (default %(default)s)")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="ray: the cluster to connect to (HEAD:6379, auto, ray://HEAD:10001); default: start a local "
                        "Ray instance with every core. On a cluster --out must be a shared filesystem path")
    p.add_argument("--cpus-per-cell", type=_positive_float, default=None, metavar="N",
                   help=f"ray: CPUs (and torch threads) per cell (default {executors.DEFAULT_CPUS_PER_CELL:g})")
    p.add_argument("--gpus-per-cell", type=_non_negative_float, default=None, metavar="G",
                   help="ray: GPUs per cell, a fraction shares one, for local models on CUDA "
                        f"(default {executors.DEFAULT_GPUS_PER_CELL:g})")
    p.add_argument("--max-retries", type=_non_negative_int, default=None, metavar="N",
                   help=f"ray: retries of a failed cell before it is reported (default {executors.DEFAULT_MAX_RETRIES})")
    p.add_argument("--dry-run", action="store_true", help="list the cells and whether they are finished")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)


def _add_report_parser(sub: Any) -> None:
    from londi.evaluation.report import METRICS

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
    p.add_argument("--seed", type=_non_negative_int, default=0,
                   help="bootstrap seed for pooled cells (default: %(default)s)")
    p.set_defaults(func=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    from londi.core.seeds import VALIDATION_SEED
    from londi.demo import DEMO_CALIBRATION_EPISODES, DEMO_COST, DEMO_EPISODES, DEMO_RATE, DEMO_STEPS, run_demo
    from londi.evaluation.loop import evaluate_methods
    from londi.learn.train import DEFAULT_SELECT_EVERY, TrainConfig
    from londi.rules.calibrated import DEFAULT_CALIBRATION_EPISODES, DEFAULT_LIMIT_CALIBRATION_EPISODES

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
                   help="method(s), comma-separated: " + ", ".join(method_names()))
    p.add_argument("--switch", default=None,
                   help="run folder of a trained switch (for --method londi), or several comma-separated: an "
                        "ensemble of switches trained alike with different seeds, acting on their mean values")
    p.add_argument("--cost", type=_non_negative_float, default=None,
                   help="per-call cost c the switch acts at (default: its trained c); the reward and cost values "
                        "are learned apart, so c changes without retraining")
    p.add_argument("--episodes", type=_positive_int, default=200, help="held-out episodes (default %(default)s)")
    p.add_argument("--seed", type=_non_negative_int, default=0,
                   help="run seed: any non-negative integer; 0-9 are the documented benchmark (0-2) and "
                        f"validation ({VALIDATION_SEED}) seeds (default %(default)s; see londi.core.seeds)")
    p.add_argument("--budget", type=_non_negative_int, default=None, help="hard cap on DEEPTHINK calls per episode")
    p.add_argument("--rate", type=float, default=None,
                   help="target DEEPTHINK call rate (random, periodic, uncertainty, router and task-router baselines; "
                        "for londi, the switch's cost weight is calibrated to it)")
    p.add_argument("--allow-policy-mismatch", action="store_true",
                   help="evaluate a trained switch with other QUICK/DEEPTHINK policies than it was trained with "
                        "(its switch.json names them; without this flag a mismatch is an error)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="evaluate a Lagrangian switch (--cost-limit) at its trained weight c + lambda instead of "
                        "the weight calibrated to its limit on calibration episodes")
    p.add_argument("--threshold", type=float, default=None,
                   help="fixed threshold for the uncertainty and router baselines (instead of --rate)")
    p.add_argument("--calibration-episodes", type=_positive_int, default=None,
                   help="training-seed episodes used to calibrate or train baselines (default: the baseline's), "
                        "or to calibrate a trained switch (default "
                        f"{DEFAULT_LIMIT_CALIBRATION_EPISODES} for a Lagrangian limit, {DEFAULT_CALIBRATION_EPISODES} "
                        "for --rate)")
    p.add_argument("--num-envs", type=_positive_int, default=_param_default(evaluate_methods, "num_envs"),
                   help="episodes played side by side, each step's LM calls batched across them (one forward "
                        "for a local model, concurrent requests for a served one); the per-episode results "
                        "are those of --num-envs 1 (default %(default)s)")
    p.add_argument("--env-processes", action="store_true",
                   help="with --num-envs > 1, run each game in its own worker process, so that the games step "
                        "in parallel while the LMs run in this one (for games that are slow to step: ScienceWorld, "
                        "TextWorld, or many cores)")
    p.add_argument("--out", default=None, help="write results.json here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_lm_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="train a switch (LONDI, LONDI-B with --budget, Lagrangian with --cost-limit)")

    def tc(name: str) -> Any:  # defaults are TrainConfig's, never copies
        return _default(TrainConfig, name)

    p.add_argument("--env", default=tc("env"), help="env id (default: %(default)s)")
    p.add_argument("--cost", type=_non_negative_float, default=tc("cost"),
                   help="per-call cost c of DEEPTHINK (default %(default)s)")
    p.add_argument("--budget", type=_non_negative_int, default=tc("budget"),
                   help="hard cap B on DEEPTHINK calls per episode (default: none)")
    p.add_argument("--cost-limit", type=_non_negative_float, default=tc("cost_limit"),
                   help="limit L on expected DEEPTHINK calls per episode (Lagrangian) (default: none)")
    p.add_argument("--lagrangian-multiplier-init", type=_non_negative_float, default=tc("lagrangian_multiplier_init"),
                   help="initial Lagrange multiplier lambda (default %(default)s)")
    p.add_argument("--lambda-lr", type=float, default=tc("lambda_lr"),
                   help="dual-ascent step size for lambda (default %(default)s)")
    p.add_argument("--lagrangian-upper-bound", type=_non_negative_float, default=tc("lagrangian_upper_bound"),
                   help="cap on lambda (default: none)")
    p.add_argument("--features", default=tc("features"),
                   help="switch features: quick, choice, goal, target, bow, minilm, oracle (the expert's label: an oracle, for controlled "
                        "experiments) or a + combination (default %(default)s)")
    p.add_argument("--steps", type=_positive_int, default=tc("steps"), help="training env steps (default %(default)s)")
    p.add_argument("--gamma", type=float, default=tc("gamma"),
                   help="discount of the reward and cost values (default %(default)s)")
    p.add_argument("--n-steps", type=_positive_int, default=tc("n_steps"),
                   help="n-step targets for the switch's values (default %(default)s)")
    p.add_argument("--select-every", type=_non_negative_int, default=tc("select_every"),
                   help="evaluate the greedy switch every N steps on selection episodes and keep the best "
                        f"weights (default {DEFAULT_SELECT_EVERY}, and 0 with --cost-limit; 0: keep the last; "
                        "see londi.learn.selection)")
    p.add_argument("--select-episodes", type=_positive_int, default=tc("select_episodes"),
                   help="selection episodes per evaluation (default %(default)s)")
    p.add_argument("--seed", type=_non_negative_int, default=tc("seed"),
                   help="run seed: any non-negative integer (default %(default)s)")
    p.add_argument("--num-envs", type=_positive_int, default=tc("num_envs"),
                   help="training episodes played at once, each step's LM calls batched across them; steps and "
                        "intervals count the transitions of all of them, and the gradient steps per transition "
                        "stay those of one env (default %(default)s)")
    p.add_argument("--out", default=None, help="run folder (default runs/<env>__<method>__<seed>__<time>)")
    p.add_argument("--no-progress", action="store_true")
    _add_lm_args(p)
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    p.set_defaults(func=cmd_train,
                   config_fields=tuple(a.dest for a in p._actions if a.dest in train_fields))

    p = sub.add_parser("demo", help="train and evaluate a switch on the default env (the README's main job)")
    p.add_argument("--out", default=_param_default(run_demo, "out_dir"), help="output folder (default %(default)s)")
    p.add_argument("--steps", type=_positive_int, default=DEMO_STEPS, help="training steps (default %(default)s)")
    p.add_argument("--episodes", type=_positive_int, default=DEMO_EPISODES,
                   help="held-out episodes (default %(default)s)")
    p.add_argument("--cost", type=_non_negative_float, default=DEMO_COST,
                   help="per-call cost the switch trains with (default %(default)s)")
    p.add_argument("--rate", type=_call_rate, default=DEMO_RATE,
                   help="DEEPTHINK call rate the switch acts at: its cost weight is calibrated to it after training "
                        "(default %(default)s)")
    p.add_argument("--calibration-episodes", type=_positive_int, default=DEMO_CALIBRATION_EPISODES,
                   help="training-seed episodes for that calibration (default %(default)s)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="act at the trained cost weight (--cost) instead of calibrating to --rate")
    p.add_argument("--seed", type=_non_negative_int, default=_param_default(run_demo, "seed"),
                   help="run seed: any non-negative integer (default %(default)s)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    _add_sweep_parser(sub)
    _add_report_parser(sub)
    serving.register(sub)  # `londi serve`: its options live beside the server
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    import torch

    torch.set_num_threads(args.threads)
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
