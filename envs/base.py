"""The text observation that every LONDI environment produces and every text policy consumes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from gymnasium import spaces

#: Size of the byte buffer that carries the observation text in the gymnasium observation.
TEXT_BYTES = 2048


@dataclass(frozen=True)
class TextObservation:
    """What a text policy sees at one step.

    Attributes:
        goal: the mission or task description.
        text: the current observation text (what the agent sees now).
        admissible_actions: the actions the policy may choose from, as strings.
        history: the recent ``(observation text, action taken)`` pairs, oldest first.
        inventory: what the agent carries, where the game has it ("" otherwise).
        look: a description of the surroundings, where the game has it ("" otherwise).
        step: the index of this step in the episode (0 at reset).
        oracle_action: the expert's action for this state, **an oracle label**. It is
            filled only by environments that run an expert alongside (BabyAI bot,
            TextWorld policy commands, ScienceWorld gold path) and is meant for labels,
            upper bounds and controlled experiments; LMs never see it.
    """

    goal: str
    text: str
    admissible_actions: tuple[str, ...]
    history: tuple[tuple[str, str], ...] = ()
    inventory: str = ""
    look: str = ""
    step: int = 0
    oracle_action: str | None = field(default=None, compare=False)

    @property
    def last_action(self) -> str | None:
        """The action taken at the previous step, or ``None`` at the start of an episode."""
        return self.history[-1][1] if self.history else None


def text_space(n_bytes: int = TEXT_BYTES) -> spaces.Box:
    """A checker-friendly observation space that carries UTF-8 text as zero-padded bytes."""
    return spaces.Box(low=0, high=255, shape=(n_bytes,), dtype=np.uint8)


def encode_text(text: str, n_bytes: int = TEXT_BYTES) -> np.ndarray:
    """Encode ``text`` as a zero-padded ``uint8`` array (cut at ``n_bytes`` on a character boundary)."""
    raw = text.encode("utf-8")[:n_bytes]
    raw = raw.decode("utf-8", errors="ignore").encode("utf-8")
    out = np.zeros(n_bytes, dtype=np.uint8)
    out[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return out


def decode_text(array: np.ndarray) -> str:
    """Inverse of :func:`encode_text`."""
    raw = np.asarray(array, dtype=np.uint8).tobytes()
    return raw.rstrip(b"\x00").decode("utf-8", errors="ignore")


def resolve_action(action: str | int, admissible: tuple[str, ...] | list[str]) -> str:
    """A command string as is, or an index into ``admissible`` turned into its command.

    Raises:
        ValueError: an index out of range or a value that is neither.
    """
    if isinstance(action, str):
        return action
    if not isinstance(action, (int, np.integer)) or not 0 <= int(action) < len(admissible):
        raise ValueError(f"action must be a command string or an index in [0, {len(admissible)}), got {action!r}")
    return admissible[int(action)]
