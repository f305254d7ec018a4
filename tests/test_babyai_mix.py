"""The BabyAI-Text task mix: the mission parser, the training targets on pick-up and put-next
missions, and the task-mix pair's training and per-level evaluation pipeline."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from londi.envs import make_env
from londi.envs.babyai_text import MIXED_TRAIN_LOCAL_LEVELS, matches_target, mission_target
from londi.envs.base import TextObservation

MIX = "londi/BabyAIText-MixedTrainLocal-v0"


def _obs(goal: str, text: str) -> TextObservation:
    return TextObservation(goal=goal, text=text, admissible_actions=("turn left", "go forward"))


@pytest.mark.parametrize("goal, text, target", [
    ("go to the red ball", "", ("red", "ball")),
    ("go to a grey door", "", ("grey", "door")),
    ("pick up the blue key on your left", "", ("blue", "key")),
    ("pick up a ball behind you", "", (None, "ball")),
    ("put the red ball next to the green box", "You see a wall 2 steps forward", ("red", "ball")),
    ("put the red ball next to the green box", "You see a green box 1 step left\nYou carry a red ball", ("green", "box")),
    # carrying another object (a mistake): the object to carry is still the target
    ("put the red ball next to the green box", "You carry a red key", ("red", "ball")),
    ("open the red door", "", None),
])
def test_mission_target_follows_the_mission_and_what_is_carried(goal, text, target):
    assert mission_target(goal, text) == target


def test_matches_target_reads_colour_type_and_door_state():
    assert matches_target("You see a locked red door 2 steps left", ("red", "door"))
    assert matches_target("You see a red ball 1 step forward", (None, "ball"))
    assert not matches_target("You see a red ball 1 step forward", ("blue", "ball"))
    assert not matches_target("You see a wall 3 steps left", (None, "ball"))
    assert not matches_target("You carry a red ball", ("red", "ball"))


def test_goal_offset_and_state_kind_track_the_current_target():
    from londi.agents.training.babyai import OFFSET_CLASSES, goal_offset
    from londi.agents.training.evaluation import state_difficulty

    goal = "put the red ball next to the green box"
    before = "You see a green box 2 steps right and 1 step forward\nYou see a red ball 3 steps forward"
    after = "You see a green box 2 steps right and 1 step forward\nYou carry a red ball"
    assert goal_offset(_obs(goal, before)) == (3, 3)  # the ball, straight ahead
    assert goal_offset(_obs(goal, after)) == (5, 1)  # then the box, 2 right and 1 forward
    assert state_difficulty(goal, before) == "ahead" and state_difficulty(goal, after) == "side"
    assert goal_offset(_obs("pick up the blue key", before)) == (OFFSET_CLASSES - 1, OFFSET_CLASSES - 1)
    assert state_difficulty("pick up the blue key", before) == "unseen"


def test_match_head_targets_the_object_to_carry_then_the_one_to_put_it_by():
    import torch

    from londi.agents.training.babyai import ActionLearner, prompt_text, target_token
    from londi.agents.training.specs import BABYAI_SMALL
    from londi.agents.training.tokenizer import babyai_tokenizer

    spec = BABYAI_SMALL["deepthink-mix"]
    goal = "put the red ball next to the green box"
    texts = ["You see a green box 1 step left\nYou see a red ball 2 steps forward",
             "You see a green box 1 step left\nYou carry a red ball"]
    observations = [_obs(goal, t) for t in texts]
    tok = babyai_tokenizer([prompt_text(o, spec) for o in observations])
    learner = ActionLearner(spec, tok, seed=0)
    vocab = tok.get_vocab()
    assert [target_token(o, vocab) for o in observations] == [vocab["red ball"], vocab["green box"]]
    inp, lengths = learner._batch(learner.encode(observations))
    goal_tokens = torch.tensor([target_token(o, vocab) for o in observations])
    match, mask = learner._match_targets(inp, lengths, goal_tokens)
    for row, wanted in ((0, "red ball"), (1, "green box")):
        positive = {tok.convert_ids_to_tokens(int(inp[row, i])) for i in range(inp.shape[1])
                    if mask[row, i] and match[row, i] and int(inp[row, i]) in (vocab["red ball"], vocab["green box"])}
        assert positive == {wanted}
    none = learner._match_targets(inp, lengths, torch.tensor([-1, -1]))[1]
    assert not none.any()  # no target: the sample is left out of the match loss


def test_a_mission_without_a_colour_matches_every_object_of_its_type_and_is_renamed_with_them():
    """PickupLoc's "pick up a ball" (about 3 in 10 of its missions): every ball is the target for
    the match head, and the colour/type renaming renames the lone "ball" of the mission exactly as
    it renames "red ball" in the observation (it once left it alone, which taught the model the
    wrong object on those missions)."""
    import torch

    from londi.agents.training.babyai import ActionLearner, augmentation_tables, prompt_text, target_token
    from londi.agents.training.specs import BABYAI_SMALL
    from londi.agents.training.tokenizer import babyai_tokenizer

    spec = BABYAI_SMALL["deepthink-mix"]
    obs = _obs("pick up a ball", "You see a red ball 1 step left\nYou see a green box 2 steps forward\n"
                                 "You see a blue ball 3 steps right")
    other = _obs("pick up the green key", "You see a green key 1 step left\nYou see a grey ball 2 steps right")
    tok = babyai_tokenizer([prompt_text(o, spec) for o in (obs, other)])
    vocab = tok.get_vocab()
    assert target_token(obs, vocab) == vocab["ball"]
    learner = ActionLearner(spec, tok, seed=0)
    inp, lengths = learner._batch(learner.encode([obs]))
    match, mask = learner._match_targets(inp, lengths, torch.tensor([vocab["ball"]]))
    objects = {vocab[t] for t in ("red ball", "green box", "blue ball")}
    positive = {tok.convert_ids_to_tokens(int(inp[0, i])) for i in range(inp.shape[1])
                if mask[0, i] and match[0, i] and int(inp[0, i]) in objects}
    assert positive == {"red ball", "blue ball"}
    inv = {i: t for t, i in vocab.items()}
    for lut in augmentation_tables(tok, "colours", np.random.default_rng(0), n=32)[1:]:
        ball = inv[int(lut[vocab["ball"]])]
        assert inv[int(lut[vocab["red ball"]])].split(" ")[1] == ball
        assert inv[int(lut[vocab["blue ball"]])].split(" ")[1] == ball


def test_mixed_env_draws_every_level_and_the_oracle_solves_them():
    from londi.agents.training.babyai import collect, make_envs

    env = make_env(MIX)
    levels = set()
    for seed in range(30):
        _, info = env.reset(seed=seed)
        levels.add(info["level"])
    env.close()
    assert levels == set(MIXED_TRAIN_LOCAL_LEVELS)
    samples, successes, episodes = collect(make_envs(4, MIX), range(1_000_000, 1_000_012), desc="mix")
    assert successes == episodes == 12
    assert {"pick up", "drop"} <= {s.label for s in samples}


def test_spec_levels_weight_the_mix_the_training_episodes_draw_from():
    """``--set deepthink-mix.levels=PickupLoc,PickupLoc,PutNextLocal``: the training envs draw
    only those levels, a level named twice about twice as often; a bad name or a non-mix env fails."""
    from collections import Counter
    from dataclasses import replace

    from londi.agents.training.babyai import make_envs
    from londi.agents.training.specs import BABYAI_SPECS, apply_overrides
    from londi.core.errors import UnknownChoiceError

    spec = apply_overrides(BABYAI_SPECS, ["deepthink-mix.levels=PickupLoc, PickupLoc,PutNextLocal"])["deepthink-mix"]
    assert spec.level_names() == ("PickupLoc", "PickupLoc", "PutNextLocal")
    assert BABYAI_SPECS["deepthink-mix"].level_names() is None
    (env,) = make_envs(1, spec.env, spec.level_names())
    drawn = Counter(env.reset(seed=seed)[1]["level"] for seed in range(300))
    env.close()
    assert set(drawn) == {"PickupLoc", "PutNextLocal"}
    assert 1.5 < drawn["PickupLoc"] / drawn["PutNextLocal"] < 2.7
    with pytest.raises(ValueError, match="levels is only for env"):
        replace(BABYAI_SPECS["deepthink-dagger"], levels="PickupLoc")
    with pytest.raises(UnknownChoiceError, match="did you mean 'PickupLoc'"):
        make_envs(1, MIX, ("PickupLocc",))


def test_small_mix_pair_trains_on_the_mix_and_is_measured_per_level(tmp_path, monkeypatch):
    """``train_lms.py --small --models quick-mix deepthink-mix``: trained on the mixed env, each
    level measured alone, the per-level rows in the card."""
    import importlib.util

    monkeypatch.setenv("TQDM_DISABLE", "1")
    path = Path(__file__).resolve().parents[1] / "scripts" / "train_lms.py"
    spec = importlib.util.spec_from_file_location("train_lms_mix", path)
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    log = tmp_path / "log.json"
    assert train.main(["--small", "--models", "quick-mix", "deepthink-mix", "--out", str(tmp_path),
                       "--eval-episodes", "2", "--log-json", str(log)]) == 0
    payload = json.loads(log.read_text())
    assert sorted((r["model"], r["level"]) for r in payload["results"]) == sorted(
        (m, lvl) for m in ("quick-mix", "deepthink-mix") for lvl in MIXED_TRAIN_LOCAL_LEVELS)
    for name in ("quick-mix", "deepthink-mix"):
        settings = json.loads((tmp_path / name / "londi_policy.json").read_text())
        assert settings["trained_on"] == MIX and settings["spec"]["env"] == MIX
        card = (tmp_path / name / "MODEL_CARD.md").read_text()
        assert f"Env `{MIX}`" in card and "per level" in card
        for level in MIXED_TRAIN_LOCAL_LEVELS:
            assert f"| {name} ({level}) |" in card
    assert np.isfinite(payload["logs"]["deepthink-mix"]["phases"][-1]["loss"])


def test_mix_deepthink_starts_from_the_shipped_go_to_model():
    from londi.agents.training.specs import BABYAI_SPECS, DEEPTHINK_DAGGER

    spec = BABYAI_SPECS["deepthink-mix"]
    assert spec.env == MIX and spec.init_from == "deepthink-dagger"
    assert (spec.hidden_size, spec.num_layers) == (DEEPTHINK_DAGGER.hidden_size, DEEPTHINK_DAGGER.num_layers)
    assert BABYAI_SPECS["quick-mix"].init_from == ""


def test_evaluation_on_the_mix_reports_each_level():
    """``results.json`` of a mixed env: each episode's level, and the figures per level."""
    from londi.agents.lm import load_policy
    from londi.evaluation.loop import evaluate_methods, format_table
    from londi.evaluation.metrics import summarize
    from londi.evaluation.registry import build_method
    from londi.switch.rollout import EpisodeStats

    quick = load_policy("quick-dagger")
    methods = {"always-quick": build_method("always-quick", quick=quick, deepthink=quick, env_id=MIX, progress=False)}
    results = evaluate_methods(methods, env_id=MIX, episodes=12, seed=0, progress=False)
    entry = results["methods"]["always-quick"]
    episodes = [EpisodeStats.from_dict(e) for e in entry["per_episode"]]
    assert {e.level for e in episodes} <= set(MIXED_TRAIN_LOCAL_LEVELS) and len({e.level for e in episodes}) > 1
    per_level = entry["per_level"]
    assert sum(v["episodes"] for v in per_level.values()) == 12
    for level, figures in per_level.items():
        mine = [e for e in episodes if e.level == level]
        assert figures["success"] == pytest.approx(np.mean([e.success for e in mine]))
        assert figures["deepthink_call_frac"] == 0.0
    assert "per level" in format_table(results)
    assert "per_level" not in summarize([e for e in episodes if e.level == episodes[0].level], seed=0)
