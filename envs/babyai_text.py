"""BabyAI-Text: Minigrid's BabyAI levels rendered as text, the way GLAM's BabyAI-Text does.

Env card
--------
Mission
    The BabyAI instruction, e.g. ``go to the red ball`` or ``put the blue key next to the grey box``.
Observation
    Text. The agent's partial 7x7 view is described from its own point of view: one line per
    visible object or door with its egocentric step offsets ("You see a red ball 1 step left and
    2 steps forward", "You see a locked blue door 3 steps forward"), the nearest wall straight
    ahead, to the left and to the right ("You see a wall 2 steps left"), and what the agent
    carries ("You carry a green key"). The gymnasium observation is the text as zero-padded
    UTF-8 bytes (``Box(0, 255, (2048,), uint8)``, see :func:`londi.envs.base.decode_text`), so
    that gymnasium's and stable-baselines3's checkers accept it; ``info["text_obs"]`` carries the
    full :class:`~londi.envs.base.TextObservation` (goal, text, admissible actions, history).
Action space
    ``Discrete(6)``: ``turn left, turn right, go forward, pick up, drop, toggle`` (the strings are
    in :attr:`BabyAITextEnv.action_names`; :meth:`BabyAITextEnv.action_index` maps back).
Reward
    Minigrid's: ``1 - 0.9 * steps / max_steps`` when the mission is achieved, else 0.
Termination
    ``terminated`` when the mission succeeds or fails (e.g. the wrong object picked up);
    ``truncated`` when the level's step limit is reached.
Expert
    With ``expert=True`` (the default) Minigrid's ``BabyAIBot`` runs alongside and is told the
    action actually taken at every step, whichever policy chose it. Its advice is put in
    ``TextObservation.oracle_action`` and ``info["oracle_action"]``: **an oracle label**, never
    shown to the LMs.
Registered ids
    ``londi/BabyAIText-<Level>-v<N>`` for every ``BabyAI-<Level>-v<N>`` that Minigrid registers
    (e.g. ``londi/BabyAIText-GoToLocal-v0``), plus ``londi/BabyAIText-MixedTrainLocal-v0``, which
    draws one of several single-room levels per episode (in the spirit of GLAM's MixedTrainLocal).
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from minigrid.core.constants import COLOR_NAMES, IDX_TO_COLOR, IDX_TO_OBJECT, STATE_TO_IDX

from londi.core.errors import UnknownChoiceError
from londi.envs.base import TEXT_BYTES, TextObservation, encode_text, text_space

logger = logging.getLogger(__name__)

#: The six text actions, in Minigrid's action order (``done`` is not offered, as in GLAM).
ACTION_NAMES: tuple[str, ...] = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")

#: Levels mixed by ``londi/BabyAIText-MixedTrainLocal-v0``: single-room go-to, pick-up and put-next.
MIXED_TRAIN_LOCAL_LEVELS: tuple[str, ...] = ("GoToLocal", "PickupLoc", "PutNextLocal")

_IDX_TO_STATE = {v: k for k, v in STATE_TO_IDX.items()}
_OBJECTS = {"ball", "box", "key", "door"}
_DONE = 6  # Minigrid's 'done' action; the bot may suggest it once it believes the mission done.


def _steps(n: int, word: str) -> str:
    return f"{n} step{'s' if n != 1 else ''} {word}"


def describe_offset(dx: int, dy: int) -> str:
    """Egocentric offset in words: ``dx`` steps to the right (negative: left), ``dy`` forward."""
    parts = []
    if dx < 0:
        parts.append(_steps(-dx, "left"))
    elif dx > 0:
        parts.append(_steps(dx, "right"))
    if dy > 0:
        parts.append(_steps(dy, "forward"))
    return " and ".join(parts)


def describe_view(image: np.ndarray, carrying: Any | None = None) -> list[str]:
    """Describe a Minigrid egocentric view (``(V, V, 3)`` encoded image) as GLAM-style lines.

    The agent sits at ``(V // 2, V - 1)`` facing "up" (decreasing row index), which is how
    Minigrid's ``gen_obs`` rotates the view.
    """
    size = image.shape[0]
    ax, ay = size // 2, size - 1
    lines: list[str] = []
    # Nearest wall straight ahead, to the left and to the right.
    walls: dict[str, int] = {}
    for name, (sx, sy) in {"forward": (0, -1), "left": (-1, 0), "right": (1, 0)}.items():
        x, y, n = ax + sx, ay + sy, 1
        while 0 <= x < size and 0 <= y < size:
            obj = IDX_TO_OBJECT[int(image[x, y, 0])]
            if obj == "wall":
                walls[name] = n
                break
            if obj == "unseen" or obj in _OBJECTS:
                break
            x, y, n = x + sx, y + sy, n + 1
    for name in ("forward", "left", "right"):
        if name in walls:
            lines.append(f"You see a wall {_steps(walls[name], name)}")
    # Objects and doors, nearest first.
    found = []
    for x in range(size):
        for y in range(size):
            if (x, y) == (ax, ay):
                continue  # the agent's own cell shows what it carries
            obj = IDX_TO_OBJECT[int(image[x, y, 0])]
            if obj not in _OBJECTS:
                continue
            color = IDX_TO_COLOR[int(image[x, y, 1])]
            dx, dy = x - ax, ay - y
            if obj == "door":
                state = _IDX_TO_STATE[int(image[x, y, 2])]
                what = f"{state} {color} door"
            else:
                what = f"{color} {obj}"
            found.append((abs(dx) + dy, dy, dx, f"You see a {what} {describe_offset(dx, dy)}"))
    lines.extend(line for *_, line in sorted(found))
    if carrying is not None:
        lines.append(f"You carry a {carrying.color} {carrying.type}")
    return lines


_MISSION_OBJECT = rf"(?:({'|'.join(COLOR_NAMES)}) )?(ball|box|key|door)"
_MISSION_RE = re.compile(rf"^(go to|pick up|put) (?:the|a) {_MISSION_OBJECT}(?: next to (?:the|a) {_MISSION_OBJECT})?")


def mission_target(goal: str, text: str) -> tuple[str | None, str] | None:
    """The object the agent should head for now, as ``(colour or None, type)``, read from the
    mission and the text observation alone (no privileged state).

    ``go to X`` and ``pick up X [location]``: X. ``put X next to Y``: X until the agent carries
    it ("You carry a X" in ``text``), then Y. ``None`` for other missions (open a door,
    sequences). The location words of PickupLoc ("on your left") are not resolved: they refer to
    the agent's pose at the start of the episode.
    """
    m = _MISSION_RE.match(goal.strip())
    if m is None:
        return None
    verb, first, second = m.group(1), (m.group(2), m.group(3)), (m.group(4), m.group(5))
    if verb == "put" and second[1] is not None:
        colour, kind = first
        carried = re.search(r"You carry a (\w+) (\w+)", text)
        if carried and carried.group(2) == kind and colour in (None, carried.group(1)):
            return second
    return first


def matches_target(line: str, target: tuple[str | None, str]) -> bool:
    """Whether a "You see a ..." line of the text observation shows an object matching ``target``."""
    colour, kind = target
    m = re.match(r"You see an? (?:(?:open|closed|locked) )?(\w+) (\w+) ", line.strip() + " ")
    return bool(m) and m.group(2) == kind and colour in (None, m.group(1))


_OFFSET_RE = re.compile(r"(\d+) steps? (left|right|forward)")


def target_offset(goal: str, text: str) -> tuple[int, int] | None:
    """Where the mission's current target (:func:`mission_target`) is in view, read from the
    text alone: ``(dx, dy)`` of the nearest matching object (``dx`` steps to the right, negative
    to the left; ``dy`` forward), or ``None`` when none is in view or the mission has no target."""
    target = mission_target(goal, text)
    if target is None:
        return None
    best = None
    for line in text.splitlines():
        if not matches_target(line, target):
            continue
        dx = dy = 0
        for n, word in _OFFSET_RE.findall(line.split(target[1], 1)[1]):
            if word == "forward":
                dy = int(n)
            else:
                dx = int(n) if word == "right" else -int(n)
        if best is None or abs(dx) + dy < abs(best[0]) + best[1]:
            best = (dx, dy)
    return best


class BabyAITextEnv(gym.Env):
    """A BabyAI level as a text game. See the module docstring for the env card.

    Args:
        level: a BabyAI level name as Minigrid registers it without prefix and version
            (``"GoToLocal"``), a full Minigrid id (``"BabyAI-GoToLocal-v0"``), or
            ``"MixedTrainLocal"``.
        levels: for a mixed env, the levels to draw from (default :data:`MIXED_TRAIN_LOCAL_LEVELS`).
        expert: run Minigrid's ``BabyAIBot`` alongside and expose its advice as an oracle label.
        history_length: how many past ``(observation, action)`` pairs the text observation keeps.
        max_steps: override the level's step limit.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        level: str = "GoToLocal",
        *,
        levels: tuple[str, ...] | None = None,
        expert: bool = True,
        history_length: int = 3,
        max_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if history_length < 0:
            raise ValueError(f"history_length must be >= 0, got {history_length}")
        if max_steps is not None and max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        self.expert = expert
        self.history_length = history_length
        self._max_steps_override = max_steps
        if level == "MixedTrainLocal":
            names = tuple(levels or MIXED_TRAIN_LOCAL_LEVELS)
        else:
            if levels is not None:
                raise ValueError("'levels' is only for level='MixedTrainLocal'")
            names = (level,)
        self.level = level
        self._envs = {name: gym.make(minigrid_id(name), max_steps=max_steps).unwrapped for name in names}
        self.levels = names
        self.action_names = ACTION_NAMES
        self.action_space = spaces.Discrete(len(ACTION_NAMES))
        self.observation_space = text_space(TEXT_BYTES)
        self._env = self._envs[names[0]]
        self._bot = None
        self._history: deque[tuple[str, str]] = deque(maxlen=max(history_length, 1))
        self._text_obs: TextObservation | None = None
        self._steps = 0

    # ------------------------------------------------------------------ helpers
    def action_index(self, action: str) -> int:
        """The index of a text action; a clear error for anything else."""
        try:
            return ACTION_NAMES.index(action)
        except ValueError:
            raise UnknownChoiceError("BabyAI action", action, ACTION_NAMES) from None

    @property
    def mission(self) -> str:
        return self._env.mission

    @property
    def max_steps(self) -> int:
        return int(self._env.max_steps)

    @property
    def current_level(self) -> str:
        """The level of the current episode (useful for the mixed env)."""
        return next(n for n, e in self._envs.items() if e is self._env)

    def _oracle(self, action_taken: int | None) -> str | None:
        if self._bot is None:
            return None
        try:
            suggestion = self._bot.replan(action_taken)
        except Exception as exc:  # the bot gives up in states it cannot plan from
            logger.debug("BabyAIBot failed (%s); restarting it from the current state", exc)
            try:
                from minigrid.utils.baby_ai_bot import BabyAIBot

                self._bot = BabyAIBot(self._env)
                suggestion = self._bot.replan()
            except Exception:
                self._bot = None
                return None
        if int(suggestion) == _DONE or int(suggestion) >= len(ACTION_NAMES):
            return None
        return ACTION_NAMES[int(suggestion)]

    def _make_obs(self, oracle: str | None, grid_obs: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """The text observation of ``grid_obs``, the Minigrid observation that the last reset or step returned."""
        lines = describe_view(grid_obs["image"], self._env.carrying)
        text = "\n".join(lines)
        carrying = self._env.carrying
        self._text_obs = TextObservation(
            goal=self.mission,
            text=text,
            admissible_actions=ACTION_NAMES,
            history=tuple(self._history) if self.history_length else (),
            inventory=f"a {carrying.color} {carrying.type}" if carrying is not None else "nothing",
            step=self._steps,
            oracle_action=oracle,
        )
        info = {
            "text_obs": self._text_obs,
            "admissible_actions": list(ACTION_NAMES),
            "oracle_action": oracle,
            "level": self.current_level,
            "mission": self.mission,
        }
        return encode_text(f"Goal of the agent: {self.mission}\n{text}"), info

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if len(self.levels) > 1:
            self._env = self._envs[self.levels[int(self.np_random.integers(len(self.levels)))]]
        else:
            self._env = self._envs[self.levels[0]]
        sub_seed = int(self.np_random.integers(2**31 - 1))
        # Minigrid prints every rejected level sample; keep stdout for the user's own output.
        with contextlib.redirect_stdout(io.StringIO()):
            grid_obs, _ = self._env.reset(seed=sub_seed)
        self._history.clear()
        self._steps = 0
        self._bot = None
        if self.expert:
            from minigrid.utils.baby_ai_bot import BabyAIBot

            self._bot = BabyAIBot(self._env)
        obs, info = self._make_obs(self._oracle(None), grid_obs)
        return obs, info

    def step(self, action):
        if isinstance(action, str):
            action = self.action_index(action)
        action = int(action)
        if not 0 <= action < len(ACTION_NAMES):
            raise ValueError(f"action must be in [0, {len(ACTION_NAMES)}), got {action}")
        prev_text = self._text_obs.text if self._text_obs is not None else ""
        # Minigrid's step already rendered the agent's view: it is reused, not generated again
        grid_obs, reward, terminated, truncated, _ = self._env.step(action)
        self._steps += 1
        self._history.append((prev_text, ACTION_NAMES[action]))
        oracle = None if (terminated or truncated) else self._oracle(action)
        obs, info = self._make_obs(oracle, grid_obs)
        info["success"] = bool(terminated and reward > 0)
        return obs, float(reward), bool(terminated), bool(truncated), info

    def render(self):
        if self.render_mode == "ansi" and self._text_obs is not None:
            return f"Goal of the agent: {self.mission}\n{self._text_obs.text}"
        return None

    @property
    def text_observation(self) -> TextObservation:
        """The current :class:`TextObservation` (also in ``info['text_obs']``)."""
        if self._text_obs is None:
            raise RuntimeError("call reset() first")
        return self._text_obs


def minigrid_id(level: str) -> str:
    """Map a level name (``GoToLocal``) or Minigrid id to the registered Minigrid id."""
    ids = babyai_level_ids()
    if level in ids.values():
        return level
    if level in ids:
        return ids[level]
    raise UnknownChoiceError("BabyAI level", level, list(ids) + ["MixedTrainLocal"])


def babyai_level_ids() -> dict[str, str]:
    """``{level name: Minigrid id}`` for every BabyAI level that Minigrid registers."""
    import minigrid  # noqa: F401 - registers the BabyAI ids

    out: dict[str, str] = {}
    for env_id in gym.registry:
        if env_id.startswith("BabyAI-"):
            name = env_id[len("BabyAI-"):].rsplit("-v", 1)[0]
            out.setdefault(name, env_id)
    return out


__all__ = [
    "ACTION_NAMES",
    "BabyAITextEnv",
    "COLOR_NAMES",
    "MIXED_TRAIN_LOCAL_LEVELS",
    "babyai_level_ids",
    "describe_offset",
    "describe_view",
    "matches_target",
    "target_offset",
    "minigrid_id",
    "mission_target",
]
