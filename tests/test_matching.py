"""Mapping a model's free text to an admissible action."""
from __future__ import annotations

import time

import pytest

from londi.agents.matching import MATCH_KINDS, Match, extract_lines, match_action, normalise

BABYAI = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")


@pytest.mark.parametrize(
    "text, action",
    [
        ("turn left", "turn left"),
        ("  go forward  ", "go forward"),
        ("toggle\nObservation: You see a wall 2 steps forward\nAction: drop", "toggle"),
        ("Action: pick up", "pick up"),
        ("answer - drop", "drop"),
        ("`turn right`", "turn right"),
        ("```\ntoggle\n```", "toggle"),
        ("\n\n  drop\n", "drop"),
    ],
)
def test_exact(text: str, action: str) -> None:
    m = match_action(text, BABYAI)
    assert m == Match(action, "exact", 1.0, BABYAI.index(action))


@pytest.mark.parametrize(
    "text, action",
    [
        ("Turn Left", "turn left"),
        ("GO FORWARD.", "go forward"),
        (" turn   right!", "turn right"),
        ("**Pick-up**", "pick up"),
        ("\u201cdrop\u201d", "drop"),
        ("Action: Toggle.\nObservation: ...", "toggle"),
    ],
)
def test_normalised(text: str, action: str) -> None:
    m = match_action(text, BABYAI)
    assert (m.action, m.kind, m.score) == (action, "normalised", 1.0)


def test_articles_are_ignored() -> None:
    actions = ("open the door", "take a key", "go to kitchen")
    assert match_action("Open door", actions).action == "open the door"
    assert match_action("take the key", actions) == Match("take a key", "normalised", 1.0, 1)
    assert match_action("go to the kitchen", actions).kind == "normalised"


def test_first_matching_line_wins() -> None:
    # A completion model continues the transcript: the first line is its answer.
    assert match_action("go forward\nturn left", BABYAI).action == "go forward"
    # A chatty model: the exact line comes after a preamble.
    m = match_action("Sure! Here is my move.\nturn right", BABYAI)
    assert (m.action, m.kind) == ("turn right", "exact")


def test_nearest_contained_prefers_longest_then_first() -> None:
    actions = ("pick up", "pick up the key", "drop the key")
    m = match_action("I think I should pick up the key now", actions)
    assert (m.action, m.kind, m.score) == ("pick up the key", "nearest", 1.0)
    # "turn right" and "go forward" are equally long: the one mentioned first wins.
    m = match_action("either drop or toggle; I choose turn right then go forward", BABYAI)
    assert (m.action, m.kind) == ("turn right", "nearest")
    m = match_action("either drop or toggle; I choose go forward then turn right", BABYAI)
    assert m.action == "go forward"


def test_nearest_typos() -> None:
    m = match_action("trun rihgt", BABYAI)
    assert m.action == "turn right" and m.kind == "nearest" and 0.0 < m.score < 1.0
    assert match_action("pikc up", BABYAI).action == "pick up"
    assert match_action("forwards", BABYAI).action == "go forward"


def test_nearest_word_overlap() -> None:
    actions = ("move to kitchen", "move to hallway", "open door to kitchen", "look around")
    m = match_action("I want to go into the hallway", actions)
    assert m.action == "move to hallway" and m.kind == "nearest"


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "...", "```\n```"])
def test_empty_answer_gives_first_action_with_score_zero(text: str) -> None:
    assert match_action(text, BABYAI) == Match("turn left", "nearest", 0.0, 0)


def test_always_admissible_and_deterministic() -> None:
    texts = ["xyzzy", "42", "Ω≈ç√", "a" * 2000, "the the the", "left right left right", "pick"]
    for text in texts:
        m = match_action(text, BABYAI)
        assert m.action in BABYAI and m.kind in MATCH_KINDS and 0.0 <= m.score <= 1.0
        assert BABYAI[m.index] == m.action
        assert match_action(text, BABYAI) == m


def test_duplicate_normal_forms_take_list_order() -> None:
    actions = ("take the key", "take a key")
    assert match_action("Take key", actions).action == "take the key"
    assert match_action("take a key", actions) == Match("take a key", "exact", 1.0, 1)


def test_empty_admissible_raises() -> None:
    with pytest.raises(ValueError, match="admissible_actions is empty"):
        match_action("turn left", [])


def test_normalise_and_extract_lines() -> None:
    assert normalise("  Pick up THE red-key. ") == "pick up red key"
    assert normalise("An apple, a pear") == "apple pear"
    assert normalise("ＴＵＲＮ left") == "turn left"  # full-width letters fold (NFKC)
    assert extract_lines("Action: go forward.\n\n* drop\n```") == ["go forward", "drop"]


def test_large_action_list_is_fast() -> None:
    # ScienceWorld offers thousands of actions; matching a rambling answer must stay cheap.
    objects = [f"{c} {o}" for c in ("red", "blue", "green", "orange", "yellow") for o in ("cup", "jar", "wire", "battery")]
    rooms = ["kitchen", "hallway", "workshop", "greenhouse", "bathroom", "outside", "art studio", "bedroom"]
    actions = [f"{verb} {obj} {prep} {room}" for verb in ("move", "put", "pour", "focus on", "connect")
               for obj in objects for prep in ("in", "to") for room in rooms]
    actions += [f"open door to {r}" for r in rooms]
    assert len(actions) > 1500
    t0 = time.perf_counter()
    m = match_action("I should probably open the door to the greenhouse first", actions)
    elapsed = time.perf_counter() - t0
    assert m.action == "open door to greenhouse"
    assert elapsed < 1.0, elapsed
    m = match_action("mvoe the red cpu in kitchen", actions)
    assert m.action == "move red cup in kitchen"
