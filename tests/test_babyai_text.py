import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
from minigrid.core.world_object import Key
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from londi.agents import OracleExpert
from londi.core.errors import UnknownChoiceError
from londi.envs import decode_text, env_ids, make_env
from londi.envs.babyai_text import ACTION_NAMES, BabyAITextEnv, babyai_level_ids, describe_view

CHECKED_LEVELS = ["GoToLocal", "PickupLoc", "PutNextLocal", "Open", "MixedTrainLocal"]


def blank_view(size=7):
    view = np.zeros((size, size, 3), dtype=np.uint8)
    view[..., 0] = OBJECT_TO_IDX["empty"]
    return view


def put(view, dx, dy, obj, color="red", state="open"):
    """Place ``obj`` ``dx`` steps right (negative: left) and ``dy`` forward of the agent."""
    size = view.shape[0]
    x, y = size // 2 + dx, size - 1 - dy
    view[x, y] = (OBJECT_TO_IDX[obj], COLOR_TO_IDX[color], STATE_TO_IDX[state])


def test_every_babyai_level_has_a_text_id():
    ids = set(env_ids())
    levels = babyai_level_ids()
    assert len(levels) > 90
    for name, minigrid_id in levels.items():
        version = minigrid_id.rsplit("-v", 1)[1]
        assert f"londi/BabyAIText-{name}-v{version}" in ids
    assert "londi/BabyAIText-MixedTrainLocal-v0" in ids


@pytest.mark.parametrize("level", CHECKED_LEVELS)
def test_check_env_passes(level):
    env = gym.make(f"londi/BabyAIText-{level}-v0").unwrapped
    check_env(env, skip_render_check=True)


def test_sb3_check_env_passes():
    sb3_check_env(gym.make("londi/BabyAIText-GoToLocal-v0").unwrapped)


@pytest.mark.parametrize("level", ["GoToLocal", "MixedTrainLocal"])
def test_same_seed_same_observations(level):
    def rollout(seed):
        env = make_env(f"londi/BabyAIText-{level}-v0")
        obs, info = env.reset(seed=seed)
        texts = [decode_text(obs)]
        for a in [2, 0, 2, 1, 2, 3]:
            obs, *_ = env.step(a)
            texts.append(decode_text(obs))
        return texts

    assert rollout(3) == rollout(3)
    assert rollout(3) != rollout(4)


def test_object_offset_is_described():
    view = blank_view()
    put(view, -2, 1, "ball", "red")
    assert "You see a red ball 2 steps left and 1 step forward" in describe_view(view)


def test_right_and_straight_ahead_offsets():
    view = blank_view()
    put(view, 1, 0, "key", "green")
    put(view, 0, 3, "box", "purple")
    lines = describe_view(view)
    assert "You see a green key 1 step right" in lines
    assert "You see a purple box 3 steps forward" in lines


def test_locked_door_says_locked():
    view = blank_view()
    put(view, 0, 2, "door", "blue", "locked")
    put(view, 2, 2, "door", "yellow", "closed")
    lines = describe_view(view)
    assert "You see a locked blue door 2 steps forward" in lines
    assert "You see a closed yellow door 2 steps right and 2 steps forward" in lines


def test_walls_straight_ahead_left_and_right():
    view = blank_view()
    for y in range(7):
        view[0, y] = (OBJECT_TO_IDX["wall"], COLOR_TO_IDX["grey"], 0)
    view[3, 2] = (OBJECT_TO_IDX["wall"], COLOR_TO_IDX["grey"], 0)
    lines = describe_view(view)
    assert "You see a wall 4 steps forward" in lines
    assert "You see a wall 3 steps left" in lines
    assert not any("right" in line and "wall" in line for line in lines)


def test_carried_key_is_mentioned():
    assert "You carry a blue key" in describe_view(blank_view(), Key("blue"))


def test_env_reports_carried_object():
    env = BabyAITextEnv("PickupLoc")
    expert = OracleExpert()
    _, info = env.reset(seed=0)
    for _ in range(64):
        action = expert.act(info["text_obs"]).action
        _, _, term, trunc, info = env.step(action)
        if term or trunc:
            break
    assert info["success"]
    assert "You carry a" in info["text_obs"].text


def test_actions_and_bad_input():
    env = BabyAITextEnv("GoToLocal")
    assert env.action_names == ACTION_NAMES == ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")
    assert env.action_space.n == 6
    with pytest.raises(UnknownChoiceError, match="go forward"):
        env.action_index("go forwards")
    with pytest.raises(UnknownChoiceError, match="GoToLocal"):
        BabyAITextEnv("GoToLocl")
    with pytest.raises(UnknownChoiceError, match="GoToLocal"):
        make_env("londi/BabyAIText-GoToLocl-v0")
    with pytest.raises(ValueError):
        BabyAITextEnv("GoToLocal", history_length=-1)


@pytest.mark.parametrize("level", ["GoToLocal", "PickupLoc", "PutNextLocal", "GoToObj", "Open", "MixedTrainLocal"])
def test_expert_solves_level_through_text_env(level):
    env = make_env(f"londi/BabyAIText-{level}-v0")
    expert = OracleExpert()
    successes = 0
    for seed in range(200):
        _, info = env.reset(seed=seed)
        done = False
        while not done:
            _, _, term, trunc, info = env.step(expert.act(info["text_obs"]).action)
            done = term or trunc
        successes += info["success"]
    assert successes / 200 >= 0.99


def test_expert_follows_actions_taken_by_another_policy():
    """The bot is told the action actually taken: after random detours it still succeeds."""
    env = make_env("londi/BabyAIText-GoToLocal-v0")
    expert = OracleExpert()
    rng = np.random.default_rng(0)
    successes = 0
    for seed in range(50):
        _, info = env.reset(seed=seed)
        done, t = False, 0
        while not done:
            action = ACTION_NAMES[rng.integers(3)] if t < 4 else expert.act(info["text_obs"]).action
            _, _, term, trunc, info = env.step(action)
            done, t = term or trunc, t + 1
        successes += info["success"]
    assert successes >= 49
