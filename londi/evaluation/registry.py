"""The method registry: every method ``londi eval`` and ``londi sweep`` can run, in one table.

A method is a :class:`MethodSpec`: its name, the options it takes (each an :class:`Option`
with its default and a one-line doc), a ``build`` function that makes the
:class:`~londi.rules.base.Method` (a rule and the LM pair it switches between, calibrating or
training the rule where it needs to) and an ``info`` function that says, for ``results.json``,
what the built rule learned and what its offline work cost. The CLI (``londi eval``), the sweep
(:mod:`londi.evaluation.sweep` and its config checks) and the evaluation loop read methods only
from here, so adding a baseline means one rule file in :mod:`londi.rules` and one entry in
:data:`METHODS` (docs/design.md, "Adding a baseline", shows one).

Why this module is in the evaluation layer, not in :mod:`londi.rules`: the ``londi`` method's
builder loads a trained switch (:func:`londi.learn.train.load_switches`), which is the learn
layer, and rules sit below learn (they may not import it). The registry is the first layer that
sees both the rules and the learner.

Options come in two kinds. *Run options* (``seed``, ``rate``, ``budget``, ``threshold``,
``calibration_episodes``, and ``londi``'s ``switch``, ``cost``, ...) are the ``londi eval``
flags and the sweep's grid keys: one value serves every method of a run, so a method ignores a
run option it does not take (``--rate`` also reaches ``heuristic``). *Rule options*
(``Option.param``: ``measure``, ``train_episodes``, ...) belong to one method (a sweep entry's
``params``) and an unknown one is an error naming the valid ones.
"""
from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from londi.agents.base import TextPolicy
from londi.agents.expert import OracleExpert
from londi.core.errors import ConfigError, LondiError, UnknownChoiceError
from londi.core.seeds import training_seeds
from londi.envs import DEFAULT_ENV_ID, env_ids
from londi.learn.train import load_switches
from londi.rules.base import AlwaysDeepthink, AlwaysQuick, Method, SwitchRule
from londi.rules.calibrated import CostCalibratedSwitch, learned_switch_rule
from londi.rules.heuristic import HeuristicSwitch
from londi.rules.offline import (
    DEFAULT_CALIBRATION_EPISODES,
    DEFAULT_RATE,
    DEFAULT_TRAIN_EPISODES,
    OfflineRule,
    check_rate,
    offline_pair,
)
from londi.rules.oracle import HindsightOracle
from londi.rules.router import RouterSwitch
from londi.rules.simple import FirstBSwitch, PeriodicSwitch, RandomSwitch
from londi.rules.task_router import TaskRouter
from londi.rules.threshold import ThresholdSwitch, UncertaintySwitch, calibrate_rule
from londi.switch.env import SwitchEnv
from londi.switch.rollout import build_switch_env

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Option:
    """One option of a method.

    Attributes:
        name: the keyword ``build_method`` takes (the sweep's grid key or ``params`` key).
        default: its value when not given (``None``: unset; the method decides what that means).
        doc: one line for help texts.
        param: a rule option (a sweep entry's ``params``), not a run option.
    """

    name: str
    default: Any
    doc: str
    param: bool = False


@dataclass(frozen=True)
class BuildInputs:
    """What every builder gets besides its options: the LM pair and the env it is evaluated in
    (calibration and training episodes are played in the same env)."""

    quick: TextPolicy | None
    deepthink: TextPolicy | None
    env_id: str = DEFAULT_ENV_ID
    env_kwargs: dict[str, Any] | None = None
    progress: bool = False


def _no_info(rule: SwitchRule) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class MethodSpec:
    """A method: name, options, builder and ``info``.

    Attributes:
        name: the name ``--method`` and a sweep's ``method`` take.
        doc: one line: what the method does.
        options: the options it takes, in the order help texts list them.
        build: ``build(inputs, options) -> Method``; ``options`` holds every option of
            :attr:`options`, defaults filled in.
        info: ``info(rule) -> dict``: the ``results.json`` entries of the built rule, read after
            the evaluation (calibration, training, offline cost, trigger counts).
        is_oracle: the method reads the expert's labels (``results.json`` marks it ``"oracle"``).
        needs_lms: the method plays the QUICK/DEEPTHINK pair (``expert`` does not).
    """

    name: str
    doc: str
    options: tuple[Option, ...]
    build: Callable[[BuildInputs, Mapping[str, Any]], Method]
    info: Callable[[SwitchRule], dict[str, Any]] = _no_info
    is_oracle: bool = False
    needs_lms: bool = True

    def option(self, name: str) -> Option:
        for o in self.options:
            if o.name == name:
                return o
        raise UnknownChoiceError(f"option of method {self.name!r}", name, [o.name for o in self.options])

    @property
    def run_options(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options if not o.param)

    @property
    def params(self) -> tuple[str, ...]:
        """The rule options (a sweep entry's ``params``)."""
        return tuple(o.name for o in self.options if o.param)


# ------------------------------------------------------------------------------------ options
def _kw(func: Callable[..., Any], name: str) -> Any:
    """The default of keyword ``name`` of ``func``: rule options default to the rule's own
    defaults, never copies of them."""
    return inspect.signature(func).parameters[name].default


def _seed(default: int = 0) -> Option:
    return Option("seed", default, "the run seed: seeds the rule's draws and picks its offline episodes")


_BUDGET = Option("budget", None, "hard cap on DEEPTHINK calls per episode (the env enforces it)")
_CAL = Option("calibration_episodes", None,
              f"episodes to calibrate a threshold to the rate (default {DEFAULT_CALIBRATION_EPISODES})")
_THRESHOLD = Option("threshold", None, "a fixed threshold instead of calibrating one to the rate")
_MAX_ROUNDS = Option("max_rounds", _kw(calibrate_rule, "max_rounds"), "calibration rounds (thresholds measured)", param=True)
_TOLERANCE = Option("tolerance", _kw(calibrate_rule, "tolerance"), "calibration stops within this distance of the rate", param=True)
_TRAIN_EPISODES = Option("train_episodes", DEFAULT_TRAIN_EPISODES, "episodes logged to train the router", param=True)


# ------------------------------------------------------------------------------------ checks
def _check_budget(budget: Any) -> int | None:
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
        raise ConfigError(f"budget must be a non-negative integer, got {budget!r}")
    return budget


def _check_threshold(threshold: Any) -> float | None:
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not math.isfinite(threshold)):
        raise ConfigError(f"threshold must be a finite number, got {threshold!r}")
    return threshold


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def _log_offline(name: str, rule: SwitchRule) -> None:
    if isinstance(rule, OfflineRule):
        for c in rule.offline_cost:
            logger.info("%s: %s used %d episodes, %d steps, %.2f device-s, %.1f s wall (not counted in evaluation)",
                        name, c.purpose, c.episodes, c.steps, c.device_seconds["total"], c.wall_seconds)


def _calibrate(name: str, rule: ThresholdSwitch, inputs: BuildInputs, o: Mapping[str, Any]) -> None:
    """Fix ``rule``'s threshold, or calibrate it to ``o["rate"]`` on training-seed episodes."""
    if o["threshold"] is not None:
        rule.threshold, rule.tie_prob = float(o["threshold"]), 0.0
        return
    rate = check_rate(o["rate"])
    if rate is None:
        return
    n_cal = _check_positive("calibration_episodes", o["calibration_episodes"] or DEFAULT_CALIBRATION_EPISODES)
    env = _offline_env(inputs, rule.features, o["budget"])
    try:
        calibrate_rule(rule, env, training_seeds(int(o["seed"]), n_cal, f"{name}-calibration"), rate,
                       purpose=f"{name} calibration", progress=inputs.progress, max_rounds=o["max_rounds"],
                       tolerance=o["tolerance"])
    finally:
        env.close()
    logger.info("%s calibrated to rate %.3f: threshold %.4g, tie probability %.3f", name, rate, rule.threshold,
                rule.tie_prob)


def _offline_env(inputs: BuildInputs, features: str | None, budget: int | None) -> SwitchEnv:
    quick, deepthink = offline_pair(inputs.quick, inputs.deepthink)
    return build_switch_env(inputs.env_id, quick, deepthink, features=features, budget=budget,
                            env_kwargs=inputs.env_kwargs)


def _method(inputs: BuildInputs, rule: SwitchRule, budget: int | None) -> Method:
    return Method(rule, inputs.quick, inputs.deepthink, budget)


# ------------------------------------------------------------------------------------ builders
def _build_expert(inputs: BuildInputs, o: Mapping[str, Any]) -> Method:
    oracle = OracleExpert()
    return Method(AlwaysQuick(), oracle, oracle)


def _build_londi(inputs: BuildInputs, o: Mapping[str, Any]) -> Method:
    switch = o["switch"]
    if not switch:
        raise LondiError("--method londi needs --switch RUN_DIR (a folder written by `londi train`)")
    if isinstance(switch, tuple):  # a switch the caller has just trained or loaded: (model, TrainConfig)
        model, config = switch
        if o["cost"] is not None:
            model.set_call_cost(o["cost"])
    else:
        model, config = load_switches(switch, call_cost=o["cost"], quick=inputs.quick, deepthink=inputs.deepthink,
                                      allow_policy_mismatch=bool(o["allow_policy_mismatch"]))
    budget = config.budget if o["budget"] is None else o["budget"]
    rule = learned_switch_rule(
        model, config, quick=inputs.quick, deepthink=inputs.deepthink, env_id=inputs.env_id, seed=int(o["seed"]),
        budget=budget, rate=o["rate"], calibrate_limit=bool(o["calibrate"]),
        calibration_episodes=o["calibration_episodes"], name=o["name"], progress=inputs.progress,
    )
    return _method(inputs, rule, budget)


def _build_random(inputs: BuildInputs, o: Mapping[str, Any]) -> Method:
    rate = check_rate(o["rate"])
    return _method(inputs, RandomSwitch(rate=DEFAULT_RATE if rate is None else rate, seed=int(o["seed"])), o["budget"])


def _build_periodic(inputs: BuildInputs, o: Mapping[str, Any]) -> Method:
    rate = check_rate(o["rate"])
    return _method(inputs, PeriodicSwitch(rate=DEFAULT_RATE if rate is None else rate), o["budget"])


def _build_first_b(inputs: BuildInputs, o: Mapping[str, Any]) -> Method:
    if o["budget"] is None:
        raise ConfigError("first-b needs a budget B (--budget B): DEEPTHINK acts on the first B steps")
    return _method(inputs, FirstBSwitch(budget=o["budget"]), o["budget"])


_HEURISTIC_PARAMS = ("fail_limit", "fail_window", "loop_window", "repeat_limit", "patience", "deepthink_steps")


def _build_heuristic(inputs: BuildInputs, o: Mapping[str, Any]) -> Method:
    return _method(inputs, HeuristicSwitch(**{k: o[k] for k in _HEURISTIC_PARAMS}), o["budget"])


def _build_uncertainty(inputs: BuildInputs, o: Mapping[str, Any]) -> Method:
    rule = UncertaintySwitch(measure=o["measure"], seed=int(o["seed"]))
    _calibrate("uncertainty", rule, inputs, o)
    return _method(inputs, rule, o["budget"])


def _build_router(inputs: BuildInputs, o: Mapping[str, Any]) -> Method:
    n_train = _check_positive("train_episodes", o["train_episodes"])
    seed = int(o["seed"])
    rule = RouterSwitch(seed=seed)
    env = _offline_env(inputs, rule.features, o["budget"])
    try:
        rule.fit_from_episodes(env, training_seeds(seed, n_train, "router-train"),
                               behaviour_rate=check_rate(o["behaviour_rate"]), l2=o["l2"], progress=inputs.progress)
    finally:
        env.close()
    _calibrate("router", rule, inputs, o)
    return _method(inputs, rule, o["budget"])


def _build_task_router(inputs: BuildInputs, o: Mapping[str, Any]) -> Method:
    n_train = _check_positive("train_episodes", o["train_episodes"])
    seed = int(o["seed"])
    rule = TaskRouter(rate=check_rate(o["rate"]), seed=seed, min_gain=o["min_gain"], rank=o["rank"], l2=o["l2"])
    quick, deepthink = offline_pair(inputs.quick, inputs.deepthink)
    rule.fit_from_episodes(quick, deepthink, inputs.env_id, training_seeds(seed, n_train, "task-router-train"),
                           budget=o["budget"], env_kwargs=inputs.env_kwargs, progress=inputs.progress)
    return _method(inputs, rule, o["budget"])


def _build_oracle(inputs: BuildInputs, o: Mapping[str, Any]) -> Method:
    return _method(inputs, HindsightOracle(), o["budget"])


# ------------------------------------------------------------------------------------ info
def _offline_info(rule: SwitchRule) -> dict[str, Any]:
    """``offline_cost`` and ``calibration`` of a rule that played offline episodes."""
    out: dict[str, Any] = {}
    if isinstance(rule, OfflineRule) and rule.offline_cost:
        out["offline_cost"] = rule.offline_summary()
    if isinstance(rule, ThresholdSwitch) and rule.calibration:
        out["calibration"] = dict(rule.calibration)
    return out


def _londi_info(rule: SwitchRule) -> dict[str, Any]:
    return _offline_info(rule) if isinstance(rule, CostCalibratedSwitch) else {}


def _router_info(rule: SwitchRule) -> dict[str, Any]:
    out = _offline_info(rule)
    if isinstance(rule, RouterSwitch) and rule.train_stats:
        out["router_training"] = dict(rule.train_stats)
    return out


def _task_router_info(rule: SwitchRule) -> dict[str, Any]:
    out = _offline_info(rule)
    if isinstance(rule, TaskRouter) and rule.matrix:
        out["task_matrix"] = dict(rule.matrix)
    return out


def _heuristic_info(rule: SwitchRule) -> dict[str, Any]:
    # counted since the rule was made: read after the evaluation
    if isinstance(rule, HeuristicSwitch) and rule.trigger_counts:
        return {"heuristic_triggers": dict(rule.trigger_counts)}
    return {}


# ------------------------------------------------------------------------------------ the table
def _rate(doc: str) -> Option:
    return Option("rate", None, doc)


#: Every method, by name, in the order help texts list them.
METHODS: dict[str, MethodSpec] = {s.name: s for s in (
    MethodSpec("expert", "the expert (an oracle) plays every step; no LM is loaded", (), _build_expert,
               is_oracle=True, needs_lms=False),
    MethodSpec("always-quick", "QUICK acts at every step: one end of the curve", (_BUDGET,),
               lambda inputs, o: _method(inputs, AlwaysQuick(), o["budget"])),
    MethodSpec("always-deepthink", "DEEPTHINK acts at every step the budget allows: the other end", (_BUDGET,),
               lambda inputs, o: _method(inputs, AlwaysDeepthink(), o["budget"])),
    MethodSpec("londi", "a trained switch, greedy at its cost weight or calibrated to a rate or its limit", (
        Option("switch", None, "run folder(s) written by `londi train` (comma-separated: an ensemble), "
                               "or a loaded (model, TrainConfig)"),
        Option("cost", None, "per-call cost c the switch acts at (default: its trained c)"),
        _BUDGET,
        _rate("target DEEPTHINK call rate: the cost weight is calibrated to it"),
        Option("calibrate", True, "calibrate a Lagrangian switch's weight to its limit (false: trained c + lambda)"),
        Option("calibration_episodes", None, "episodes to calibrate the weight (default: calibrated.py's)"),
        Option("allow_policy_mismatch", False, "accept other LMs than the switch was trained with"),
        _seed(),
        Option("name", "londi", "the rule's name (it also keys the calibration seeds)"),
    ), _build_londi, info=_londi_info),
    MethodSpec("random", "DEEPTHINK with probability rate at each step", (
        _rate(f"the call probability (default {DEFAULT_RATE})"), _BUDGET, _seed()), _build_random),
    MethodSpec("periodic", "DEEPTHINK at evenly spaced steps, a share rate of them", (
        _rate(f"the share of steps (default {DEFAULT_RATE})"), _BUDGET), _build_periodic),
    MethodSpec("first-b", "DEEPTHINK on the first B steps, then QUICK", (
        Option("budget", None, "B: the hard cap, and the leading steps given to DEEPTHINK (required)"),),
        _build_first_b),
    MethodSpec("heuristic", "SwiftSage-style hand rules: escalate when QUICK looks stuck", (
        _BUDGET,
        Option("fail_limit", _kw(HeuristicSwitch, "fail_limit"), "failed or invalid actions that trigger an escalation", param=True),
        Option("fail_window", _kw(HeuristicSwitch, "fail_window"), "recent actions counted for fail_limit", param=True),
        Option("loop_window", _kw(HeuristicSwitch, "loop_window"), "steps within which a repeated (text, action) pair is a loop (0: off)", param=True),
        Option("repeat_limit", _kw(HeuristicSwitch, "repeat_limit"), "identical consecutive actions that trigger an escalation (0: off)", param=True),
        Option("patience", _kw(HeuristicSwitch, "patience"), "steps without reward that trigger an escalation (0: off)", param=True),
        Option("deepthink_steps", _kw(HeuristicSwitch, "deepthink_steps"), "DEEPTHINK steps per escalation", param=True),
    ), _build_heuristic, info=_heuristic_info),
    MethodSpec("uncertainty", "escalate where QUICK's action distribution is flat", (
        _rate("target call rate the threshold is calibrated to (none: threshold 0.5)"), _THRESHOLD, _BUDGET, _CAL,
        _seed(),
        Option("measure", _kw(UncertaintySwitch, "measure"), "flatness measure: entropy or margin", param=True),
        _MAX_ROUNDS, _TOLERANCE,
    ), _build_uncertainty, info=_offline_info),
    MethodSpec("router", "a classifier of 'QUICK is wrong' (expert labels), thresholded", (
        _rate("target call rate the threshold is calibrated to (none: probability 0.5)"), _THRESHOLD, _BUDGET, _CAL,
        _seed(),
        _TRAIN_EPISODES,
        Option("behaviour_rate", _kw(RouterSwitch.fit_from_episodes, "behaviour_rate"), "random switching rate of the logged training episodes", param=True),
        Option("l2", _kw(RouterSwitch.fit_from_episodes, "l2"), "ridge penalty of the logistic regression",
               param=True),
        _MAX_ROUNDS, _TOLERANCE,
    ), _build_router, info=_router_info),
    MethodSpec("task-router", "one model per episode from a factorised model x task success matrix", (
        _rate("target DEEPTHINK call fraction (none: DEEPTHINK where its predicted gain exceeds min_gain)"),
        _BUDGET, _seed(),
        Option("train_episodes", DEFAULT_TRAIN_EPISODES, "training episodes per model", param=True),
        Option("min_gain", _kw(TaskRouter, "min_gain"), "success gain that justifies DEEPTHINK when no rate is given", param=True),
        Option("rank", _kw(TaskRouter, "rank"), "rank of the factorisation", param=True),
        Option("l2", _kw(TaskRouter, "l2"), "ridge penalty (pseudo-episodes) of the factorisation", param=True),
    ), _build_task_router, info=_task_router_info),
    MethodSpec("oracle", "the hindsight oracle: DEEPTHINK exactly where QUICK differs from the expert",
               (_BUDGET,), _build_oracle, is_oracle=True),
)}


def register(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Add ``spec`` to :data:`METHODS` (for a method defined outside the package)."""
    if spec.name in METHODS and not replace:
        raise ConfigError(f"a method named {spec.name!r} is already registered")
    METHODS[spec.name] = spec
    return spec


def method_names() -> list[str]:
    """The registered method names, in registry order."""
    return list(METHODS)


def get_method(name: str) -> MethodSpec:
    """The spec of ``name``; an unknown name raises an error naming the valid ones."""
    if name not in METHODS:
        raise UnknownChoiceError("method", str(name), method_names())
    return METHODS[name]


def run_option_names() -> tuple[str, ...]:
    """Every run option of any method (what a method ignores when it does not take it)."""
    return tuple(dict.fromkeys(o.name for s in METHODS.values() for o in s.options if not o.param))


def build_method(
    name: str,
    /,
    *,
    quick: TextPolicy | None = None,
    deepthink: TextPolicy | None = None,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    **options: Any,
) -> Method:
    """Build (calibrate or train, where needed) the method ``name`` as a :class:`Method`.

    ``options`` are the method's options (:attr:`MethodSpec.options`); one left out, or given as
    ``None``, takes its default. A run option the method does not take is ignored (one
    ``--rate`` serves every method of an evaluation); an unknown rule option is an error.

    Raises:
        UnknownChoiceError: an unknown method, env id or rule option (naming the valid ones).
        ConfigError: an out-of-range option, or a method without a required one.
    """
    spec = get_method(name)
    env_id = env_id or DEFAULT_ENV_ID
    if env_id not in env_ids():
        raise UnknownChoiceError("env id", env_id, env_ids())
    known = {o.name for o in spec.options}
    shared = set(run_option_names())
    values: dict[str, Any] = {o.name: o.default for o in spec.options}
    for key, value in options.items():
        if key in known:
            if value is not None:
                values[key] = value
        elif key not in shared:
            raise UnknownChoiceError(f"option of method {name!r}", key, spec.params or ("(none)",))
    # run options are checked whether or not this method takes them: a bad --rate is an error
    _check_budget(options.get("budget"))
    _check_threshold(options.get("threshold"))
    check_rate(options.get("rate"))
    if options.get("calibration_episodes") is not None:
        _check_positive("calibration_episodes", options["calibration_episodes"])
    if spec.needs_lms and (quick is None or deepthink is None):
        raise ConfigError(f"method {name!r} needs the QUICK and DEEPTHINK policies")
    method = spec.build(BuildInputs(quick, deepthink, env_id, env_kwargs, progress), values)
    method.kind = spec.name
    _log_offline(name, method.rule)
    return method


def method_info(method: Method) -> dict[str, Any]:
    """The ``results.json`` entries of ``method``'s rule (its spec's ``info``), read after the
    evaluation. A :class:`Method` made by hand is looked up by its rule's name."""
    spec = METHODS.get(method.kind or method.rule.name)
    return spec.info(method.rule) if spec is not None else {}


def is_oracle_method(method: Method) -> bool:
    """The method's spec reads the expert's labels (``oracle``, ``expert``)."""
    spec = METHODS.get(method.kind or method.rule.name)
    return bool(spec is not None and spec.is_oracle)


__all__ = [
    "METHODS",
    "BuildInputs",
    "MethodSpec",
    "Option",
    "build_method",
    "get_method",
    "is_oracle_method",
    "method_info",
    "method_names",
    "register",
    "run_option_names",
]
