"""The method registry (londi.evaluation.registry): every method builds and plays, its info() is
JSON, options behave as documented, and the worked example of docs/design.md runs."""
from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from londi.core.errors import ConfigError, UnknownChoiceError
from londi.evaluation import registry
from londi.evaluation.loop import evaluate_methods
from londi.evaluation.registry import METHODS, build_method, get_method, method_info, method_names
from londi.learn.train import TrainConfig, build_learner
from londi.rules.base import Method
from londi.switch.rollout import build_switch_env, run_rule

ENV = "londi/BabyAIText-GoToLocal-v0"
ROOT = Path(__file__).resolve().parents[1]
#: The results.json entries an info() may add (the offline info keys of results.json).
INFO_KEYS = {"offline_cost", "calibration", "router_training", "task_matrix", "heuristic_triggers"}


def _untrained_switch(quick, deepthink, **config):
    """A LondiDQN that was never trained (the builder only needs its values), and its config."""
    cfg = TrainConfig(env=ENV, steps=10, **config)
    env = build_switch_env(ENV, quick, deepthink, features=cfg.features)
    model = build_learner(cfg, env, tensorboard=False)
    return model, cfg


#: Small but complete options per method: one episode each must stay fast.
FAST = {
    "first-b": {"budget": 2},
    "uncertainty": {"rate": 0.3, "calibration_episodes": 2, "max_rounds": 2},
    "router": {"rate": 0.3, "calibration_episodes": 2, "train_episodes": 2, "max_rounds": 2},
    "task-router": {"rate": 0.3, "train_episodes": 2},
    "random": {"rate": 0.3},
    "periodic": {"rate": 0.3},
}


@pytest.mark.parametrize("name", method_names())
def test_every_registered_method_builds_and_plays_an_episode(controlled_pair, name):
    quick, deep = controlled_pair
    options = dict(FAST.get(name, {}))
    if name == "londi":
        options["switch"] = _untrained_switch(quick, deep)
    method = build_method(name, quick=quick, deepthink=deep, env_id=ENV, **options)
    assert isinstance(method, Method) and method.kind == name
    results = evaluate_methods({name: method}, env_id=ENV, episodes=1, seed=0, progress=False)
    entry = results["methods"][name]
    assert entry["episodes"] == 1 and len(entry["per_episode"]) == 1
    info = method_info(method)
    assert set(info) <= INFO_KEYS
    assert json.loads(json.dumps(info)) == info  # JSON-serialisable as it is
    for key in info:
        assert entry[key] == info[key]  # evaluation writes exactly the registry's info
    json.dumps(results)
    spec = get_method(name)
    if spec.is_oracle:
        assert entry.get("oracle") is True


def test_calibrated_londi_reports_its_calibration(controlled_pair):
    quick, deep = controlled_pair
    method = build_method("londi", quick=quick, deepthink=deep, env_id=ENV, rate=0.3, calibration_episodes=2,
                          switch=_untrained_switch(quick, deep))
    info = method_info(method)
    assert info["calibration"]["target_rate"] == 0.3 and "trained_weight" in info["calibration"]
    assert info["offline_cost"][0]["purpose"] == "londi calibration"


def test_options_declare_defaults_and_docs():
    for spec in METHODS.values():
        names = [o.name for o in spec.options]
        assert len(names) == len(set(names)), spec.name
        for o in spec.options:
            assert o.doc and "\n" not in o.doc, (spec.name, o.name)
    # rule options default to the rule's own defaults, never copies
    from londi.rules.heuristic import HeuristicSwitch

    assert get_method("heuristic").option("patience").default == HeuristicSwitch().patience
    assert get_method("uncertainty").params == ("measure", "max_rounds", "tolerance")


def test_run_options_are_shared_and_rule_options_are_checked(controlled_pair):
    quick, deep = controlled_pair
    # one --rate serves every method of a run: a method that does not take it ignores it ...
    method = build_method("heuristic", quick=quick, deepthink=deep, rate=0.3, deepthink_steps=2)
    assert method.rule.deepthink_steps == 2
    # ... but it is still checked, and an unknown rule option names the valid ones
    with pytest.raises(ConfigError, match="rate"):
        build_method("heuristic", quick=quick, deepthink=deep, rate=1.5)
    with pytest.raises(UnknownChoiceError, match="deepthink_steps"):
        build_method("heuristic", quick=quick, deepthink=deep, deepthink_step=2)
    with pytest.raises(UnknownChoiceError, match="random"):
        get_method("randm")
    with pytest.raises(ConfigError, match="QUICK and DEEPTHINK"):
        build_method("random")
    assert build_method("expert").quick.is_oracle  # the expert needs no LM pair


def _doc_blocks() -> list[str]:
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    section = text.split("## Adding a baseline", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_worked_example_of_docs_design_runs(controlled_pair, monkeypatch):
    rule_src, entry_src = _doc_blocks()
    module: dict = {"__name__": "every_k_example"}
    exec(compile(rule_src, "docs/design.md (rule)", "exec"), module)
    EveryKSwitch = module["EveryKSwitch"]
    names = dict(vars(registry), EveryKSwitch=EveryKSwitch)
    entry = eval(compile(textwrap.dedent(entry_src), "docs/design.md (entry)", "eval"), names)
    spec = entry[0] if isinstance(entry, tuple) else entry
    monkeypatch.setitem(METHODS, spec.name, spec)

    quick, deep = controlled_pair
    method = build_method("every-k", quick=quick, deepthink=deep, env_id=ENV, k=3)
    env = build_switch_env(ENV, quick, deep, features=method.rule.features)
    for e in run_rule(method.rule, env, [500_000, 500_001], progress=False):
        assert e.deepthink_calls == len(range(0, e.steps, 3))
    assert build_method("every-k", quick=quick, deepthink=deep).rule.k == 4  # the rule's default
    with pytest.raises(ConfigError, match="period"):
        build_method("every-k", quick=quick, deepthink=deep, k=0)

    # the sweep takes it too: its grid keys come from the registry
    from londi.evaluation.sweep_config import load_config

    config = load_config({"name": "k", "episodes": 1, "grid": [{"method": "every-k", "budget": [2, 4],
                                                                "params": {"k": 3}}]})
    assert [c.params for c in config.cells] == [{"k": 3}, {"k": 3}]
    with pytest.raises(UnknownChoiceError, match="k"):
        load_config({"name": "k", "episodes": 1, "grid": [{"method": "every-k", "params": {"kk": 3}}]})
