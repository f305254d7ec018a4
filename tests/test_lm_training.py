"""The LM training library (``londi.agents.training``): tokenizers, roll-ins, the trainer, checkpoints.

Small and fast: stub envs and policies, models of a few thousand parameters. The full pipelines
are in tests/test_lm.py (BabyAI, ``test_small_training_run_beats_random``) and
tests/test_text_lms.py (TextWorld).
"""
from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from londi.agents.base import Decision, TextPolicy
from londi.agents.checkpoints import CHECKSUM_FILE, verify_checksums
from londi.agents.lm import HFPolicy, load_policy
from londi.agents.training import Collected, Sample, policy_actor, rollin_episode, rollin_lockstep, run_dagger
from londi.agents.training.checkpoint import MODEL_CARD_FILE, finish_checkpoint
from londi.agents.training.specs import BABYAI_ONLY_FIELDS, BABYAI_SMALL, TEXT_SMALL, ModelSpec
from londi.agents.training.tokenizer import (
    ACTIONS,
    SPECIAL_TOKENS,
    babyai_tokenizer,
    build_word_tokenizer,
    text_game_tokenizer,
)
from londi.agents.training.trainer import length_bucketed_batches
from londi.core.meter import CallRecord
from londi.envs.base import TextObservation

PACKAGE = Path(__file__).resolve().parents[1] / "agents" / "training"


# ------------------------------------------------------------------------------ stubs
class StubEnv:
    """``length`` steps per episode; the oracle says ``"b"`` (or ``oracle`` per step); success when
    the last action was the oracle's. Records what was played."""

    def __init__(self, length: int = 5, oracle=lambda step: "b", actions=("a", "b")) -> None:
        self.length, self.oracle, self.actions = length, oracle, tuple(actions)
        self.played: list[str] = []
        self.seeds: list[int] = []

    def _obs(self):
        obs = TextObservation(goal="reach the end", text=f"room {self.t}", admissible_actions=self.actions,
                              history=tuple(self.history), step=self.t, oracle_action=self.oracle(self.t))
        return obs

    def reset(self, seed=None, options=None):
        self.seeds.append(seed)
        self.t, self.history = 0, []
        return None, {"text_obs": self._obs()}

    def step(self, action):
        self.played.append(action)
        ok = action == self.oracle(self.t)
        self.history.append((f"room {self.t}", action))
        self.t += 1
        done = self.t >= self.length
        return None, float(ok), done, False, {"text_obs": self._obs(), "success": done and ok}

    def close(self):
        pass


class StubPolicy(TextPolicy):
    """Always plays ``"a"``; counts resets and seeds."""

    name = "stub"

    def __init__(self) -> None:
        self.resets, self.seeds, self.calls = 0, [], 0

    def reset(self) -> None:
        self.resets += 1

    def set_seed(self, seed) -> None:
        self.seeds.append(seed)

    def act(self, obs):
        self.calls += 1
        return Decision(action="a", record=CallRecord(model=self.name))


# ------------------------------------------------------------------------------ tokenizer
def test_babyai_tokenizer_round_trips_prompts_and_keeps_actions_whole():
    tok = babyai_tokenizer([])
    assert tok.convert_ids_to_tokens([0, 1, 2]) == list(SPECIAL_TOKENS)
    for action in ACTIONS:
        assert len(tok(" " + action, add_special_tokens=False)["input_ids"]) == 1
    text = "Goal of the agent : go to the red ball Observation : You see a red ball 1 step left Action : turn left"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text  # word level: the pieces joined by spaces give the text back
    assert tok("xyzzy", add_special_tokens=False)["input_ids"] == [tok.unk_token_id]


def test_text_game_tokenizer_lowercases_and_maps_unknown_words():
    tok = text_game_tokenizer(["Open the Antique trunk", "take old key from antique trunk"])
    vocab = tok.get_vocab()
    words = [w for w, _ in sorted(vocab.items(), key=lambda kv: kv[1])][len(SPECIAL_TOKENS):]
    assert words == sorted(words) and "antique" in vocab and "Antique" not in vocab
    ids = tok("OPEN the antique trunk", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "open the antique trunk"
    assert tok("open the chest", add_special_tokens=False)["input_ids"][-1] == tok.unk_token_id
    # the same texts give the same vocabulary (ids are a sorted word list, not insertion order)
    assert text_game_tokenizer(["take old key from antique trunk", "Open the Antique trunk"]).get_vocab() == vocab


def test_word_tokenizer_checks_single_tokens():
    with pytest.raises(ValueError, match="single token"):
        build_word_tokenizer(["go north"], pattern=r"[a-z]+", single_tokens=("go north",))


# ------------------------------------------------------------------------------ roll-ins
def test_demonstrations_label_every_state_with_the_oracle():
    env = StubEnv(length=4)
    samples, success, ret = rollin_episode(env, 3)
    assert [s.label for s in samples] == ["b"] * 4 and env.played == ["b"] * 4
    assert success and ret == 4.0 and env.seeds == [3]


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_dagger_rollin_mixes_learner_and_oracle_per_beta(beta):
    env, policy = StubEnv(length=50), StubPolicy()
    rng = np.random.default_rng(0)
    samples = []
    for seed in range(20):
        samples += rollin_episode(env, seed, policy=policy, beta=beta, rng=rng)[0]
    assert len(samples) == 1000 and {s.label for s in samples} == {"b"}  # every state, the oracle's label
    expert_share = env.played.count("b") / len(env.played)
    assert abs(expert_share - beta) < 0.05, expert_share
    assert policy.calls == env.played.count("a")  # the learner is asked only when it acts
    assert policy.resets == 20 and policy.seeds == list(range(20))  # reset and seeded per episode


def test_non_admissible_oracle_moves_are_played_not_learned_and_dropped_from_history():
    env = StubEnv(length=3, oracle=lambda step: "open door" if step == 1 else "b")
    samples, _, _ = rollin_episode(env, 0)
    assert env.played == ["b", "open door", "b"]
    assert [s.obs.step for s in samples] == [0, 2]  # the state of the non-admissible move is not learned
    assert [a for _, a in samples[1].obs.history] == ["b"]  # and the move is not in the history
    assert samples[1].obs.text == "room 1"  # the model still sees the text before the dropped move


def test_lockstep_rollin_over_a_text_policy():
    envs, policy = [StubEnv(length=10) for _ in range(3)], StubPolicy()
    rng = np.random.default_rng(1)
    got = rollin_lockstep(envs, range(12), actor=policy_actor(policy), beta=0.5, rng=rng, progress=False)
    assert isinstance(got, Collected) and got.episodes == 12 and len(got.samples) == 120
    assert {s.label for s in got.samples} == {"b"}
    played = [a for e in envs for a in e.played]
    assert 0.35 < played.count("b") / len(played) < 0.65
    assert sorted(s for e in envs for s in e.seeds) == list(range(12))
    expert = rollin_lockstep([StubEnv(length=2)], range(3), progress=False)  # no actor: the oracle alone
    assert expert.successes == expert.episodes == 3


def test_run_dagger_halves_beta_and_aggregates():
    class Stub:
        spec = replace(BABYAI_SMALL["quick"], dagger_rounds=3, dagger_beta=0.4, epochs_round=1.0)

        def __init__(self):
            self.data, self.trained = [], []

        def add(self, samples):
            self.data += samples

        def __len__(self):
            return len(self.data)

        def train(self, epochs, rng, desc=""):
            self.trained.append((epochs, len(self.data)))
            return 0.5

    learner, betas, kept = Stub(), [], []
    obs = TextObservation(goal="g", text="t", admissible_actions=("a",))

    def rollin(r, beta):
        betas.append(beta)
        return Collected([Sample(obs, "a")] * (r + 1), r, 2)

    log = {"phases": []}
    run_dagger(learner, np.random.default_rng(0), rollin, log=log, t0=0.0, after_round=kept.append)
    assert betas == [0.4, 0.2, 0.1] and kept == [0, 1, 2]
    assert learner.trained == [(1.0, 1), (1.0, 3), (1.0, 6)]  # training continues on the aggregate
    assert [p["phase"] for p in log["phases"]] == ["dagger1", "dagger2", "dagger3"]
    assert [p["states"] for p in log["phases"]] == [1, 2, 3] and log["phases"][2]["rollin_success"] == 1.0


def test_length_bucketed_batches_cover_every_example_per_pass():
    lengths = [5, 1, 4, 2, 3, 9, 7, 8, 6, 0]
    batches = length_bucketed_batches(lengths, 3, steps=4, rng=np.random.default_rng(0))
    assert len(batches) == 4 and sorted(i for b in batches for i in b) == list(range(10))
    for b in batches:
        assert [lengths[i] for i in b] == sorted(lengths[i] for i in b)


# ------------------------------------------------------------------------------ trainer + checkpoint
TINY = dict(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, history_length=0, demo_episodes=1,
            dagger_rounds=0, dagger_episodes=0, dagger_beta=0.0, epochs_demo=1.0, epochs_round=0.0, batch_size=4,
            augment="none", aux_weight=0.0, match_weight=0.0)


def _babyai_samples():
    goal = "go to the red ball"
    texts = ["You see a red ball 2 steps forward", "You see a red ball 1 step left", "You see a wall 1 step forward"]
    labels = ["go forward", "turn left", "turn right"]
    return [Sample(TextObservation(goal=goal, text=t, admissible_actions=ACTIONS, oracle_action=a), a)
            for t, a in zip(texts, labels)] * 4


def test_action_learner_trains_saves_and_loads_with_card_and_checksums(tmp_path):
    from londi.agents.training.babyai import ActionLearner, prompt_text

    spec = ModelSpec(name="tiny", **TINY)
    samples = _babyai_samples()
    learner = ActionLearner(spec, babyai_tokenizer([prompt_text(s.obs, spec) for s in samples]), seed=0)
    learner.add(samples)
    first = learner.train(1.0, np.random.default_rng(0))
    last = learner.train(30.0, np.random.default_rng(1))
    assert len(learner) == 12 and np.isfinite(first) and last < first
    folder = learner.save(tmp_path / "tiny", trained_on="stub-env")
    finish_checkpoint(folder, "# tiny\n")
    assert (folder / MODEL_CARD_FILE).read_text() == "# tiny\n"
    assert MODEL_CARD_FILE in (folder / CHECKSUM_FILE).read_text() and verify_checksums(folder)
    settings = json.loads((folder / "londi_policy.json").read_text())
    assert settings["trained_on"] == "stub-env" and settings["spec"]["name"] == "tiny"
    assert settings["spec"]["aux_weight"] == 0.0  # BabyAI checkpoints keep every field
    policy = load_policy(folder, device="cpu", sample=False)
    assert type(policy) is HFPolicy and policy.verified
    assert policy.act(samples[0].obs).action in ACTIONS
    assert learner.act_batch([s.obs for s in samples[:3]]) == [policy.act(s.obs).action for s in samples[:3]]


def test_command_learner_checkpoint_carries_candidates_and_rolls_in_as_a_policy(tmp_path):
    from londi.agents.candidates import CandidateFilter, CandidatePolicy
    from londi.agents.training.textgames import CommandLearner

    spec = replace(TEXT_SMALL["textworld"]["quick"], **{k: v for k, v in TINY.items() if k != "augment"})
    obs = TextObservation(goal="open the trunk", text="You see a trunk.", admissible_actions=("open trunk", "look"),
                          oracle_action="open trunk")
    texts = [obs.goal, obs.text, *obs.admissible_actions, "Goal of the agent: Observation: Action:"]
    learner = CommandLearner(spec, text_game_tokenizer(texts), seed=0)
    learner.add([Sample(obs, "open trunk")] * 8)
    assert learner.example_length(0) > len(learner.tokenizer("open trunk", add_special_tokens=False)["input_ids"])
    assert np.isfinite(learner.train(2.0, np.random.default_rng(0)))
    candidates = CandidateFilter.fit(["open trunk"], max_candidates=2).to_dict()
    folder = learner.save(tmp_path / "cmd", trained_on="stub", candidates=candidates)
    finish_checkpoint(folder)
    assert verify_checksums(folder) and not (folder / MODEL_CARD_FILE).exists()
    settings = json.loads((folder / "londi_policy.json").read_text())
    assert not set(BABYAI_ONLY_FIELDS) & set(settings["spec"]) and settings["candidates"] == candidates
    assert isinstance(load_policy(folder, device="cpu"), CandidatePolicy)
    policy = learner.as_policy(seed=0, candidates=candidates)  # the roll-in policy: what load_policy returns
    assert isinstance(policy, CandidatePolicy) and policy.act(obs).action in obs.admissible_actions


# ------------------------------------------------------------------------------ layering
ALLOWED = ("londi.core.errors", "londi.core.io", "londi.core.meter", "londi.core.seeds", "londi.envs", "londi.agents")


def test_training_package_imports_only_leaves_envs_and_agents():
    """``londi.agents.training`` sits in the agents layer: no switch, evaluation, CLI or training of the switch."""
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name == "londi" or name.startswith("londi."):
                    assert any(name == a or name.startswith(a + ".") for a in ALLOWED), (path.name, name)


def test_scripts_do_not_import_each_other():
    scripts = Path(__file__).resolve().parents[1] / "scripts"
    for name in ("train_lms.py", "train_text_lms.py", "bench_lms.py", "make_ensemble.py"):
        text = (scripts / name).read_text()
        assert "sys.path.insert" not in text, name
        tree = ast.parse(text)
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not imported & {"train_lms", "train_text_lms", "bench_lms", "make_ensemble"}, name
