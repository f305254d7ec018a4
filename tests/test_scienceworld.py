"""ScienceWorld env: fidelity (gold paths reach 100), the oracle, splits, bad input, and the JVM
lifecycle (closed, restarted after a crash, never leaked).

ScienceWorld starts a JVM and takes ~0.1-0.3 s a step, so one env (one JVM) is shared by the
module and only a few short tasks are replayed; ``scripts/check_scienceworld_gold.py`` replays
all 30 tasks.
"""
from __future__ import annotations

import os
import signal
import time

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from londi.agents.expert import OracleExpert
from londi.core.errors import UnknownChoiceError
from londi.envs import env_ids
from londi.envs.base import decode_text
from londi.envs.scienceworld import (
    ID_PREFIX,
    TASK_MAX_STEPS,
    ScienceWorldTextEnv,
    parse_simplifications,
    resolve_task,
    scienceworld_task_names,
)
from londi.envs.scienceworld_gold import NOOP, map_gold_action, object_parents, parse_command

TASK = "find-non-living-thing"  # 5-9 gold steps, cheap to load


def java_children() -> list[int]:
    """Pids of this process's child processes that run java (zombies included: a leak too)."""
    me = str(os.getpid())
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        name, rest = stat.rsplit(")", 1)
        if rest.split()[1] == me and (b"java" in cmd or "java" in name):
            pids.append(int(entry))
    return pids


def wait_for(predicate, timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.fixture(scope="module")
def sw_env():
    env = gym.make(f"{ID_PREFIX}{TASK}-v0", disable_env_checker=True).unwrapped
    assert isinstance(env, ScienceWorldTextEnv)
    yield env
    env.close()
    assert wait_for(lambda: not java_children()), "the JVM outlived close()"


def play_gold(env: ScienceWorldTextEnv, info: dict) -> tuple[float, dict, bool]:
    """Replay the episode's gold path as the package gives it (commands the valid list may lack);
    return (sum of rewards, last info, terminated). The oracle label must track the replay."""
    total, terminated = 0.0, False
    for action in env.gold_path:
        assert info["oracle_action"] is not None, "the replayed gold path lost the oracle label"
        _, reward, terminated, truncated, info = env.step(action)
        total += reward
        if terminated or truncated:
            break
    return total, info, terminated


def play_expert(env: ScienceWorldTextEnv, info: dict) -> tuple[dict, bool, int]:
    """Play OracleExpert (which refuses anything outside ``admissible_actions``) to the end;
    return (last info, terminated, steps)."""
    expert, terminated, steps = OracleExpert(), False, 0
    while True:
        text_obs = info["text_obs"]
        assert text_obs.oracle_action in text_obs.admissible_actions
        _, _, terminated, truncated, info = env.step(expert.act(text_obs).action)
        steps += 1
        if terminated or truncated:
            return info, terminated, steps


# ---------------------------------------------------------------------- no JVM needed
def test_all_tasks_registered_without_starting_a_jvm():
    names = scienceworld_task_names()
    assert len(names) == 30 and "boil" in names and "mendelian-genetics-unknown-plant" in names
    ids = env_ids()
    for name in names:
        assert f"{ID_PREFIX}{name}-v0" in ids
    before = java_children()
    env = gym.make(f"{ID_PREFIX}boil-v0")
    assert env.unwrapped.jvm_pid is None and java_children() == before
    env.close()
    env.close()  # closing twice is allowed


def test_task_aliases():
    assert resolve_task("1-1") == "boil"
    assert resolve_task("boil") == "boil"
    assert resolve_task("Matter Changes of State (Boiling)") == "boil"


def _valid(*entries):
    return [{"action": a, "obj_ids": list(ids)} for a, ids in entries]


def test_gold_actions_map_onto_the_valid_list():
    """The gold path's spellings map to the valid list's action on the same objects (no JVM)."""
    objects = {
        "1": {"referents": ["thermometer"]},
        "2": {"referents": ["unknown substance B", "unknown substance"]},
        "3": {"referents": ["terminal", "anode", "anode on battery", "battery anode"]},
        "4": {"referents": ["terminal", "terminal 1 on yellow wire", "yellow wire terminal 1"]},
        "5": {"referents": ["metal pot", "pot"]},
        "6": {"referents": ["substance", "chocolate"]},
        "7": {"referents": ["substance", "air"]},
        "15": {"referents": ["yellow wire", "wire"]},
    }
    valid = _valid(
        ("use thermometer on unknown substance", (1, 2)),
        ("use thermometer on inventory", (1, 9)),
        ("look at unknown substance", (2,)),
        ("connect terminal 1 in yellow wire to anode in battery", (4, 3)),
        ("connect anode in battery to terminal 1 in yellow wire", (3, 4)),
        ("look at chocolate", (6,)),
        ("put down metal pot", (5,)),
        ("close door to kitchen", (11,)),
        ("close bedroom door", (12,)),
        ("close door", (13,)),
        ("go to hallway", (14,)),
        ("connect metal pot to terminal 1 in yellow wire", (5, 4)),
        ("connect anode in battery to yellow wire", (3, 15)),
    )
    cases = {
        "use thermometer in inventory on unknown substance B in inventory": "use thermometer on unknown substance",
        "connect battery anode to yellow wire terminal 1": "connect anode in battery to terminal 1 in yellow wire",
        "examine chocolate": "look at chocolate",
        "drop metal pot": "put down metal pot",
        "look at unknown substance b": "look at unknown substance",
        "connect yellow wire terminal 1 to metal pot terminal 2": "connect metal pot to terminal 1 in yellow wire",
        # no-ops in this state: the door is open, the pot is held already
        "open door to kitchen": NOOP,
        "open door to bedroom": NOOP,
        "open door to hallway": NOOP,  # the room's only door, named plain "door"
        "pick up metal pot": NOOP,
        # nothing equivalent: no mapping
        "look at air": None,
        "wait1": None,
        "frobnicate thermometer": None,
    }
    for gold, expected in cases.items():
        assert map_gold_action(gold, valid, objects) == expected, gold
    # Look-alike seeds differ only in where they are: the object tree tells them apart.
    objects = {
        "20": {"referents": ["pea seed", "round pea seed"]},
        "21": {"referents": ["pea seed", "round pea seed"]},
        "30": {"referents": ["pea plant", "tall pea plant"]},
        "31": {"referents": ["pea plant", "short pea plant"]},
        "40": {"referents": ["ceramic cup", "seed jar"]},
    }
    valid = _valid(("move pea seed to seed jar", (20, 40)), ("move living thing to seed jar", (21, 40)))
    tree = {"uuid": "1", "contents": {
        "a": {"uuid": "30", "contents": {"s": {"uuid": "20", "contents": {}}}},
        "b": {"uuid": "31", "contents": {"s": {"uuid": "21", "contents": {}}}},
        "c": {"uuid": "40", "contents": {}},
    }}
    parents = object_parents(tree)
    assert parents == {30: 1, 31: 1, 40: 1, 20: 30, 21: 31}
    gold = "move round pea seed in short pea plant to ceramic cup"
    assert map_gold_action(gold, valid, objects, parents) == "move living thing to seed jar"
    assert map_gold_action(gold, valid, objects) == "move pea seed to seed jar"  # no tree: spelling
    assert parse_command("move metal pot to door to kitchen") == (
        "move", [["metal pot", "door to kitchen"], ["metal pot to door", "kitchen"]])


def test_default_step_limit_covers_the_gold_paths():
    assert set(TASK_MAX_STEPS) <= set(scienceworld_task_names())
    assert all(steps > 100 for steps in TASK_MAX_STEPS.values())
    assert ScienceWorldTextEnv("find-plant").max_steps == 100
    for task, steps in TASK_MAX_STEPS.items():
        assert ScienceWorldTextEnv(task).max_steps == steps
    assert ScienceWorldTextEnv("mendelian-genetics-known-plant", max_steps=7).max_steps == 7


def test_bad_input_names_the_choices():
    with pytest.raises(UnknownChoiceError, match="unknown ScienceWorld task 'boill'.*'boil'"):
        ScienceWorldTextEnv("boill")
    with pytest.raises(UnknownChoiceError, match=r"ScienceWorld split \(train, dev, test\) 'validation'") as err:
        ScienceWorldTextEnv("boil", split="validation")
    assert err.value.choices == ["dev", "test", "train"]
    with pytest.raises(UnknownChoiceError, match="simplification 'opendoors'.*'openDoors'"):
        ScienceWorldTextEnv("boil", simplifications="easy,opendoors")
    with pytest.raises(ValueError, match="needs electrical actions"):
        ScienceWorldTextEnv("power-component", simplifications=["noElectricalAction"])
    with pytest.raises(ValueError, match="max_steps"):
        ScienceWorldTextEnv("boil", max_steps=0)
    with pytest.raises(ValueError, match="needs expert=True"):
        ScienceWorldTextEnv("boil", expert=False, admit_oracle_action=True)
    assert parse_simplifications(["openDoors", "teleportAction"]) == "openDoors,teleportAction"
    assert parse_simplifications("") == ""


# ---------------------------------------------------------------------- one shared JVM
def test_gymnasium_check_env(sw_env):
    check_env(sw_env)
    assert len(java_children()) == 1  # check_env's own envs closed their JVMs


def test_gold_path_reaches_100_and_rewards_are_score_changes(sw_env):
    obs, info = sw_env.reset(seed=0)
    assert info["variation"] in sw_env.split_variations("train")
    text_obs = info["text_obs"]
    assert decode_text(obs).startswith("Task: " + text_obs.goal)
    assert "non-living thing" in text_obs.goal
    assert "This room is called" in text_obs.text and "This room is called" in text_obs.look
    assert "inventory" in text_obs.inventory.lower()
    assert "look around" in text_obs.admissible_actions
    assert info["gold_action"] == sw_env.gold_path[0]  # the label is its valid-list spelling
    assert text_obs.oracle_action in text_obs.admissible_actions
    start_score = info["score"]
    total, info, terminated = play_gold(sw_env, info)
    assert terminated and info["success"] and info["score"] == 100
    assert total == pytest.approx(100 - start_score)
    assert info["oracle_action"] is None


def test_valid_actions_fetched_once_per_step(sw_env, monkeypatch):
    sw_env.reset(seed=1)
    raw = sw_env._sw
    calls = []
    original = raw.get_valid_action_object_combinations
    monkeypatch.setattr(raw, "get_valid_action_object_combinations", lambda: calls.append(1) or original())
    for _ in range(3):
        _, _, _, _, info = sw_env.step("look around")
        text_obs = info["text_obs"]
        assert len(text_obs.admissible_actions) > 10 and text_obs.admissible_actions == sw_env.text_observation.admissible_actions
    assert len(calls) == 3


def test_oracle_follows_gold_then_none_after_deviation(sw_env):
    _, info = sw_env.reset(seed=2)
    gold = sw_env.gold_path
    first = info["oracle_action"]
    assert first in info["text_obs"].admissible_actions and info["gold_action"] in gold
    _, _, _, _, info = sw_env.step(first)
    second = info["oracle_action"]
    assert second is not None and info["text_obs"].history[-1][1] == first
    off_path = next(a for a in ("inventory", "look around") if a != second and a not in gold)
    _, _, _, _, info = sw_env.step(off_path)
    assert info["oracle_action"] is None and info["text_obs"].oracle_action is None
    _, _, _, _, info = sw_env.step(second)  # back on the plan's next action: still no oracle
    assert info["oracle_action"] is None


def test_oracle_expert_reaches_100_without_admitting_the_oracle(sw_env):
    # Every label is in the simulator's own valid list: nothing is added to the candidates.
    assert not sw_env.admit_oracle_action
    _, info = sw_env.reset(seed=3)
    before = sw_env.unlisted_gold_actions
    info, terminated, steps = play_expert(sw_env, info)
    assert terminated and info["score"] == 100 and info["success"]
    assert steps <= len(sw_env.gold_path) and sw_env.unlisted_gold_actions == before


def test_splits_and_variation_option(sw_env):
    train, dev, test = (set(sw_env.split_variations(s)) for s in ("train", "dev", "test"))
    assert train and dev and test and not (train & dev) and not (train & test) and not (dev & test)
    seen = {sw_env.reset(seed=s)[1]["variation"] for s in range(6)}
    assert seen <= train and len(seen) > 1
    with pytest.raises(ValueError, match="not in the 'train' split"):
        sw_env.reset(options={"variation": min(dev)})
    with pytest.raises(UnknownChoiceError, match="variation"):
        sw_env.reset(options={"variaton": 0})
    _, info = sw_env.reset(options={"variation": min(train)})
    assert info["variation"] == min(train) and info["split"] == "train"


def test_truncation_and_int_actions(sw_env):
    saved, sw_env.max_steps = sw_env.max_steps, 3
    try:
        sw_env.reset(seed=4)
        index = sw_env.text_observation.admissible_actions.index("look around")
        results = [sw_env.step(index)[2:4] for _ in range(3)]
        assert results == [(False, False), (False, False), (False, True)]
        with pytest.raises(ValueError, match="index"):
            sw_env.step(10**6)
    finally:
        sw_env.max_steps = saved


def test_jvm_crash_truncates_restarts_and_close_leaks_nothing(sw_env):
    # Last of the shared-env tests: it restarts the JVM once and leaves it closed.
    sw_env.reset(seed=5)
    pid = sw_env.jvm_pid
    assert java_children() == [pid]
    os.kill(pid, signal.SIGKILL)
    obs, reward, terminated, truncated, info = sw_env.step("look around")
    assert info["env_crashed"] and truncated and not terminated and reward == 0.0
    assert decode_text(obs)  # the last observation, still inside the space
    assert wait_for(lambda: not java_children()), "the dead JVM was not reaped"
    with pytest.raises(RuntimeError, match="reset"):
        sw_env.step("look around")
    _, info = sw_env.reset(seed=5)  # a fresh JVM
    assert not info["env_crashed"] and info["text_obs"].step == 0 and sw_env.crash_count >= 1
    assert sw_env.jvm_pid != pid and java_children() == [sw_env.jvm_pid]
    sw_env.close()
    assert sw_env.jvm_pid is None and wait_for(lambda: not java_children()), "the JVM outlived close()"
    sw_env.close()  # closing twice is allowed


@pytest.mark.slow
@pytest.mark.parametrize("task", ["use-thermometer", "test-conductivity", "find-living-thing"])
def test_oracle_expert_reaches_100_where_gold_actions_are_unlisted(task):
    """Tasks whose gold paths use spellings the valid list lacks (``use thermometer in inventory
    on ...``, ``connect battery anode to ...``, ``move egg X egg in inventory to ...``) and
    no-ops (opening open doors): the expert used to fail on all three."""
    env = ScienceWorldTextEnv(task)
    try:
        _, info = env.reset(seed=0)
        assert any(a not in info["text_obs"].admissible_actions for a in env.gold_path)
        info, terminated, _ = play_expert(env, info)
        assert terminated and info["score"] == 100 and env.unlisted_gold_actions == 0
    finally:
        env.close()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["lifespan-longest-lived", "power-component"])
def test_gold_path_other_tasks(task):
    before = java_children()
    env = ScienceWorldTextEnv(task, split="dev")
    try:
        _, info = env.reset(seed=0)
        assert info["variation"] in env.split_variations("dev")
        _, info, terminated = play_gold(env, info)
        assert terminated and info["score"] == 100 and info["success"]
    finally:
        env.close()
    assert wait_for(lambda: java_children() == before)


def test_finaliser_never_blocks_on_the_jvm():
    """``__del__`` kills the JVM without waiting: a finaliser can run inside another ``wait`` on
    the same process (whose lock is not re-entrant), where a blocking wait hung ``londi train``
    at exit. A plain ``sleep`` process stands in for the JVM; no JVM is started."""
    import subprocess
    import threading
    from types import SimpleNamespace

    env = ScienceWorldTextEnv(task=TASK)
    proc = subprocess.Popen(["sleep", "60"])
    gateway = SimpleNamespace(java_process=proc, _gateway_client=SimpleNamespace(is_connected=True))
    env._sw = SimpleNamespace(_gateway=gateway, close=lambda: None)
    with proc._waitpid_lock:  # as if a Popen.wait on this process were in progress
        finaliser = threading.Thread(target=env.__del__, daemon=True)
        finaliser.start()
        finaliser.join(timeout=10)
        assert not finaliser.is_alive(), "the finaliser blocked on the process"
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert env._sw is None and gateway._gateway_client.is_connected is False
