import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from londi.core.errors import UnknownChoiceError
from londi.envs import make_env
from londi.switch.env import DEEPTHINK, QUICK, SwitchEnv
from londi.switch.features import HashingBagOfWords, make_features


def make(pair, **kwargs):
    quick, deep = pair
    base = make_env("londi/BabyAIText-GoToLocal-v0", disable_env_checker=True)
    return SwitchEnv(base, quick, deep, **kwargs)


def test_checkers_pass(controlled_pair):
    check_env(make(controlled_pair, call_cost=0.1), skip_render_check=True)
    sb3_check_env(make(controlled_pair, call_cost=0.1, budget=2))
    check_env(make(controlled_pair, features="quick+bow"), skip_render_check=True)


def test_reward_is_env_reward_minus_cost_and_accounting_adds_up(controlled_pair):
    quick, deep = controlled_pair
    env = make(controlled_pair, call_cost=0.25)
    obs, info = env.reset(seed=5)
    assert obs["features"].shape == env.observation_space["features"].shape
    choices = [DEEPTHINK, QUICK, DEEPTHINK, DEEPTHINK, QUICK] * 20
    for t, a in enumerate(choices):  # noqa: B007 (t counts the steps, read after the loop)
        obs, r, term, trunc, info = env.step(a)
        assert r == pytest.approx(info["env_reward"] - 0.25 * (a == DEEPTHINK))
        assert info["deepthink_cost"] == float(a == DEEPTHINK)
        if term or trunc:
            break
    acc = info["accounting"]
    steps = t + 1
    assert acc.steps == steps
    assert acc.calls["deepthink"] == sum(1 for a in choices[:steps] if a == DEEPTHINK)
    # QUICK is consulted at every non-terminal state (its answer feeds the features)
    assert acc.calls["quick"] == steps
    assert acc.device_seconds["quick"] == pytest.approx(0.001 * steps)
    assert acc.device_seconds["deepthink"] == pytest.approx(0.02 * acc.calls["deepthink"])
    assert acc.calls["switch"] >= steps  # feature extraction is metered as the switch's own cost
    assert acc.device_seconds["switch"] >= 0


def test_without_features_quick_is_called_only_when_chosen(controlled_pair):
    env = make(controlled_pair, features=None)
    env.reset(seed=1)
    for _ in range(3):
        _, _, term, trunc, info = env.step(DEEPTHINK)
        if term or trunc:
            break
    assert info["accounting"].calls["quick"] == 0
    assert info["accounting"].calls["deepthink"] >= 1


def test_hard_budget_masks_and_overrides(controlled_pair):
    env = make(controlled_pair, budget=2)
    obs, _ = env.reset(seed=0)
    assert obs["action_mask"].tolist() == [1.0, 1.0]
    for _ in range(6):
        obs, _, term, trunc, info = env.step(DEEPTHINK)
        if term or trunc:
            break
    acc = info["accounting"]
    assert acc.calls["deepthink"] <= 2
    if acc.steps > 2:
        assert obs["action_mask"].tolist() == [1.0, 0.0]
        assert acc.masked_overrides == acc.steps - 2


def test_failing_deepthink_falls_back_to_quick(controlled_pair):
    quick, _ = controlled_pair

    class Broken(type(quick)):
        def act(self, obs):
            raise ConnectionError("server down")

    env = SwitchEnv(make_env("londi/BabyAIText-GoToLocal-v0", disable_env_checker=True), quick,
                    Broken(name="broken", fail_on_hard=False), call_cost=0.0)
    env.reset(seed=0)
    _, _, _, _, info = env.step(DEEPTHINK)
    assert info["accounting"].policy_errors == 1
    assert info["executed_action"] == info["quick_action"]


def test_bad_arguments(controlled_pair):
    with pytest.raises(ValueError, match="call_cost"):
        make(controlled_pair, call_cost=-1)
    with pytest.raises(ValueError, match="budget"):
        make(controlled_pair, budget=-2)
    with pytest.raises(ValueError, match="budget"):
        make(controlled_pair, budget=1.5)
    with pytest.raises(UnknownChoiceError, match="quick"):
        make(controlled_pair, features="quik")
    env = make(controlled_pair)
    env.reset(seed=0)
    with pytest.raises(ValueError):
        env.step(2)


def test_bow_features_are_deterministic_and_normalised(controlled_pair):
    env = make(controlled_pair, features="bow")
    bow = env.encoder
    assert isinstance(bow, HashingBagOfWords)
    _, info = env.reset(seed=0)
    v1 = bow.encode(info["text_obs"], None)
    v2 = make_features("bow").encode(info["text_obs"], None)
    assert np.allclose(v1, v2)
    assert np.linalg.norm(v1) == pytest.approx(1.0, abs=1e-5)


def test_goal_features_find_the_goal_line():
    from londi.envs.base import TextObservation
    from londi.switch.features import GoalGroundingFeatures

    enc = GoalGroundingFeatures(n_features=8)

    def encode(text):
        return enc.encode(TextObservation(goal="go to the red ball", text=text, admissible_actions=("go forward",)), None)

    seen = encode("You see a wall 2 steps left\nYou see a red ball 1 step right")
    apart = encode("You see a red key 2 steps left\nYou see a blue ball 1 step right")
    unseen = encode("You see a wall 2 steps left")
    assert seen.shape == (enc.dim,) == (11,)
    assert seen[:3].tolist() == [1.0, 1.0, 1.0]
    assert apart[:3].tolist() == [1.0, 0.5, 0.0]  # both words present, never on one line
    assert unseen[:3].tolist() == [0.0, 0.0, 0.0] and not unseen[3:].any()
    # the best line's other words ("1 step right") are hashed in; the unseen case has none
    assert np.abs(seen[3:]).sum() > 0
    assert make_features("quick+goal").dim == make_features("quick").dim + enc.dim - 8 + 32


def test_choice_features_describe_quicks_proposed_action():
    from londi.agents.base import CallRecord, Decision
    from londi.envs.base import TextObservation
    from londi.switch.features import ChoiceFeatures

    enc = ChoiceFeatures(n_features=8)
    obs = TextObservation(goal="pick up the red ball", text="You see a red ball 1 step forward",
                          admissible_actions=("turn left", "go forward", "pick up"))

    def encode(action, probs):
        return enc.encode(obs, Decision(action=action, record=CallRecord(model="q"), probs=np.array(probs)))

    best = encode("go forward", [0.2, 0.7, 0.1])
    worst = encode("pick up", [0.2, 0.7, 0.1])
    assert best.shape == (enc.dim,) == (12,)
    assert best[:3].tolist() == pytest.approx([0.7, 1.0, 0.0])
    assert worst[:3].tolist() == pytest.approx([0.1, 0.0, 1.0])
    assert worst[3] == pytest.approx(1 / 3) and best[3] == 0.0  # "pick" is one of {pick, red, ball}
    assert not np.allclose(best[4:], worst[4:])  # the action's words are hashed in
    # no distribution: the proposal counts as QUICK's sure choice
    assert enc.encode(obs, Decision(action="turn left", record=CallRecord(model="q")))[:3].tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError):
        enc.encode(obs, None)


def test_target_features_follow_the_missions_phase_and_quicks_heading():
    from londi.agents.base import CallRecord, Decision
    from londi.envs.babyai_text import target_offset
    from londi.envs.base import TextObservation
    from londi.switch.features import MissionTargetFeatures

    enc = make_features("target")
    assert isinstance(enc, MissionTargetFeatures) and enc.dim == 11
    goal = "put the red ball next to the blue key"
    view = "You see a red ball 2 steps forward\nYou see a blue key 1 step left and 3 steps forward"

    def encode(text, action, goal=goal):
        obs = TextObservation(goal=goal, text=text, admissible_actions=("turn left", "go forward"))
        return enc.encode(obs, Decision(action=action, record=CallRecord(model="q")))

    # phase one: the ball, straight ahead; "go forward" heads for it, "turn left" does not
    first = encode(view, "go forward")
    assert first[:7].tolist() == [1, 0, 0, 1, 0, 0, 1]
    assert first[7:].tolist() == pytest.approx([0.0, 2 / 6, 0.0, 1.0])
    assert encode(view, "turn left")[10] == 0.0
    # phase two: carrying the ball, the target is the key, to the left
    second = encode(view.replace("You see a red ball 2 steps forward", "You carry a red ball"), "turn left")
    assert second[4:].tolist() == pytest.approx([1, 1, 1, -1 / 3, 3 / 6, 0, 1])
    assert target_offset(goal, "You carry a red ball\nYou see a blue key 2 steps right") == (2, 0)
    # a colourless pick-up mission: any key, adjacent and straight ahead
    pick = encode("You see a green key 1 step forward", "go forward", goal="pick up a key")
    assert pick[:4].tolist() == [1, 0, 1, 0] and pick[9] == 1.0 and pick[10] == 0.0
    # out of view, and a goal that is not such a mission: nothing to point at
    assert encode("You see a wall 1 step forward", "go forward")[6:].tolist() == [0] * 5
    assert not encode(view, "go forward", goal="open the door").any()
    assert make_features("quick+goal+choice+target").dim == make_features("quick+goal+choice").dim + 11


def test_oracle_features_read_the_experts_label_and_are_marked_as_an_oracle(controlled_pair):
    from dataclasses import replace

    from londi.agents.base import CallRecord, Decision
    from londi.envs.base import TextObservation
    from londi.evaluation.loop import evaluate_methods
    from londi.rules import AlwaysQuick
    from londi.rules.base import Method
    from londi.switch.features import OracleHintFeatures, reads_oracle

    enc = OracleHintFeatures()
    obs = TextObservation(goal="go to the red ball", text="You see a red ball 1 step forward",
                          admissible_actions=("turn left", "go forward"), oracle_action="go forward")

    def decide(action):
        return Decision(action=action, record=CallRecord(model="q"))

    assert enc.encode(obs, decide("turn left")).tolist() == [1.0, 1.0]  # QUICK differs from the expert
    assert enc.encode(obs, decide("go forward")).tolist() == [1.0, 0.0]
    assert enc.encode(replace(obs, oracle_action=None), decide("turn left")).tolist() == [0.0, 0.0]  # no label
    with pytest.raises(ValueError):
        enc.encode(obs, None)
    assert reads_oracle("quick+goal+choice+oracle") and reads_oracle(make_features("quick+oracle"))
    assert not reads_oracle("quick+goal+choice") and not reads_oracle(None)
    # in a real env the feature is QUICK-wrong exactly where the hindsight oracle would call DEEPTHINK
    env = make(controlled_pair, features="quick+oracle")
    at = make_features("quick").dim + 1
    switch_obs, _ = env.reset(seed=3)
    for _ in range(8):
        wrong = env.quick_decision.action != env.text_observation.oracle_action
        assert switch_obs["features"][at] == float(wrong)
        switch_obs, _, terminated, truncated, _ = env.step(QUICK)
        if terminated or truncated:
            break
    # a rule that reads the oracle feature is reported as an oracle in results.json, others are not
    from conftest import ControlledPolicy

    rule, plain = AlwaysQuick(), AlwaysQuick()
    rule.features, plain.features = "quick+oracle", "quick+goal"
    quick, deep = (ControlledPolicy(name=n, fail_on_hard=f) for n, f in (("q", True), ("d", False)))
    quick.is_oracle = deep.is_oracle = False  # only the switch's features may make these runs oracles
    res = evaluate_methods({"probe": Method(rule, quick, deep), "plain": Method(plain, quick, deep)},
                           episodes=2, seed=0, progress=False)
    assert res["methods"]["probe"]["oracle"] is True and "oracle" not in res["methods"]["plain"]


def test_since_deepthink_context_feature_counts_steps_since_deepthink_acted(controlled_pair):
    from londi.switch.features import SINCE_DEEPTHINK_CAP

    env = make(controlled_pair, features="quick")
    obs, _ = env.reset(seed=3)
    seen = [obs["features"][-1]]
    for a in (QUICK, DEEPTHINK, QUICK, QUICK, DEEPTHINK):
        obs, _, term, trunc, _ = env.step(a)
        assert not (term or trunc)
        seen.append(obs["features"][-1])
    cap = SINCE_DEEPTHINK_CAP
    # 1 before DEEPTHINK has acted in the episode, then steps since its last action / cap
    assert seen == pytest.approx([1.0, 1.0, 0.0, 1 / cap, 2 / cap, 0.0])
    obs, _ = env.reset(seed=4)
    assert obs["features"][-1] == 1.0
