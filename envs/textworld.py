"""TextWorld: games made with ``tw-make`` (or any Z-machine game file) as a Gymnasium env.

Env card
--------
Mission
    The game's objective (``EnvInfos.objective``), e.g. ``... take the milk from the couch ...
    put the milk on the stove`` (``TextObservation.goal``).
Observation
    Text: the game's answer to the last command (``feedback``), with the trailing command prompt
    and status bar removed, and, after a reset, without the ASCII-art title. The gymnasium
    observation is ``"Goal: <objective>\\n<text>"`` as zero-padded UTF-8 bytes (``Box(0, 255,
    (2048,), uint8)``, see :func:`londi.envs.base.decode_text`); ``info["text_obs"]`` carries the
    full :class:`~londi.envs.base.TextObservation`: goal, text, ``look`` (the room description),
    ``inventory``, ``admissible_actions`` (TextWorld's admissible commands, requested through
    ``textworld.EnvInfos``), ``history`` and ``step``. ``info`` also has ``score``, ``max_score``,
    ``moves``, ``won``, ``lost``, ``success`` and ``game_file``.
Action space
    Free text (``gymnasium.spaces.Text``, printable ASCII without the backslash, up to 198
    characters, the interpreter's input buffer); the parser answers anything. Backslashes and control characters in a command
    become spaces (:func:`sanitize_command`): the Z-machine interpreter would read a backslash as
    one of its own escape commands (``\\q`` hangs it). ``step`` also takes an ``int``, an index
    into ``admissible_actions``.
Reward
    The change of the game's score since the previous step. TextWorld reports the *cumulative*
    score; this env pays out its differences, so the return of an episode is its final score.
Termination
    ``terminated`` when the game is won or lost; ``truncated`` after ``max_steps`` steps
    (default 100).
Games and seeds
    ``game_file`` plays one game; ``game_files`` (or ``challenge``) is a set, and the reset seed
    draws a game from it (``reset(options={"game": i})`` picks the i-th). Z-machine games
    (``.z1``-``.z8``) are supported; admissible commands, the score and the expert need the
    ``.json`` that ``tw-make`` writes next to the game (for other Z-machine games they come from
    Jericho only where Jericho supports the game; ``expert=False`` is then required). Glulx
    (``.ulx``) games cannot be played: textworld 1.7 removed Glulx support, so such a file is
    rejected with a clear error.
Expert
    With ``expert=True`` (the default) TextWorld's ``policy_commands`` are requested and their
    first command is ``TextObservation.oracle_action`` and ``info["oracle_action"]``: **an oracle
    label**. TextWorld replans the winning policy from the current game state after every command,
    so the expert stays correct whichever policy acted (it is ``None`` once the game is over).
Registered ids
    ``londi/TextWorld-v0`` takes ``game_file=`` or ``game_files=``. ``londi/TextWorld-Simple-v0``,
    ``-CoinCollector-v0``, ``-TreasureHunter-v0`` and ``-Cooking-v0`` play the seeded default set
    of ``scripts/make_textworld_games.py`` (:data:`CHALLENGES`, seeds 1-5; ``n_games=`` changes
    the count). Missing games are made with ``tw-make`` on first use (a few seconds per game)
    into ``$LONDI_CACHE_DIR/textworld`` (default ``~/.cache/londi/textworld``), never at
    registration.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from londi.core.errors import ConfigError, LondiError, UnknownChoiceError, check_choice
from londi.envs.base import TEXT_BYTES, TextObservation, encode_text, resolve_action, text_space

logger = logging.getLogger(__name__)

ID_PREFIX = "londi/TextWorld-"
DEFAULT_MAX_STEPS = 100
#: Printable ASCII without the backslash (see :func:`sanitize_command`).
ACTION_CHARSET = "".join(chr(c) for c in range(32, 127) if chr(c) != "\\")
#: Jericho's input buffer: it cuts longer commands (with a warning).
MAX_ACTION_CHARS = 198
# Jericho's dumb-frotz reads a backslash as the start of one of its own escape commands (``\q``
# hangs the interpreter), and a line break as the end of a command.
_UNSAFE_RE = re.compile(r"[\\\x00-\x1f\x7f]")
Z_MACHINE_EXTENSIONS: tuple[str, ...] = tuple(f".z{i}" for i in range(1, 9))

#: The seeded default set: ``{challenge: (tw-make subcommand, its options)}``. Each game is made
#: with ``--seed S`` (and, for cooking, ``--recipe-seed S``) for ``S`` in ``1..n_games``.
CHALLENGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "simple": ("tw-simple", ("--rewards", "dense", "--goal", "detailed")),
    "coin_collector": ("tw-coin_collector", ("--level", "5")),
    "treasure_hunter": ("tw-treasure_hunter", ("--level", "5")),
    "cooking": ("tw-cooking", ("--recipe", "2", "--take", "1", "--go", "6", "--open", "--cut")),
}
#: The registered id's name for each challenge.
CHALLENGE_IDS: dict[str, str] = {
    "simple": "Simple",
    "coin_collector": "CoinCollector",
    "treasure_hunter": "TreasureHunter",
    "cooking": "Cooking",
}
DEFAULT_N_GAMES = 5
FIRST_SEED = 1

# The ASCII-art title that opens a tw-make game: lines made of these characters only.
_BANNER_RE = re.compile(r"\A(?:[ \t_|\\$/<>]*\n)+")
_BLANK_LINES_RE = re.compile(r"\n{3,}")
_INDENT_RE = re.compile(r"(?m)^[ \t]+")  # centred lines such as "*** The End ***"


# ---------------------------------------------------------------------- game files
def default_cache_dir() -> Path:
    """Where the registered challenge ids keep their games: ``$LONDI_CACHE_DIR/textworld``,
    else ``$XDG_CACHE_HOME/londi/textworld``, else ``~/.cache/londi/textworld``."""
    root = os.environ.get("LONDI_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "textworld"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "londi" / "textworld"


def tw_make_executable() -> str:
    """The ``tw-make`` that the installed ``textworld`` package ships."""
    here = Path(sys.executable).parent / "tw-make"
    if here.is_file():
        return str(here)
    found = shutil.which("tw-make")
    if found is None:
        raise LondiError("tw-make not found; it ships with the 'textworld' package (pip install textworld)")
    return found


def settings_tag(challenge: str) -> str:
    """A short digest of what makes a default-set game: the challenge's ``tw-make`` options and
    the textworld version. It is part of the file names, so that a cached game made with other
    settings (or another textworld) is never taken for the current one."""
    check_choice("TextWorld challenge", challenge, CHALLENGES)
    try:
        version = importlib.metadata.version("textworld")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    sub, opts = CHALLENGES[challenge]
    return hashlib.sha1(" ".join([version, sub, *opts]).encode()).hexdigest()[:6]


def game_name(challenge: str, seed: int) -> str:
    """File stem of a default-set game, e.g. ``cooking-3f2a1b-s001`` (see :func:`settings_tag`)."""
    return f"{challenge}-{settings_tag(challenge)}-s{seed:03d}"


def tw_make_command(challenge: str, seed: int, output: Path) -> list[str]:
    """The ``tw-make`` command line that makes the default-set game of ``challenge`` and ``seed``."""
    check_choice("TextWorld challenge", challenge, CHALLENGES)
    sub, opts = CHALLENGES[challenge]
    cmd = [tw_make_executable(), sub, *opts, "--seed", str(seed)]
    if challenge == "cooking":
        cmd += ["--recipe-seed", str(seed)]
    return [*cmd, "--output", str(output), "--format", "z8", "-f", "--silent"]


def make_game(challenge: str, seed: int, out_dir: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Make one game of the default set with ``tw-make`` into ``out_dir``; return the ``.z8`` path.

    The files (``.z8``, ``.json``, ``.ni``) are written to a temporary folder and moved into
    place, the ``.z8`` last, so that a present ``.z8`` always has its ``.json``. An existing game
    is kept unless ``force``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = game_name(challenge, seed)
    target = out_dir / f"{stem}.z8"
    if not force and target.is_file() and target.with_suffix(".json").is_file():
        return target
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{stem}-") as tmp:
        cmd = tw_make_command(challenge, seed, Path(tmp) / f"{stem}.z8")
        logger.info("making TextWorld game %s: %s", stem, " ".join(cmd[1:]))
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not (Path(tmp) / f"{stem}.z8").is_file():
            tail = (proc.stderr or proc.stdout).strip()[-2000:]
            raise LondiError(f"tw-make failed for {stem} (exit {proc.returncode}): {tail}")
        for suffix in (".json", ".ni", ".z8"):
            src = Path(tmp) / f"{stem}{suffix}"
            if src.is_file():
                os.replace(src, out_dir / f"{stem}{suffix}")
    return target


def default_games(
    challenge: str, *, n_games: int = DEFAULT_N_GAMES, cache_dir: str | os.PathLike[str] | None = None
) -> list[Path]:
    """The ``n_games`` default-set games of ``challenge``, made on first use into the cache dir."""
    check_choice("TextWorld challenge", challenge, CHALLENGES)
    if n_games <= 0:
        raise ValueError(f"n_games must be positive, got {n_games}")
    out_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return [make_game(challenge, seed, out_dir) for seed in range(FIRST_SEED, FIRST_SEED + n_games)]


def resolve_game_file(path: str | os.PathLike[str]) -> Path:
    """Check a game file path; a clear error for a missing file or an unsupported format."""
    path = Path(path).expanduser()
    ext = path.suffix.lower()
    if ext == ".ulx":
        raise UnknownChoiceError(
            "TextWorld game format (Glulx support was removed in textworld 1.7; remake the game "
            "with tw-make, which writes .z8)",
            ext,
            Z_MACHINE_EXTENSIONS,
        )
    if ext not in Z_MACHINE_EXTENSIONS:
        raise UnknownChoiceError("TextWorld game format", ext or str(path), Z_MACHINE_EXTENSIONS)
    if not path.is_file():
        folder = path.parent if path.parent.is_dir() else default_cache_dir()
        found = sorted(str(p) for ext_ in Z_MACHINE_EXTENSIONS for p in folder.glob(f"*{ext_}")) if folder.is_dir() else []
        kind = "TextWorld game file"
        if not found:
            kind += f" (no games in {folder}; make some with scripts/make_textworld_games.py)"
        raise UnknownChoiceError(kind, str(path), found)
    return path.resolve()


def sanitize_command(command: str) -> str:
    """Replace backslashes and control characters by spaces: the interpreter would read a
    backslash as one of its own escape commands (``\\q`` hangs it) and a line break as the end of
    the command. Game commands never contain either."""
    if command.isprintable() and "\\" not in command:
        return command  # the common case, without the regex
    return _UNSAFE_RE.sub(" ", command)


def clean_feedback(text: str, *, first: bool = False) -> str:
    """Drop the prompt and status bar (and, for the first answer, the title art) from game text.

    Every answer ends with the command prompt ``>`` followed by the status bar on the same line;
    centred lines lose their indentation and runs of blank lines shrink to one."""
    # Cheap substring tests first: this runs every step and the regexes rarely have work to do.
    prompt = text.rfind(">")
    if prompt >= 0 and "\n" not in text[prompt:].rstrip():
        text = text[:prompt]  # the prompt line is the last line
    if first:
        text = _BANNER_RE.sub("", text)
    if "\n " in text or "\n\t" in text:
        text = _INDENT_RE.sub("", text)
    if "\n\n\n" in text:
        text = _BLANK_LINES_RE.sub("\n\n", text)
    return text.strip()


# ---------------------------------------------------------------------- the env
class TextWorldTextEnv(gym.Env):
    """A TextWorld game (or a set of games) as a Gymnasium text env. See the module docstring.

    Give exactly one of ``game_file``, ``game_files`` and ``challenge``.

    Args:
        game_file: a ``.z8`` (or other Z-machine) game file.
        game_files: several game files; the reset seed draws one per episode.
        challenge: a default-set challenge (:data:`CHALLENGES`); its ``n_games`` games are made
            with ``tw-make`` into ``cache_dir`` on first use.
        n_games: how many default-set games (with ``challenge``).
        cache_dir: where default-set games live (default :func:`default_cache_dir`).
        expert: request ``policy_commands`` and expose the first one as an **oracle** label.
        max_steps: ``truncated`` after this many steps.
        history_length: how many past ``(observation, action)`` pairs the text observation keeps.
        render_mode: ``None`` or ``"ansi"``.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        game_file: str | os.PathLike[str] | None = None,
        *,
        game_files: Sequence[str | os.PathLike[str]] | None = None,
        challenge: str | None = None,
        n_games: int = DEFAULT_N_GAMES,
        cache_dir: str | os.PathLike[str] | None = None,
        expert: bool = True,
        max_steps: int = DEFAULT_MAX_STEPS,
        history_length: int = 3,
        render_mode: str | None = None,
    ) -> None:
        given = [name for name, v in (("game_file", game_file), ("game_files", game_files), ("challenge", challenge)) if v is not None]
        if len(given) != 1:
            raise ConfigError(
                "give exactly one of game_file=, game_files= or challenge= "
                f"(challenges: {', '.join(CHALLENGES)}); got {given or 'none'}"
            )
        if max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        if history_length < 0:
            raise ValueError(f"history_length must be >= 0, got {history_length}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        if challenge is not None:
            check_choice("TextWorld challenge", challenge, CHALLENGES)
            files = default_games(challenge, n_games=n_games, cache_dir=cache_dir)
        elif game_file is not None:
            files = [game_file]
        else:
            if isinstance(game_files, (str, os.PathLike)) or not game_files:
                raise ConfigError("game_files must be a non-empty sequence of game file paths")
            files = list(game_files)
        self.game_files: tuple[Path, ...] = tuple(resolve_game_file(f) for f in files)
        if expert:
            for f in self.game_files:
                if not f.with_suffix(".json").is_file():
                    raise ConfigError(
                        f"expert=True needs the .json that tw-make writes next to {f.name}; "
                        "pass expert=False to play other Z-machine games"
                    )
        self.challenge = challenge
        self.expert = bool(expert)
        self.max_steps = int(max_steps)
        self.history_length = int(history_length)
        self.render_mode = render_mode
        self.action_space = spaces.Text(MAX_ACTION_CHARS, charset=ACTION_CHARSET)
        self.observation_space = text_space(TEXT_BYTES)

        self._env: Any = None  # the textworld Environment of the current game
        self._game: Path | None = None
        self._game_str = ""
        self._history: deque[tuple[str, str]] = deque(maxlen=max(self.history_length, 1))
        self._text_obs: TextObservation | None = None
        self._state: Any = None
        self._score = 0
        self._steps = 0

    # ------------------------------------------------------------------ helpers
    def request_infos(self) -> Any:
        """The ``textworld.EnvInfos`` this env asks the game for."""
        import textworld

        return textworld.EnvInfos(
            feedback=True,
            description=True,
            inventory=True,
            objective=True,
            admissible_commands=True,
            policy_commands=self.expert,
            score=True,
            max_score=True,
            moves=True,
            won=True,
            lost=True,
        )

    def _open(self, game: Path) -> Any:
        if self._env is not None and self._game == game:
            return self._env
        import textworld

        if self._env is not None:
            self._env.close()
        with warnings.catch_warnings():
            if game.with_suffix(".json").is_file():
                # tw-make's games are not in Jericho's list of supported games, which only means
                # Jericho's own score tracking is off (TextWorld tracks it); textworld silences
                # this warning at import, but warning filters set later (pytest's) undo that.
                warnings.filterwarnings("ignore", message=".*is not fully supported.*")
            self._env = textworld.start(str(game), request_infos=self.request_infos())
        self._game = game
        self._game_str = str(game)
        return self._env

    def _make_obs(self, text: str, oracle: str | None) -> tuple[np.ndarray, dict[str, Any]]:
        state = self._state
        goal = state.get("objective") or ""
        admissible = state.get("admissible_commands") or []
        self._text_obs = TextObservation(
            goal=goal,
            text=text,
            admissible_actions=tuple(admissible),
            history=tuple(self._history) if self.history_length else (),
            inventory=(state.get("inventory") or "").strip(),
            look=(state.get("description") or "").strip(),
            step=self._steps,
            oracle_action=oracle,
        )
        won = bool(state.get("won"))
        info = {
            "text_obs": self._text_obs,
            "admissible_actions": list(admissible),
            "oracle_action": oracle,
            "score": self._score,
            "max_score": state.get("max_score"),
            "moves": state.get("moves"),
            "won": won,
            "lost": bool(state.get("lost")),
            "success": won,
            "game_file": self._game_str,
        }
        return encode_text(f"Goal: {goal}\n{text}"), info

    def _oracle(self) -> str | None:
        if not self.expert:
            return None
        policy = self._state.get("policy_commands")
        return policy[0] if policy else None

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"game"}
        if unknown:
            raise UnknownChoiceError("TextWorld reset option", min(unknown), ["game"])
        choice = options.get("game")
        if choice is None:
            game = self.game_files[int(self.np_random.integers(len(self.game_files)))]
        elif isinstance(choice, (int, np.integer)):
            if not 0 <= int(choice) < len(self.game_files):
                raise ValueError(f"options['game'] must be in [0, {len(self.game_files)}), got {choice}")
            game = self.game_files[int(choice)]
        else:
            game = resolve_game_file(choice)
            if game not in self.game_files:
                raise UnknownChoiceError("TextWorld game of this env", str(choice), [str(g) for g in self.game_files])
        env = self._open(game)
        self._state = env.reset()
        self._score = int(self._state.get("score") or 0)
        self._history.clear()
        self._steps = 0
        return self._make_obs(clean_feedback(self._state["feedback"], first=True), self._oracle())

    def step(self, action: str | int):
        if self._text_obs is None or self._env is None:
            raise RuntimeError("call reset() before step()")
        action = resolve_action(action, self._text_obs.admissible_actions)
        prev_text = self._text_obs.text
        self._state, score, done = self._env.step(sanitize_command(action))
        # TextWorld reports the cumulative score; the reward is its change.
        score = self._score if score is None else int(score)
        reward = float(score - self._score)
        self._score = score
        self._steps += 1
        self._history.append((prev_text, action))
        terminated = bool(done)
        truncated = not terminated and self._steps >= self.max_steps
        oracle = None if (terminated or truncated) else self._oracle()
        obs, info = self._make_obs(clean_feedback(self._state["feedback"]), oracle)
        return obs, reward, terminated, truncated, info

    def render(self):
        if self.render_mode == "ansi" and self._text_obs is not None:
            return f"Goal: {self._text_obs.goal}\n{self._text_obs.text}"
        return None

    def close(self) -> None:
        """Close the game interpreter. Safe to call more than once."""
        if self._env is not None:
            self._env.close()
        self._env = None
        self._game = None
        self._game_str = ""
        self._text_obs = None

    # ------------------------------------------------------------------ accessors
    @property
    def text_observation(self) -> TextObservation:
        """The current :class:`TextObservation` (also in ``info['text_obs']``)."""
        if self._text_obs is None:
            raise RuntimeError("call reset() first")
        return self._text_obs

    @property
    def game_file(self) -> Path | None:
        """The game of the current episode."""
        return self._game

    @property
    def walkthrough(self) -> list[str] | None:
        """The walkthrough ``tw-make`` stored with the current game (**oracle**), if any."""
        if self._state is None:
            return None
        walk = self._state.get("extra.walkthrough")
        return list(walk) if walk is not None else None


def register_textworld_envs() -> None:
    """Register ``londi/TextWorld-v0`` and one id per default-set challenge (no game is made)."""
    entry = "londi.envs.textworld:TextWorldTextEnv"
    if f"{ID_PREFIX}v0" not in gym.registry:
        gym.register(id=f"{ID_PREFIX}v0", entry_point=entry)
    for challenge, name in CHALLENGE_IDS.items():
        env_id = f"{ID_PREFIX}{name}-v0"
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry, kwargs={"challenge": challenge})


__all__ = [
    "CHALLENGES",
    "CHALLENGE_IDS",
    "DEFAULT_MAX_STEPS",
    "ID_PREFIX",
    "TextWorldTextEnv",
    "clean_feedback",
    "default_cache_dir",
    "default_games",
    "game_name",
    "make_game",
    "register_textworld_envs",
    "resolve_game_file",
    "sanitize_command",
    "settings_tag",
    "tw_make_command",
    "tw_make_executable",
]
