"""Tests of the LM ensemble policy (londi.agents.lm_ensemble): several checkpoints, one policy."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import babyai_observations, save_random_gpt2

from londi.agents.lm import HFPolicy, load_policy
from londi.agents.lm_ensemble import ENSEMBLE_FILE, LMEnsemblePolicy, read_ensemble, write_ensemble
from londi.core.errors import LondiError
from londi.core.meter import estimate_flops
from londi.envs.base import TextObservation


@pytest.fixture(scope="module")
def observations() -> list[TextObservation]:
    return babyai_observations()


@pytest.fixture(scope="module")
def members(tmp_path_factory, observations) -> list[Path]:
    """Two tiny random GPT-2 checkpoints that differ only in their initialisation seed."""
    return [save_random_gpt2(tmp_path_factory.mktemp(f"member{i}"), observations, seed=i) for i in range(2)]


def test_one_member_twice_is_that_member(members, observations):
    single = HFPolicy(members[0], device="cpu", history_length=2, temperature=0.7)
    twice = LMEnsemblePolicy([HFPolicy(members[0], device="cpu", history_length=2)] * 2, temperature=0.7)
    for obs in observations:
        a, b = single.act(obs), twice.act(obs)
        np.testing.assert_allclose(b.probs, a.probs, rtol=1e-6)
        assert b.action == a.action


def test_mean_log_likelihood_distribution_and_metering(members, observations):
    policies = [HFPolicy(m, device="cpu", history_length=2) for m in members]
    ens = LMEnsemblePolicy(policies, name="deep-ens", temperature=0.5, sample=False)
    assert ens.n_parameters == sum(p.n_parameters for p in policies)
    for obs in observations:
        parts = [p.score(obs) for p in policies]
        mean = np.mean([s for s, _, _ in parts], axis=0)
        d = ens.act(obs)
        z = mean / 0.5
        want = np.exp(z - z.max())
        np.testing.assert_allclose(d.probs, want / want.sum(), rtol=1e-5)
        assert len(d.probs) == len(obs.admissible_actions)
        assert d.probs.sum() == pytest.approx(1.0)
        assert d.action == obs.admissible_actions[int(np.argmax(mean))]
        r = d.record
        assert r.model == "deep-ens" and r.device == "cpu"
        assert r.device_seconds > 0 and r.wall_seconds > 0
        assert r.input_tokens == sum(c["input_tokens"] for _, _, c in parts)
        assert r.output_tokens == sum(c["output_tokens"] for _, _, c in parts)
        assert r.flops == pytest.approx(sum(estimate_flops(p.n_parameters, c["forward_tokens"])
                                            for p, (_, _, c) in zip(policies, parts)))
        assert d.hidden.shape == (ens.hidden_size,)


def test_folder_loads_through_load_policy_and_samples_reproducibly(tmp_path, members, observations):
    folder = tmp_path / "ens"
    manifest = write_ensemble(folder, members, temperature=2.0, sample=True, note="test")
    stored = json.loads(manifest.read_text())
    assert all(not Path(m).is_absolute() for m in stored["members"])  # relative: the folder can move
    assert read_ensemble(folder)["members"] == [m.resolve() for m in members]
    ens = load_policy(folder, device="cpu", seed=3)
    assert isinstance(ens, LMEnsemblePolicy)
    assert ens.name == "ens" and ens.temperature == 2.0 and ens.sample
    assert [m.name for m in ens.members] == [m.name for m in members]

    def actions(seed: int) -> list[str]:
        ens.set_seed(seed)
        return [ens.act(obs).action for obs in observations * 5]

    assert actions(7) == actions(7)
    chosen = actions(8)
    assert all(a in obs.admissible_actions for a, obs in zip(chosen, observations * 5))
    # Keyword arguments reach the ensemble (name, temperature) and its members (history_length).
    greedy = load_policy(folder, device="cpu", name="other", sample=False, history_length=1)
    assert greedy.name == "other" and not greedy.sample
    assert all(m.history_length == 1 for m in greedy.members)


def test_bad_ensembles_are_clear_errors(tmp_path, members):
    with pytest.raises(ValueError, match="at least one member"):
        LMEnsemblePolicy([])
    with pytest.raises(ValueError, match="temperature"):
        LMEnsemblePolicy([HFPolicy(members[0], device="cpu")], temperature=0.0)
    folder = tmp_path / "bad"
    folder.mkdir()
    cases = {
        "{not json": "not a readable ensemble manifest",
        "[]": "must be a JSON object",
        '{"members": []}': "non-empty list",
        '{"members": ["missing"]}': "is not a folder",
        json.dumps({"members": [str(members[0])], "temperature": -1}): "temperature must be a positive",
        json.dumps({"members": [str(members[0])], "sample": "yes"}): "sample must be true or false",
        json.dumps({"members": [str(members[0])], "weights": [1]}): "unknown key",
    }
    for text, message in cases.items():
        (folder / ENSEMBLE_FILE).write_text(text)
        with pytest.raises(LondiError, match=message):
            load_policy(folder, device="cpu")


def test_make_ensemble_script_writes_a_shippable_folder(tmp_path, members):
    import importlib.util

    from londi.agents.checkpoints import CHECKSUM_FILE, verify_checksums

    path = Path(__file__).resolve().parents[1] / "scripts" / "make_ensemble.py"
    spec = importlib.util.spec_from_file_location("make_ensemble", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "models"
    argv = ["--name", "deep", "--out", str(out), "--members", *map(str, members),
            "--temperature", "0.5", "--sample", "--eval-episodes", "1"]
    assert script.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["deep", "deep-1", "deep-2"]
    for folder in out.iterdir():
        assert all(p.is_file() for p in folder.iterdir()), "shipped folders must be flat"
        assert verify_checksums(folder), f"{folder} has no {CHECKSUM_FILE}"
    assert json.loads((out / "deep" / ENSEMBLE_FILE).read_text())["members"] == ["../deep-1", "../deep-2"]
    card = (out / "deep" / "MODEL_CARD.md").read_text()
    assert "an oracle" in card and "1 held-out episodes" in card and "| deep |" in card
    policy = load_policy(out / "deep", device="cpu")
    assert isinstance(policy, LMEnsemblePolicy) and policy.sample and policy.temperature == 0.5
    assert [m.name for m in policy.members] == ["deep-1", "deep-2"]
    manifest = out / "deep" / ENSEMBLE_FILE
    manifest.write_text(manifest.read_text().replace("deep-2", "deep-1"))
    with pytest.raises(LondiError, match="does not match its checksum"):
        load_policy(out / "deep", device="cpu")
