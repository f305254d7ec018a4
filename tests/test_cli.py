"""The ``londi`` parser: defaults are read from the dataclasses (never copied), and ``londi serve``
runs with the global ``--threads``."""
from __future__ import annotations

import argparse
import dataclasses
import inspect

import pytest

from londi import cli, demo
from londi.agents import serving as serve
from londi.cli import build_parser, main
from londi.learn.train import TrainConfig

#: `londi train` options that must land in TrainConfig (dest == field name).
TRAIN_OPTIONS = ("env", "quick", "deepthink", "features", "cost", "budget", "cost_limit",
                 "lagrangian_multiplier_init", "lambda_lr", "lagrangian_upper_bound", "steps", "seed", "gamma",
                 "n_steps", "select_every", "select_episodes")


def _subparser(name: str):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[name]


def _field_default(cls, name):
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def test_every_train_option_defaults_to_its_trainconfig_field():
    p = _subparser("train")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    mapped = {a.dest: a for a in p._actions if a.dest in fields}
    assert set(TRAIN_OPTIONS) <= set(mapped)
    assert set(p.get_default("config_fields")) == set(mapped)  # exactly these reach TrainConfig
    for dest, action in mapped.items():
        expected = _field_default(TrainConfig, dest)
        assert action.default == expected, dest
        if expected is not None and action.help and "%(default)s" not in action.help:
            assert str(expected) in action.help, dest  # a number written in the help is the field's
    assert p.get_default("cost") == TrainConfig().cost == 0.05


def test_train_parses_into_the_default_config(monkeypatch):
    seen = {}

    def fake_train(config, run_dir, **kwargs):
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr("londi.learn.train.train_switch", fake_train)
    monkeypatch.setattr(cli, "load_pair", lambda args: (None, None))
    with pytest.raises(SystemExit):
        main(["train", "--no-progress"])
    assert seen["config"] == TrainConfig()
    with pytest.raises(SystemExit):
        main(["train", "--cost-limit", "2", "--seed", "123456789012", "--no-progress"])
    assert seen["config"].select_every == 0 and seen["config"].seed == 123456789012


def test_demo_sweep_and_serve_defaults_are_read_not_copied():
    p = _subparser("demo")
    assert (p.get_default("steps"), p.get_default("episodes"), p.get_default("cost"), p.get_default("rate"),
            p.get_default("calibration_episodes")) == (
        demo.DEMO_STEPS, demo.DEMO_EPISODES, demo.DEMO_COST, demo.DEMO_RATE, demo.DEMO_CALIBRATION_EPISODES)
    from londi.evaluation.sweep import run_sweep

    params = inspect.signature(run_sweep).parameters
    p = _subparser("sweep")
    assert p.get_default("workers") == params["workers"].default
    assert p.get_default("max_cells") == params["max_cells"].default
    p = _subparser("serve")
    none = serve.FaultInjection()
    for dest, field in (("inject_delay", "delay"), ("inject_error_rate", "error_rate"), ("inject_seed", "seed"),
                        ("fail_every", "fail_every"), ("die_after", "die_after")):
        assert p.get_default(dest) == getattr(none, field)


def test_serve_uses_the_global_threads(monkeypatch, tmp_path):
    """`londi serve --model M --port 8000` used to end in set_num_threads(None)."""
    import torch

    threads: list = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: threads.append(n))

    class Loaded(Exception):
        pass

    generators: list = []

    def fake_generator(model, *, device, dtype, threads):
        generators.append(threads)
        raise Loaded  # stop before a server starts

    monkeypatch.setattr(serve, "CausalLMGenerator", fake_generator)
    for argv, global_threads, serve_threads in (
        (["serve", "--model", str(tmp_path), "--port", "8000"], 1, None),
        (["--threads", "3", "serve", "--model", str(tmp_path)], 3, None),
        (["serve", "--model", str(tmp_path), "--threads", "2"], 1, 2),
    ):
        threads.clear()
        generators.clear()
        with pytest.raises(Loaded):
            main(argv)
        assert threads == [global_threads] and all(isinstance(n, int) for n in threads)
        assert generators == [serve_threads]
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    assert parser.parse_args(["--model", "m", "--threads", "4"]).serve_threads == 4  # python -m londi.agents.serving
