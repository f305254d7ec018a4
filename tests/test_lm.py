"""Tests of the LM text policy (londi.agents.lm) and the shipped QUICK/DEEPTHINK pair."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import BABYAI_ACTIONS, babyai_observations, prompt_vocab, save_random_gpt2, word_tokenizer

from londi.agents.checkpoints import (
    CHECKSUM_FILE,
    EXTRA_MODELS,
    MIX_MODELS,
    SHIPPED_MODELS,
    shipped_model_path,
    shipped_models_dir,
    verify_checksums,
    write_checksums,
)
from londi.agents.lm import HFPolicy, load_policy
from londi.core.errors import LondiError, UnknownChoiceError
from londi.envs.base import TextObservation

ROOT = Path(__file__).resolve().parents[1]
ACTIONS = BABYAI_ACTIONS


@pytest.fixture(scope="module")
def observations() -> list[TextObservation]:
    return babyai_observations()


@pytest.fixture(scope="module")
def quick() -> HFPolicy:
    return load_policy("quick", device="cpu")


@pytest.fixture(scope="module")
def deepthink() -> HFPolicy:
    return load_policy("deepthink", device="cpu")


@pytest.fixture(scope="module")
def random_causal_dir(tmp_path_factory, observations) -> Path:
    """A randomly initialised tiny GPT-2 with multi-token actions, saved with save_pretrained."""
    return save_random_gpt2(tmp_path_factory.mktemp("gpt2"), observations, seed=0)


@pytest.fixture(scope="module")
def random_seq2seq_dir(tmp_path_factory, observations) -> Path:
    """A randomly initialised tiny T5 (encoder-decoder), saved with save_pretrained."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tok = word_tokenizer(prompt_vocab(observations))
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1,
                      num_heads=2, pad_token_id=0, eos_token_id=2, decoder_start_token_id=0)
    path = tmp_path_factory.mktemp("t5")
    T5ForConditionalGeneration(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


# ------------------------------------------------------------------------------ shipped pair
@pytest.mark.parametrize("name", SHIPPED_MODELS + EXTRA_MODELS + MIX_MODELS)
def test_shipped_checkpoint_loads_with_auto_classes(name):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = shipped_model_path(name)
    assert path.parent == shipped_models_dir()
    assert verify_checksums(path), f"{path} has no {CHECKSUM_FILE}"
    for f in path.iterdir():
        assert f.is_file(), "checkpoint folders must be flat (package_data models/*/*)"
        assert f.stat().st_size < 25 * 2**20, f"{f} is over 25 MB"
    assert (path / "MODEL_CARD.md").is_file()
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    # Every action is one token of the shipped tokenizer, in the context the policy scores it in.
    for a in ACTIONS:
        assert len(tok(" " + a, add_special_tokens=False)["input_ids"]) == 1
    assert model.num_parameters() > 0
    settings = json.loads((path / "londi_policy.json").read_text())
    assert settings["history_length"] >= 0


def test_deepthink_is_bigger_and_sees_more(quick, deepthink, observations):
    obs = observations[-1]
    dq, dd = quick.act(obs), deepthink.act(obs)
    assert deepthink.n_parameters > 10 * quick.n_parameters
    assert dd.record.input_tokens > dq.record.input_tokens  # DEEPTHINK reads the history too
    assert dd.record.flops > 10 * dq.record.flops


@pytest.mark.parametrize("which", ["quick", "deepthink"])
def test_decision_is_a_distribution_over_admissible_actions(which, request, observations):
    policy = request.getfixturevalue(which)
    for obs in observations:
        d = policy.act(obs)
        assert d.action in obs.admissible_actions
        assert d.probs is not None and d.probs.shape == (len(obs.admissible_actions),)
        assert np.all(d.probs >= 0) and abs(float(d.probs.sum()) - 1.0) < 1e-9
        assert d.probs[obs.admissible_actions.index(d.action)] > 0
        assert d.hidden is not None and d.hidden.shape == (policy.hidden_size,) and np.all(np.isfinite(d.hidden))
        rec = d.record
        assert rec.model == which and rec.device == "cpu"
        assert rec.device_seconds > 0 and rec.wall_seconds > 0
        assert rec.input_tokens > 0 and rec.output_tokens == len(obs.admissible_actions)
        assert rec.flops == pytest.approx(2.0 * policy.n_parameters * rec.input_tokens)
        assert rec.error is None and not rec.cache_hit


@pytest.mark.parametrize("which", SHIPPED_MODELS + EXTRA_MODELS + MIX_MODELS)
def test_greedy_option_and_saved_decoding(which, observations):
    """The shipped models sample at their saved temperature; ``sample=False`` takes the argmax."""
    settings = json.loads((shipped_model_path(which) / "londi_policy.json").read_text())
    policy = load_policy(which)
    assert policy.sample == settings["sample"] and policy.temperature == settings["temperature"]
    greedy = load_policy(which, sample=False)
    for obs in observations:
        d = greedy.act(obs)
        assert d.action == obs.admissible_actions[int(np.argmax(d.probs))]
        scores, _, _ = greedy.score(obs)
        expected = np.exp((scores - scores.max()) / greedy.temperature)
        np.testing.assert_allclose(d.probs, expected / expected.sum(), rtol=1e-9)


def test_scores_follow_the_admissible_order(quick, observations):
    obs = observations[0]
    reordered = TextObservation(goal=obs.goal, text=obs.text, admissible_actions=tuple(reversed(obs.admissible_actions)),
                                history=obs.history, inventory=obs.inventory, step=obs.step)
    a, b = quick.act(obs), quick.act(reordered)
    np.testing.assert_allclose(a.probs, b.probs[::-1], rtol=1e-6)
    sub = TextObservation(goal=obs.goal, text=obs.text, admissible_actions=("turn left", "turn right"))
    d = quick.act(sub)
    assert d.action in sub.admissible_actions and d.probs.shape == (2,)


def test_sampling_is_seeded_and_temperature_flattens(observations):
    a = load_policy("quick", sample=True, seed=7)
    b = load_policy("quick", sample=True, seed=7)
    obs = observations[0]
    assert [a.act(obs).action for _ in range(20)] == [b.act(obs).action for _ in range(20)]
    hot = load_policy("quick", temperature=5.0)
    cold = load_policy("quick", temperature=0.5)
    assert hot.act(obs).entropy > cold.act(obs).entropy


# ------------------------------------------------------------------------------ any checkpoint
def test_multi_token_actions_kv_cache_matches_full_forward(random_causal_dir, observations):
    cached = HFPolicy(random_causal_dir, device="cpu", history_length=2)
    full = HFPolicy(random_causal_dir, device="cpu", history_length=2, use_kv_cache=False, action_batch_size=4)
    assert len(cached._action_ids("turn left")) == 2
    for obs in observations:
        s1, h1, c1 = cached.score(obs)
        s2, h2, c2 = full.score(obs)
        np.testing.assert_allclose(s1, s2, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(h1, h2, rtol=1e-4, atol=1e-5)
        d = cached.act(obs)
        assert d.action in obs.admissible_actions and abs(d.probs.sum() - 1) < 1e-9
        # The extra forward for the second tokens is counted in the FLOPs.
        assert d.record.flops > 2.0 * cached.n_parameters * d.record.input_tokens


def test_scores_equal_the_summed_token_log_probabilities(random_causal_dir, observations):
    import torch

    policy = HFPolicy(random_causal_dir, device="cpu", history_length=1)
    obs = observations[-1]
    scores, _, _ = policy.score(obs)
    prompt = policy._prompt_ids(policy.prompt(obs))
    for i, action in enumerate(obs.admissible_actions):
        cont = policy._action_ids(action)
        ids = torch.tensor([prompt + cont])
        with torch.inference_mode():
            logp = torch.log_softmax(policy.model(input_ids=ids).logits[0].double(), -1)
        expected = sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(cont))
        assert scores[i] == pytest.approx(expected, abs=1e-4)


def test_seq2seq_checkpoint(random_seq2seq_dir, observations):
    policy = HFPolicy(random_seq2seq_dir, device="cpu")
    assert policy.is_seq2seq
    for obs in observations[:2]:
        d = policy.act(obs)
        assert d.action in obs.admissible_actions
        assert abs(float(d.probs.sum()) - 1.0) < 1e-9
        assert d.hidden.shape == (policy.hidden_size,)
        assert d.record.flops > 0 and d.record.output_tokens >= len(obs.admissible_actions)


# ------------------------------------------------------------------------------ errors
def test_unknown_name_lists_the_choices():
    with pytest.raises(UnknownChoiceError, match="quick.*deepthink|deepthink.*quick"):
        load_policy("gpt-4o")
    with pytest.raises(UnknownChoiceError, match="did you mean 'deepthink'"):
        load_policy("deepthonk")


def test_missing_or_broken_folders(tmp_path, random_causal_dir):
    with pytest.raises(LondiError, match="no checkpoint folder"):
        load_policy(str(tmp_path / "nowhere"))
    with pytest.raises(LondiError, match="config.json"):
        HFPolicy(tmp_path, device="cpu")
    broken = tmp_path / "broken"
    shutil.copytree(random_causal_dir, broken)
    (broken / "config.json").write_text("{ not json")
    with pytest.raises(LondiError, match="corrupt"):
        HFPolicy(broken, device="cpu")


def test_checksum_mismatch_is_reported(tmp_path):
    copy = tmp_path / "quick"
    shutil.copytree(shipped_model_path("quick"), copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(LondiError, match="checksum"):
        load_policy(str(copy))
    write_checksums(copy)  # re-signed: loads again (the flipped byte is inside a float)
    assert verify_checksums(copy)


def test_bad_arguments_name_valid_choices(random_causal_dir):
    with pytest.raises(ValueError, match="auto"):
        HFPolicy(random_causal_dir, device="tpu")
    with pytest.raises(UnknownChoiceError, match="float32"):
        HFPolicy(random_causal_dir, device="cpu", dtype="float8")
    with pytest.raises(ValueError):
        HFPolicy(random_causal_dir, device="cpu", temperature=0.0)
    with pytest.raises(ValueError):
        HFPolicy(random_causal_dir, device="cpu", history_length=-1)


def test_no_admissible_actions(quick):
    with pytest.raises(LondiError, match="no admissible actions"):
        quick.act(TextObservation(goal="go to the red ball", text="You see a wall 1 step forward", admissible_actions=()))


# ------------------------------------------------------------------------------ training pipeline
def _load_script(name: str):
    """A command line of ``scripts/`` as a module (to call its ``main``); the training code itself
    is the library, :mod:`londi.agents.training`."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_tokenizer_keeps_actions_and_phrases_whole():
    from londi.agents.training.tokenizer import babyai_tokenizer

    tok = babyai_tokenizer([])
    pieces = tok.convert_ids_to_tokens(
        tok("Goal of the agent: go to the red ball\nObservation: You see a red ball 1 step left and 2 steps forward\n"
            "Action: turn left\nAction:")["input_ids"]
    )
    assert "go to the red ball" in pieces and "1 step left and 2 steps forward" in pieces and "turn left" in pieces
    assert "<unk>" not in pieces


@pytest.mark.slow
def test_small_training_run_beats_random(tmp_path):
    """``train_lms.py --small`` on the default DEEPTHINK's recipe: the whole pipeline (expert
    demos, a DAgger round, saving) in about a minute; the model it saves, loaded through
    HFPolicy, beats a uniformly random policy both at imitating the expert (oracle) and at
    reaching the goal."""
    import torch

    from londi.agents.training import babyai, evaluation
    from londi.agents.training.specs import HELDOUT_SEED_START

    train = _load_script("train_lms")
    threads = torch.get_num_threads()
    try:
        assert train.main(["--small", "--models", "deepthink-dagger", "--out", str(tmp_path), "--eval-episodes", "0",
                           "--keep-rounds", "--log-json", str(tmp_path / "log.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    folder = tmp_path / "deepthink-dagger"
    assert verify_checksums(folder) and (folder / "londi_policy.json").is_file()
    assert not (folder / "MODEL_CARD.md").exists()  # no evaluation, no card
    kept = tmp_path / "deepthink-dagger-round1"  # --keep-rounds: the (only) DAgger round's model and log
    assert (kept / "config.json").is_file()
    assert [p["phase"] for p in json.loads((kept / "train_log.json").read_text())["phases"]] == ["demos", "dagger1"]

    # --evaluate-only: measure the trained folder (as after training on another machine), write the card.
    try:
        assert train.main(["--models", "deepthink-dagger", "--out", str(tmp_path), "--evaluate-only", "--eval-episodes", "3",
                           "--log-json", str(tmp_path / "log.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    card = (folder / "MODEL_CARD.md").read_text()
    assert "--small --models deepthink-dagger" in card and "--keep-rounds" in card  # the training command
    assert "a 2-core CPU container" in card and "3 held-out episodes" in card
    log = json.loads((tmp_path / "log.json").read_text())
    assert len(log["results"]) == 1 and log["results"][0]["episodes"] == 3 and "--evaluate-only" in log["evaluate_command"]
    assert verify_checksums(folder)
    seeds = range(HELDOUT_SEED_START, HELDOUT_SEED_START + 60)

    # Per-step agreement with the expert on held-out expert states (random: 1/6).
    envs = babyai.make_envs(8)
    states, _, _ = babyai.collect(envs, seeds)
    greedy = HFPolicy(folder, device="cpu", sample=False)
    agree = np.mean([greedy.act(s.obs).action == s.label for s in states])
    assert agree > 1 / 6 + 0.3, agree

    # Success over whole episodes, the model's own (sampled) decoding against random moves.
    trained = evaluation.evaluate_policy(HFPolicy(folder, device="cpu"), seeds, progress=False)
    rand = evaluation.evaluate_policy(evaluation.RandomPolicy(seed=0), seeds, progress=False)
    assert trained.success_rate > rand.success_rate + 0.05, (trained.success_rate, rand.success_rate)


def test_evaluate_only_needs_the_training_log(tmp_path):
    train = _load_script("train_lms")
    with pytest.raises(SystemExit):  # no --log-json
        train.main(["--models", "deepthink", "--out", str(tmp_path), "--evaluate-only"])
    (tmp_path / "log.json").write_text(json.dumps({"logs": {}, "command": "x"}))
    with pytest.raises(SystemExit):  # training options do not apply
        train.main(["--models", "deepthink", "--out", str(tmp_path), "--evaluate-only", "--log-json",
                    str(tmp_path / "log.json"), "--set", "deepthink.lr=1e-4"])
    with pytest.raises(SystemExit):  # a log without this model
        train.main(["--models", "deepthink", "--out", str(tmp_path), "--evaluate-only", "--log-json",
                    str(tmp_path / "log.json")])
    from londi.agents.training.specs import BABYAI_SPECS

    spec = dataclasses.asdict(BABYAI_SPECS["deepthink"])
    (tmp_path / "log.json").write_text(json.dumps({"logs": {"deepthink": {"spec": spec}}, "command": "x"}))
    with pytest.raises(SystemExit):  # no trained model in --out
        train.main(["--models", "deepthink", "--out", str(tmp_path), "--evaluate-only", "--log-json",
                    str(tmp_path / "log.json")])


def test_spec_overrides_are_typed_and_checked(tmp_path):
    from londi.agents.training.specs import BABYAI_SPECS, apply_overrides

    specs = apply_overrides(BABYAI_SPECS, ["deepthink.dagger_rounds=5", "deepthink.lr=3e-4", "quick.sample=false"])
    assert specs["deepthink"].dagger_rounds == 5 and specs["deepthink"].lr == 3e-4 and specs["quick"].sample is False
    assert BABYAI_SPECS["deepthink"].dagger_rounds != 5  # the shipped specs are not modified
    for bad in ("deepthink.no_such_field=1", "deepthink.dagger_rounds=two", "nomodel.lr=1", "deepthink.lr",
                "quick.sample=maybe", "quick.name=x"):
        with pytest.raises(ValueError, match="--set"):
            apply_overrides(BABYAI_SPECS, [bad])
    with pytest.raises(SystemExit):  # the command line turns it into a usage error
        _load_script("train_lms").main(["--models", "quick", "--out", str(tmp_path), "--set", "quick.lr=fast"])


def test_every_entry_point_defaults_to_the_default_pair():
    """``londi train/eval``, ``TrainConfig``, a sweep without ``quick``/``deepthink``, the demo and
    ``train_lms.py`` all use the default pair on GoToLocal and the task-mix pair on the other
    BabyAI-Text levels; both are shipped and load by name."""
    from londi.agents import DEFAULT_DEEPTHINK, DEFAULT_QUICK, SHIPPED_MODELS
    from londi.agents.checkpoints import MIX_MODELS, default_pair
    from londi.cli import build_parser, load_pair
    from londi.evaluation.sweep import load_config
    from londi.learn.train import TrainConfig

    assert SHIPPED_MODELS == (DEFAULT_QUICK, DEFAULT_DEEPTHINK) == ("quick-dagger", "deepthink-dagger")
    assert MIX_MODELS == ("quick-mix", "deepthink-mix")
    mix, put_next = "londi/BabyAIText-MixedTrainLocal-v0", "londi/BabyAIText-PutNextLocal-v0"
    assert default_pair("londi/BabyAIText-GoToLocal-v0") == SHIPPED_MODELS
    assert default_pair(mix) == default_pair(put_next) == MIX_MODELS
    for env, pair in ((None, SHIPPED_MODELS), (mix, MIX_MODELS)):
        extra = ["--env", env] if env else []
        for command in (["train", *extra], ["eval", "--method", "always-quick", *extra]):
            args = build_parser().parse_args(command)
            assert (args.quick, args.deepthink) == (None, None)  # filled in from the env by load_pair
            quick, deepthink = load_pair(args)
            assert (args.quick, args.deepthink) == pair == (quick.name, deepthink.name)
    args = build_parser().parse_args(["eval", "--method", "always-quick", "--env", mix, "--quick", "quick-dagger"])
    load_pair(args)
    assert (args.quick, args.deepthink) == ("quick-dagger", "deepthink-mix")  # a named model is kept
    assert (TrainConfig().quick, TrainConfig().deepthink) == SHIPPED_MODELS
    assert (TrainConfig(env=mix).quick, TrainConfig(env=mix).deepthink) == MIX_MODELS
    sweep = load_config({"name": "t", "episodes": 1, "seeds": [0], "grid": [{"method": "always-quick"}]})
    assert {(c.quick, c.deepthink) for c in sweep.cells} == {SHIPPED_MODELS}
    sweep = load_config({"name": "t", "env": mix, "episodes": 1, "seeds": [0], "grid": [{"method": "always-quick"}]})
    assert {(c.quick, c.deepthink) for c in sweep.cells} == {MIX_MODELS}
    from londi.agents.training.specs import DEFAULT_MODELS

    assert list(SHIPPED_MODELS) == DEFAULT_MODELS
    assert _load_script("train_lms").build_parser().parse_args([]).models == list(SHIPPED_MODELS)
    for name in SHIPPED_MODELS + MIX_MODELS:
        assert verify_checksums(shipped_model_path(name))
