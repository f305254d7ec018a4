"""Prompts that LM policies see: the goal, the recent observations and actions, the choices.

One prompt format serves every backend (in-project LMs, Hugging Face checkpoints, HTTP
servers), so that a model trained here and a served LLM are asked the same question.
"""
from __future__ import annotations

from londi.envs.base import TextObservation


def _one_line(text: str) -> str:
    return ". ".join(line.strip() for line in text.splitlines() if line.strip())


def build_prompt(
    obs: TextObservation,
    *,
    history_length: int = 3,
    list_actions: bool = True,
    max_listed_actions: int = 50,
) -> str:
    """The prompt for ``obs``; the model's answer (the action) follows ``"Action:"``.

    Format::

        Goal of the agent: go to the red ball
        Possible actions: turn left, turn right, go forward, pick up, drop, toggle
        Observation: You see a wall 2 steps forward. You see a red ball 1 step left
        Action: turn left
        Observation: ...
        Action:

    Args:
        obs: the current observation.
        history_length: how many past ``(observation, action)`` pairs to include.
        list_actions: include the admissible actions (needed by generating models; scoring
            models may leave it out to keep prompts short).
        max_listed_actions: list at most this many actions (ScienceWorld has thousands).
    """
    if history_length < 0:
        raise ValueError(f"history_length must be >= 0, got {history_length}")
    lines = [f"Goal of the agent: {obs.goal.strip()}"]
    if list_actions:
        shown = list(obs.admissible_actions[:max_listed_actions])
        more = len(obs.admissible_actions) - len(shown)
        lines.append("Possible actions: " + ", ".join(shown) + (f", ... ({more} more)" if more > 0 else ""))
    if obs.inventory and obs.inventory not in ("nothing",):
        lines.append(f"Inventory: {_one_line(obs.inventory)}")
    history = obs.history[-history_length:] if history_length else ()
    for past_text, past_action in history:
        lines.append(f"Observation: {_one_line(past_text)}")
        lines.append(f"Action: {past_action}")
    lines.append(f"Observation: {_one_line(obs.text)}")
    lines.append("Action:")
    return "\n".join(lines)
