"""Resume after SIGKILL, reproducibility, and faults that must not stop training or evaluation."""
import os
import subprocess
import sys
from pathlib import Path

from conftest import sigkill_after_checkpoint

from londi.evaluation.loop import evaluate_methods
from londi.learn.train import TrainConfig, load_switch, train_switch
from londi.rules import AlwaysQuick, LearnedSwitch
from londi.rules.base import Method

CHILD = Path(__file__).with_name("_train_child.py")


def test_training_resumes_after_sigkill(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(CHILD), str(run), "1500"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killed_at = sigkill_after_checkpoint(proc, run / "checkpoint" / "state.json", 400)
    assert 400 <= killed_at < 1500
    assert not (run / "model.zip").exists()
    # no half-written file is left behind: every file in the checkpoint loads
    assert not list(run.rglob("*.tmp"))
    out = subprocess.run([sys.executable, str(CHILD), str(run), "1500"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"at step {killed_at}" in out.stderr + out.stdout
    model, config = load_switch(run)
    assert model.num_timesteps == 1500
    assert config.steps == 1500


def test_same_seed_same_evaluation_numbers(controlled_pair, tmp_path):
    quick, deep = controlled_pair
    config = TrainConfig(steps=400, learning_starts=100, cost=0.1, seed=7, checkpoint_every=0)
    model = train_switch(config, tmp_path / "a", quick=quick, deepthink=deep, progress=False)

    def numbers():
        methods = {"q": Method(AlwaysQuick(), quick, deep), "londi": Method(LearnedSwitch(model, features=config.features), quick, deep)}
        res = evaluate_methods(methods, episodes=15, seed=2, progress=False)
        keep = ("success", "success_ci", "return", "steps", "deepthink_call_frac", "max_deepthink_calls")
        return {name: {k: m[k] for k in keep} for name, m in res["methods"].items()}

    assert numbers() == numbers()
    # and a second training run with the same seed learns the same switch
    model2 = train_switch(config, tmp_path / "b", quick=quick, deepthink=deep, progress=False)
    import torch as th

    for p1, p2 in zip(model.policy.parameters(), model2.policy.parameters()):
        assert th.equal(p1, p2)


def test_sampling_lms_give_the_same_numbers_whatever_ran_before():
    """The shipped QUICK samples its actions; a seeded episode reseeds it, so an evaluation in a
    process that has already used the model (an earlier sweep cell) repeats exactly."""
    from londi.agents.lm import load_policy

    quick = load_policy("quick")
    assert quick.sample

    def numbers():
        res = evaluate_methods({"q": Method(AlwaysQuick(), quick, quick)}, episodes=6, seed=3, progress=False)
        m = res["methods"]["q"]
        return m["success"], m["return"], m["steps"]

    first = numbers()
    evaluate_methods({"q": Method(AlwaysQuick(), quick, quick)}, episodes=3, seed=8, progress=False)  # moves its RNG
    assert numbers() == first


def test_a_raising_policy_and_a_raising_env_do_not_stop_evaluation(controlled_pair):
    """Expected faults (a timed-out model, a crashed simulator) are counted; the run goes on."""
    import gymnasium as gym

    from londi.core.errors import EnvCrashError

    quick, deep = controlled_pair

    class Flaky(type(deep)):
        def act(self, obs):
            if obs.step % 3 == 1:  # a third of the calls: under the share that stops a run
                raise TimeoutError("model timed out")
            return super().act(obs)

    from londi.envs import make_env
    from londi.switch.env import SwitchEnv

    class Crashy(gym.Wrapper):
        """Raises on its 3rd step, as a killed JVM would."""

        def __init__(self):
            super().__init__(make_env("londi/BabyAIText-GoToLocal-v0", disable_env_checker=True))
            self.t = 0

        def reset(self, **kw):
            self.t = 0
            return self.env.reset(**kw)

        def step(self, a):
            self.t += 1
            if self.t == 3:
                raise EnvCrashError("JVM died")
            return self.env.step(a)

    env = SwitchEnv(Crashy(), quick, Flaky(name="flaky", fail_on_hard=False))
    from londi.rules import AlwaysDeepthink
    from londi.switch.rollout import run_rule

    eps = run_rule(AlwaysDeepthink(), env, list(range(5)), progress=False)
    assert len(eps) == 5
    _, info = env.reset(seed=0)
    for _ in range(3):
        _, _, term, trunc, info = env.step(1)
        if term or trunc:
            break
    acc = info["accounting"]
    if acc.steps == 3:
        assert trunc and acc.env_errors == 1 and "env_error" in info
    assert acc.policy_errors >= 1
