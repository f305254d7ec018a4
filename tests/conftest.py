"""Shared test fixtures: controlled text policies built on the BabyAI bot (oracle-derived, for
controlled experiments only; they are not language models)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

# The suite's models are tiny: one thread is fastest and keeps timings stable on a busy machine.
torch.set_num_threads(1)

from londi.agents.base import Decision, TextPolicy  # noqa: E402 (after the thread setting)
from londi.core.meter import CallRecord  # noqa: E402
from londi.envs.base import TextObservation  # noqa: E402


class ControlledPolicy(TextPolicy):
    """Oracle-derived policy for controlled experiments: plays the expert's action with a
    confident distribution on "easy" states (the expert says ``go forward``) and, when
    ``fail_on_hard`` is set, ``toggle`` (which leaves the state unchanged, so the agent is stuck
    until DEEPTHINK is called) with a flat distribution on the others.

    ``seconds`` is the device time each call reports as measured on its (simulated) device
    (``device_measured=True``, as CUDA events would), so tests can check the accounting.
    """

    is_oracle = True

    def __init__(self, *, name: str, fail_on_hard: bool, seconds: float = 0.001, hidden_dim: int = 4) -> None:
        self.name = name
        self.fail_on_hard = fail_on_hard
        self.seconds = seconds
        self.hidden_dim = hidden_dim
        self.calls = 0

    def act(self, obs: TextObservation) -> Decision:
        self.calls += 1
        acts = list(obs.admissible_actions)
        oracle = obs.oracle_action or acts[0]
        easy = oracle == "go forward"
        if easy or not self.fail_on_hard:
            action = oracle
            probs = np.full(len(acts), 0.02)
            probs[acts.index(action)] = 1.0
        else:
            action = "toggle"
            probs = np.full(len(acts), 1.0)
            probs[acts.index(action)] = 1.3
        probs = probs / probs.sum()
        rec = CallRecord(model=self.name, device="sim", device_seconds=self.seconds, wall_seconds=self.seconds,
                         input_tokens=10, output_tokens=1, flops=100.0, device_measured=True)
        return Decision(action=action, record=rec, probs=probs, hidden=np.full(self.hidden_dim, float(easy)))


@pytest.fixture
def controlled_pair():
    """(QUICK, DEEPTHINK): QUICK right on easy states only, DEEPTHINK always right."""
    quick = ControlledPolicy(name="controlled-quick", fail_on_hard=True, seconds=0.001)
    deep = ControlledPolicy(name="controlled-deepthink", fail_on_hard=False, seconds=0.02)
    return quick, deep


def sigkill_after_checkpoint(proc, state_file, min_steps: int, timeout: float = 240.0) -> int:
    """SIGKILL the training process ``proc`` once its checkpoint ``state_file`` has reached
    ``min_steps``; returns the step of the last checkpoint it left."""
    import json
    import signal
    import time

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if state_file.exists() and json.loads(state_file.read_text())["num_timesteps"] >= min_steps:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the child finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return int(json.loads(state_file.read_text())["num_timesteps"])


# ------------------------------------------------------------------ tiny LM checkpoints for tests
BABYAI_ACTIONS = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")


def babyai_observations(n_steps: int = 4, seed: int = 3) -> list[TextObservation]:
    """A few real BabyAI-Text observations (the expert drives, so the history fills up)."""
    from londi.envs import DEFAULT_ENV_ID, make_env

    env = make_env(DEFAULT_ENV_ID)
    _, info = env.reset(seed=seed)
    out = [info["text_obs"]]
    for _ in range(n_steps - 1):
        action = out[-1].oracle_action or "turn left"
        _, _, term, trunc, info = env.step(action)
        if term or trunc:
            break
        out.append(info["text_obs"])
    env.close()
    return out


def word_tokenizer(words: list[str]):
    """A plain word-level tokenizer (actions are several tokens), for random test models."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<eos>"] + sorted(set(words)))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")


def prompt_vocab(obs_list: list[TextObservation]) -> list[str]:
    """Every word of the prompts of ``obs_list`` and of the BabyAI actions."""
    from londi.agents.prompt import build_prompt

    words: set[str] = set()
    for o in obs_list:
        words.update(build_prompt(o).replace(":", " : ").replace(",", " , ").replace(".", " . ").split())
    for a in BABYAI_ACTIONS:
        words.update(a.split())
    return sorted(words)


def save_random_gpt2(path, observations: list[TextObservation], *, seed: int = 0):
    """Save a randomly initialised tiny GPT-2 (multi-token actions) with ``save_pretrained``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = word_tokenizer(prompt_vocab(observations))
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=512,
                                       bos_token_id=2, eos_token_id=2, pad_token_id=0))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
