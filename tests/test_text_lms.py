"""The TextWorld/ScienceWorld LM pairs (``scripts/train_text_lms.py`` over
``londi.agents.training.textgames``) and the candidate filter."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from londi.agents.candidates import CandidateFilter, CandidatePolicy, action_verb
from londi.agents.checkpoints import TEXT_GAME_MODELS, shipped_model_path
from londi.agents.lm import HFPolicy, load_policy
from londi.envs.base import TextObservation

TW_OBS = TextObservation(
    goal="First, open the antique trunk. Then, take the old key from the antique trunk. Then, unlock the wooden door.",
    text="You open the antique trunk, revealing an old key.",
    admissible_actions=("close antique trunk", "examine antique trunk", "examine old key", "inventory", "look",
                        "take old key from antique trunk"),
    history=(("-= Bedroom =- You see an antique trunk.", "open antique trunk"),),
    inventory="You are carrying nothing.",
    step=1,
)


def _long_obs(n_objects: int = 40) -> TextObservation:
    objects = [f"thing {i}" for i in range(n_objects)]
    actions = ["look around", "go to kitchen", "go to hallway"] + [f"focus on {o}" for o in objects]
    actions += [f"{verb} {a} {prep} {b}" for a in objects for b in objects if a != b
                for verb, prep in (("move", "to"), ("dunk", "into"), ("pour", "in"))][:3000]
    return TextObservation(
        goal="Your task is to find a(n) non-living thing. First, focus on the thing. Then, move it to the yellow box.",
        text="This room is called the bathroom. In it, you see: a yellow box, a thing 7",
        admissible_actions=tuple(actions), step=3,
    )


# ------------------------------------------------------------------------------ candidate filter
def test_candidate_filter_keeps_known_verbs_and_caps_by_overlap():
    f = CandidateFilter.fit(["go to kitchen", "focus on painting", "move painting to yellow box"], max_candidates=30)
    assert f.verbs == ("focus", "go", "move")
    obs = _long_obs()
    keep = f.select(obs)
    assert len(keep) == 30 and keep == sorted(keep)
    kept = [obs.admissible_actions[i] for i in keep]
    assert all(action_verb(a) in f.verbs for a in kept)
    # "thing 7" and "yellow box" are in the context: the actions naming them rank first
    assert "focus on thing 7" in kept
    assert f.recall([obs], ["focus on thing 7"]) == 1.0
    assert CandidateFilter.from_dict(f.to_dict()) == f
    with pytest.raises(ValueError, match="max_candidates"):
        CandidateFilter(max_candidates=0)
    with pytest.raises(ValueError, match="valid"):
        CandidateFilter.from_dict({"verbz": []})


def test_candidate_filter_without_known_verbs_falls_back_to_all():
    f = CandidateFilter(verbs=("xyzzy",), max_candidates=4)
    # no action has a known verb: all are ranked by overlap with the context, the top 4 kept in order
    assert f.select(TW_OBS) == [0, 1, 2, 5]


# ------------------------------------------------------------------------------ shipped pairs
@pytest.mark.parametrize("name", [n for n in TEXT_GAME_MODELS if n.startswith("textworld")])
def test_textworld_pair_loads_by_name_and_scores_only_admissible(name):
    policy = load_policy(name, device="cpu")
    assert type(policy) is HFPolicy and policy.name == name and policy.verified
    d = policy.act(TW_OBS)
    assert d.action in TW_OBS.admissible_actions
    assert d.probs.shape == (len(TW_OBS.admissible_actions),) and abs(d.probs.sum() - 1) < 1e-6
    assert d.record.device_seconds > 0 and d.record.model == name


def test_babyai_pair_is_not_wrapped():
    assert type(load_policy("quick", device="cpu")) is HFPolicy


def test_candidates_entry_in_policy_json_loads_a_candidate_policy(tmp_path):
    """A checkpoint whose londi_policy.json has "candidates" loads as a CandidatePolicy that scores
    only the candidates and still returns a distribution over every admissible action."""
    import json
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(shipped_model_path("textworld-quick"), folder)
    (folder / "SHA256SUMS").unlink()  # the settings change below would fail verification
    settings = json.loads((folder / "londi_policy.json").read_text())
    settings["candidates"] = CandidateFilter(verbs=("focus", "go", "move"), max_candidates=20).to_dict()
    (folder / "londi_policy.json").write_text(json.dumps(settings))
    policy = load_policy(folder, device="cpu")
    assert isinstance(policy, CandidatePolicy) and policy.candidate_filter.max_candidates == 20
    obs = _long_obs()
    d = policy.act(obs)
    assert d.action in obs.admissible_actions and action_verb(d.action) in ("focus", "go", "move")
    assert d.probs.shape == (len(obs.admissible_actions),) and abs(d.probs.sum() - 1) < 1e-6
    assert 0 < np.count_nonzero(d.probs) <= 20
    assert d.record.output_tokens < 20 * 10  # only the candidates' tokens were scored
    with pytest.raises(ValueError, match="candidates"):
        CandidatePolicy(shipped_model_path("textworld-quick"), device="cpu")


@pytest.mark.parametrize("name", [n for n in TEXT_GAME_MODELS if n.startswith("scienceworld")])
def test_scienceworld_pair_scores_a_short_candidate_list(name):
    policy = load_policy(name, device="cpu")
    assert isinstance(policy, CandidatePolicy)
    obs = _long_obs()
    d = policy.act(obs)
    assert d.action in obs.admissible_actions
    assert d.probs.shape == (len(obs.admissible_actions),) and abs(d.probs.sum() - 1) < 1e-6
    assert 0 < np.count_nonzero(d.probs) <= policy.candidate_filter.max_candidates
    assert d.record.output_tokens < policy.candidate_filter.max_candidates * 10  # only the candidates scored


# ------------------------------------------------------------------------------ training pipeline
@pytest.mark.slow
def test_small_textworld_training_beats_random(tmp_path):
    """The small config on two tw-make games: QUICK, trained by cloning the oracle, scores more
    than a random policy on those games (a pipeline check, not a held-out result)."""
    import torch

    from londi.agents.training.evaluation import RandomPolicy, evaluate_on_envs
    from londi.agents.training.specs import TEXT_SMALL, TRAIN_SEED_START
    from londi.agents.training.textgames import collect, textworld_setup, train_model

    torch.set_num_threads(1)
    setup = textworld_setup(2, tmp_path / "games")
    spec = replace(TEXT_SMALL["textworld"]["quick"], epochs_demo=200.0)
    demos = collect(setup, 1, TRAIN_SEED_START, desc="oracle demos")
    assert demos.successes == demos.episodes == 2 and len(demos.samples) >= 10  # the oracle wins both games
    train_model(spec, setup, seed=0, out_dir=tmp_path, prefix="textworld", demos=demos)
    policy = load_policy(tmp_path / "textworld-quick", device="cpu", sample=False)  # greedy: what it learned
    # evaluate on the training games themselves
    mine = evaluate_on_envs(policy, setup.train_env_kwargs, 4)
    rand = evaluate_on_envs(RandomPolicy(seed=0), setup.train_env_kwargs, 4)
    env = "londi/TextWorld-v0"
    assert mine["per_env"][env]["mean_return"] > rand["per_env"][env]["mean_return"] + 1.0, (mine, rand)
    assert mine["scored_per_call"] == mine["admissible_per_call"]  # no candidate filter for TextWorld


@pytest.mark.slow
def test_shipped_scienceworld_quick_on_a_real_step():
    """One real ScienceWorld step: the shipped QUICK picks an admissible action quickly."""
    from londi.envs import make_env

    policy = load_policy("scienceworld-quick", device="cpu")
    env = make_env("londi/ScienceWorld-find-non-living-thing-v0", disable_env_checker=True, split="dev", max_steps=3)
    try:
        _, info = env.reset(seed=0)
        obs = info["text_obs"]
        d = policy.act(obs)
        assert d.action in obs.admissible_actions
        assert np.count_nonzero(d.probs) <= policy.candidate_filter.max_candidates < len(obs.admissible_actions)
        _, _, _, _, info = env.step(d.action)
        assert info["text_obs"].step == 1
    finally:
        env.close()
