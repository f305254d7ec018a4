"""TextWorld env: games made here with tw-make; the walkthrough and the policy-commands expert
reach the maximum score, rewards are score changes, check_env passes, bad input is clear."""
from __future__ import annotations

import shutil

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from londi.agents.expert import OracleExpert
from londi.core.errors import ConfigError, UnknownChoiceError
from londi.envs import env_ids
from londi.envs.base import decode_text
from londi.envs.textworld import (
    CHALLENGE_IDS,
    ID_PREFIX,
    TextWorldTextEnv,
    clean_feedback,
    game_name,
    make_game,
    sanitize_command,
)


@pytest.fixture(scope="module")
def game_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tw_games")


@pytest.fixture(scope="module")
def simple_game(game_dir):
    """A tw-simple game with dense rewards (several points), made with tw-make."""
    return make_game("simple", 1, game_dir)


@pytest.fixture(scope="module")
def coin_game(game_dir):
    """A coin-collector game made through a registered id into a cache dir (first use)."""
    env = gym.make(f"{ID_PREFIX}CoinCollector-v0", n_games=1, cache_dir=str(game_dir), disable_env_checker=True)
    files = env.unwrapped.game_files
    env.close()
    assert len(files) == 1 and files[0].name == f"{game_name('coin_collector', 1)}.z8"
    return files[0]


def test_ids_registered():
    ids = env_ids()
    assert f"{ID_PREFIX}v0" in ids
    for name in CHALLENGE_IDS.values():
        assert f"{ID_PREFIX}{name}-v0" in ids


def test_game_names_carry_the_settings():
    assert game_name("cooking", 3).startswith("cooking-") and game_name("cooking", 3).endswith("-s003")
    assert game_name("cooking", 3) != game_name("simple", 3).replace("simple", "cooking")


def test_make_game_is_atomic_and_cached(simple_game, game_dir):
    assert simple_game.is_file() and simple_game.with_suffix(".json").is_file()
    assert not [p for p in game_dir.iterdir() if p.name.startswith(".")]  # no temp folders left
    mtime = simple_game.stat().st_mtime_ns
    assert make_game("simple", 1, game_dir) == simple_game and simple_game.stat().st_mtime_ns == mtime


def test_walkthrough_reaches_max_score_and_rewards_are_increments(simple_game):
    env = TextWorldTextEnv(simple_game)
    _, info = env.reset(seed=0)
    max_score = info["max_score"]
    assert max_score > 1 and info["score"] == 0
    rewards, terminated = [], False
    for command in env.walkthrough:
        _, reward, terminated, truncated, info = env.step(command)
        rewards.append(reward)
        if terminated or truncated:
            break
    env.close()
    assert terminated and info["won"] and info["success"] and info["score"] == max_score
    assert sum(rewards) == max_score
    # Never the cumulative score: a dense game pays each point once.
    assert all(r in (0.0, 1.0) for r in rewards) and rewards.count(1.0) == max_score


def test_policy_commands_expert_reaches_max_score_and_replans(simple_game, coin_game):
    for game in (simple_game, coin_game):
        env = TextWorldTextEnv(game, max_steps=50)
        _, info = env.reset(seed=0)
        # A detour first: the expert replans from the state the detour left.
        for detour in ("inventory", "look"):
            _, _, _, _, info = env.step(detour)
        assert info["oracle_action"] is not None
        expert, ret, terminated = OracleExpert(), 0.0, False
        for _ in range(env.max_steps):
            decision = expert.act(info["text_obs"])  # raises if the oracle action is not admissible
            _, reward, terminated, truncated, info = env.step(decision.action)
            ret += reward
            if terminated or truncated:
                break
        env.close()
        assert terminated and info["won"] and ret == info["max_score"]
        assert info["oracle_action"] is None


def test_text_observation(simple_game):
    env = TextWorldTextEnv(simple_game, history_length=2)
    obs, info = env.reset(seed=0)
    text_obs = info["text_obs"]
    assert decode_text(obs).startswith("Goal: " + text_obs.goal)
    assert text_obs.goal and text_obs.goal in text_obs.text  # the intro states the objective
    assert "$$" not in text_obs.text and not text_obs.text.endswith(">")  # no title art, no prompt
    assert text_obs.look.startswith("-= ") and "carrying" in text_obs.inventory
    assert "look" in text_obs.admissible_actions and text_obs.oracle_action in text_obs.admissible_actions
    for i, command in enumerate(["look", "inventory", "dance"]):
        _, reward, _, _, info = env.step(command)
        assert reward == 0.0 and info["text_obs"].step == i + 1
    text_obs = info["text_obs"]
    assert [a for _, a in text_obs.history] == ["inventory", "dance"]
    assert text_obs.history[-1][0].startswith("You are carrying")
    env.close()
    env.close()


def test_clean_feedback_and_sanitize():
    raw = "\n\n  ___\n |   \\\n\nHello there.\n\n\n\n>   -= Room =-0/1"
    assert clean_feedback(raw, first=True) == "Hello there."
    assert clean_feedback("\nYou win.\n\n    *** The End ***\n>") == "You win.\n\n*** The End ***"
    assert sanitize_command("go\\q north\n") == "go q north "


def test_check_env(simple_game):
    env = gym.make(f"{ID_PREFIX}v0", game_file=str(simple_game), disable_env_checker=True).unwrapped
    check_env(env)
    env.close()


def test_game_set_seed_truncation_and_int_actions(simple_game, coin_game):
    env = TextWorldTextEnv(game_files=[simple_game, coin_game], max_steps=2)
    drawn = {env.reset(seed=s)[1]["game_file"] for s in range(8)}
    assert drawn == {str(simple_game), str(coin_game)}
    _, info = env.reset(options={"game": 1})
    assert info["game_file"] == str(coin_game)
    look = info["text_obs"].admissible_actions.index("look")
    assert env.step(look)[2:4] == (False, False)
    assert env.step("look")[2:4] == (False, True)
    with pytest.raises(ValueError, match="index"):
        env.step(999)
    with pytest.raises(ValueError, match="options"):
        env.reset(options={"game": 5})
    env.close()


@pytest.mark.filterwarnings("ignore:.*is not fully supported")  # Jericho on the bare game: expected
def test_bad_input(simple_game, tmp_path):
    with pytest.raises(UnknownChoiceError, match=f"{simple_game.name}"):
        TextWorldTextEnv(simple_game.parent / "nope.z8")  # names the games that are there
    with pytest.raises(UnknownChoiceError, match=r"Glulx.*\.z8"):
        TextWorldTextEnv(tmp_path / "game.ulx")
    with pytest.raises(UnknownChoiceError, match="format"):
        TextWorldTextEnv(tmp_path / "game.txt")
    with pytest.raises(UnknownChoiceError, match="challenge 'cookin'.*'cooking'"):
        TextWorldTextEnv(challenge="cookin")
    with pytest.raises(ConfigError, match="exactly one"):
        TextWorldTextEnv()
    with pytest.raises(ConfigError, match="exactly one"):
        gym.make(f"{ID_PREFIX}v0")
    bare = tmp_path / "bare.z8"
    shutil.copy(simple_game, bare)  # a Z-machine game without tw-make's .json
    with pytest.raises(ConfigError, match=r"\.json"):
        TextWorldTextEnv(bare)
    env = TextWorldTextEnv(bare, expert=False)  # playable without the expert
    _, info = env.reset(seed=0)
    assert info["oracle_action"] is None and info["text_obs"].text
    env.close()
