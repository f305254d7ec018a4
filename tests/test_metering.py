"""The switch times every policy call itself: a policy's own device-seconds count only where it
measured them on the device (CUDA events, a server's figure)."""
from __future__ import annotations

import time

import pytest

from londi.agents.base import Decision, TextPolicy
from londi.core.meter import CallRecord, CallTiming, bill
from londi.envs import make_env
from londi.switch.accounting import DEEPTHINK
from londi.switch.env import SwitchEnv


class Busy(TextPolicy):
    """Spins the CPU for ``seconds`` and reports whatever ``record`` says (by default nothing)."""

    def __init__(self, name: str, seconds: float, **record: object) -> None:
        self.name, self.seconds, self.record = name, seconds, record

    def act(self, obs):
        end = time.thread_time() + self.seconds
        while time.thread_time() < end:
            pass
        return Decision(action=obs.admissible_actions[0], record=CallRecord(model=self.name, **self.record))


def _one_step(quick: TextPolicy, deep: TextPolicy):
    env = SwitchEnv(make_env("londi/BabyAIText-GoToLocal-v0"), quick, deep, features=None)
    env.reset(seed=0)
    _, _, _, _, info = env.step(DEEPTHINK)
    return info["accounting"]


def test_a_policy_that_reports_nothing_is_billed_the_cpu_it_used():
    acc = _one_step(Busy("q", 0.0), Busy("x", 0.05))  # CallRecord(model="x"): 0 s as reported
    assert 0.045 <= acc.device_seconds["deepthink"] <= 0.5
    assert acc.wall_seconds["deepthink"] >= 0.045


def test_a_policy_that_under_reports_is_not_believed():
    acc = _one_step(Busy("q", 0.0), Busy("x", 0.05, device="cpu", device_seconds=1e-6))
    assert acc.device_seconds["deepthink"] >= 0.045


def test_a_device_measured_figure_is_kept():
    """CUDA events or a server's compute: the device's time, not the host's."""
    acc = _one_step(Busy("q", 0.0), Busy("gpu", 0.01, device="cuda:0", device_seconds=0.25, device_measured=True))
    assert acc.device_seconds["deepthink"] == pytest.approx(0.25)


def test_a_remote_call_without_a_figure_is_billed_its_wall_time():
    record = CallRecord(model="served", device="http")
    timing = CallTiming(wall_seconds=0.8, thread_cpu_seconds=0.01, process_cpu_seconds=0.02)
    billed = bill(record, timing)
    assert billed.device_seconds == pytest.approx(0.8) and billed.cpu_seconds == pytest.approx(0.01)
    assert bill(CallRecord(model="cpu"), timing).device_seconds == pytest.approx(0.02)
