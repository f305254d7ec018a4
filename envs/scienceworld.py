"""ScienceWorld: the ``scienceworld`` package's 30 elementary-science tasks as a Gymnasium env.

Env card
--------
Mission
    The task description the simulator gives for the chosen task and variation, e.g. ``Your task
    is to boil water. ...`` (``TextObservation.goal``).
Observation
    Text: the simulator's answer to the last action (after a reset, the answer to ``look
    around``). The gymnasium observation is ``"Task: <goal>\\n<text>"`` as zero-padded UTF-8 bytes
    (``Box(0, 255, (2048,), uint8)``, see :func:`londi.envs.base.decode_text`); ``info["text_obs"]``
    carries the full :class:`~londi.envs.base.TextObservation`: goal, text, ``look`` (the free
    ``look around``), ``inventory``, ``admissible_actions`` (the simulator's valid action-object
    combinations, fetched **once per step** and cached in the observation), ``history`` and
    ``step``. ``info`` also has ``score`` (0-100; -100 after a failure), ``moves``, ``task``,
    ``variation``, ``split``, ``simplifications``, ``success`` and ``env_crashed``.
Action space
    Free text (``gymnasium.spaces.Text``, printable ASCII but the backslash, up to 256
    characters): ScienceWorld's
    parser accepts any command, and its list of valid actions is a hint, not the action set
    (:attr:`TextObservation.admissible_actions` does **not** contain every command the simulator
    accepts; see *Expert*). ``step`` also takes an ``int``, an index into the current
    ``admissible_actions``.
Reward
    The change of the simulator's score (0-100) since the previous step, as the package computes
    it. Points the score may already hold after the reset's ``look around`` are not paid out as
    reward; ``info["score"]`` is the absolute score.
Termination
    ``terminated`` when the package says the episode is done: the task is completed or failed
    (a negative score, e.g. focusing on the wrong object). ``truncated`` after ``max_steps`` calls
    to :meth:`~ScienceWorldTextEnv.step`, and after a crash of the simulator's JVM
    (``info["env_crashed"] = True``; the next :meth:`reset` starts a fresh JVM). The default
    ``max_steps`` is the package's default step limit, 100, except for the tasks whose gold paths
    can be longer (:data:`TASK_MAX_STEPS`: the longest gold path measured over evenly spaced
    variations of all three splits, with a margin; ``docs/benchmarks.md`` has the table), so
    that the default limit never cuts the oracle short.
Splits and seeds
    ``split`` is ``"train"``, ``"dev"`` or ``"test"`` (the package's variation splits); the reset
    seed draws a variation of that split. ``reset(options={"variation": i})`` picks one directly
    (it must belong to the split).
Simplifications
    Default ``"easy"`` (all of the package's simplifications: teleport actions, self-watering
    flower pots, open containers and doors, no electrical actions except where the task needs
    them), as SwiftSage and most LM agents on ScienceWorld use. Pass ``""`` for none, or names
    from :data:`SIMPLIFICATIONS`.
Expert
    With ``expert=True`` (the default) the package's gold path (``get_gold_action_sequence``) is
    generated at each reset, and ``TextObservation.oracle_action`` / ``info["oracle_action"]``
    carry **an oracle label**: the next gold action *while the agent has followed the gold path
    so far*; once the agent deviates it is ``None`` for the rest of the episode, because the gold
    path is an open-loop plan that does not replan. ``info["gold_action"]`` is the gold command
    the label stands for.

    Many gold commands (about 23% over the 30 tasks) are not in the simulator's valid-action list,
    although the simulator accepts them. The label is therefore the gold action *as the valid
    list has it*, so that :class:`~londi.agents.expert.OracleExpert` and the switch, which only
    play admissible actions, can play it, and nothing is added to the candidates that LMs see
    (:mod:`londi.envs.scienceworld_gold` has the rules): a gold command spelled differently is
    mapped onto the valid action with the same verb and the same objects (``use thermometer in
    inventory on X`` -> ``use thermometer on X``, ``examine X`` -> ``look at X``); a gold no-op
    (``open X`` when X is open) is played as ``look at X``, which takes the same one tick of the
    simulator's clock; the gold path's answers (``0``) to ambiguity questions that were not
    asked are skipped, and a respelled label that the parser finds ambiguous is answered ``0``.

    The env advances its gold-path position when the agent plays the label, the gold command
    itself, or a skipped no-op, so ``oracle_action`` stays in sync with what is executed
    (replaying ``gold_path`` verbatim keeps the labels too). Three extra JVM calls (the list
    with object ids, the referent table and the object tree) are made only on steps whose gold
    command is not in the list. A gold command with no equivalent in
    the list and no no-op reading (none was left over the 30 tasks, 3 episodes each, see
    ``docs/benchmarks.md``) stays the label as it is: :class:`~londi.agents.expert.OracleExpert`
    refuses it and ``unlisted_gold_actions`` counts it. ``admit_oracle_action=True`` (off by
    default, kept for old scripts) adds such a label to ``admissible_actions``; that leaks the
    oracle into the candidates, so it is for oracle-only runs, and no oracle bound needs it.
Determinism
    The simulator seeds each variation, but it is not fully deterministic from one load of a
    variation to the next (measured, see ``docs/benchmarks.md``): a room may list its objects in
    another order, look-alike objects may get other referent names in the valid-action list, and
    the gold path may differ (all gold paths reach 100). The wrapper passes the package's text
    through unchanged, so the same seed gives the same variation, not always the same text.
Registered ids
    ``londi/ScienceWorld-<task-name>-v0`` for each of the package's 30 task names (e.g.
    ``londi/ScienceWorld-boil-v0``); the JVM starts at the first :meth:`reset`, not at ``make``.
Processes
    The simulator runs in a JVM child process (py4j). :meth:`close` shuts it down and waits for
    it to exit (killing it if it does not); a crashed JVM is reaped and replaced at the next reset.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import subprocess
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from londi.core.errors import UnknownChoiceError, check_choice
from londi.envs.base import TEXT_BYTES, TextObservation, encode_text, resolve_action, text_space
from londi.envs.scienceworld_gold import GoldTable, follow_gold, object_parents, oracle_label

logger = logging.getLogger(__name__)

ID_PREFIX = "londi/ScienceWorld-"
SPLITS: tuple[str, ...] = ("train", "dev", "test")
#: The package's simplification names (``easy`` means all of them).
SIMPLIFICATIONS: tuple[str, ...] = (
    "easy",
    "teleportAction",
    "selfWateringFlowerPots",
    "openContainers",
    "openDoors",
    "noElectricalAction",
)
DEFAULT_SIMPLIFICATIONS = "easy"
#: The package's default step limit (``envStepLimit``).
DEFAULT_MAX_STEPS = 100
#: Default step limits of the tasks whose gold paths are, or come within a third of, longer than
#: :data:`DEFAULT_MAX_STEPS`: the longest gold path measured (2026-12-04: the variations of env
#: seeds 500000-500002 of the train split, each loaded twice, and
#: ``scripts/check_scienceworld_gold.py --lengths 4``, 4 evenly spaced variations of each split)
#: times 4/3, rounded up to a multiple of 50. The other tasks keep the package's 100 (their
#: longest measured, on the train variations only: 49, ``freeze``). ``--lengths K`` checks the
#: limits on more variations.
TASK_MAX_STEPS: dict[str, int] = {
    "boil": 200,  # longest gold path measured: 124
    "grow-plant": 150,  # 77
    "grow-fruit": 150,  # 97
    "measure-melting-point-unknown-substance": 150,  # 96
    "inclined-plane-determine-angle": 250,  # 170
    "inclined-plane-friction-named-surfaces": 1000,  # 747 (10 of the 12 scanned: 47-111)
    "inclined-plane-friction-unnamed-surfaces": 350,  # 229
    "mendelian-genetics-known-plant": 200,  # 145
    "mendelian-genetics-unknown-plant": 200,  # 148
}
#: Printable ASCII without the backslash: the characters of ScienceWorld's commands.
ACTION_CHARSET = "".join(chr(c) for c in range(32, 127) if chr(c) != "\\")
MAX_ACTION_CHARS = 256
#: How long :meth:`ScienceWorldTextEnv.close` waits for the JVM to exit before killing it.
_JVM_EXIT_TIMEOUT_S = 10.0

# Split variations per (task, simplifications): they are fixed by the package, so one lookup
# per process is enough.
_SPLIT_CACHE: dict[str, dict[str, tuple[int, ...]]] = {}


def scienceworld_tasks() -> dict[str, str]:
    """``{task id: task name}`` as the package lists them (``{"1-1": "boil", ...}``), in order.

    Read from the package's ``tasks.json`` without importing it (importing starts nothing, but
    pulls in py4j, and registration must stay cheap).
    """
    spec = importlib.util.find_spec("scienceworld")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "tasks.json"
        if path.is_file():
            tasks = json.loads(path.read_text())
            return {t["task_id"]: t["task_name"] for t in tasks}
    from scienceworld.constants import ID2TASK

    return dict(ID2TASK)


def scienceworld_task_names() -> list[str]:
    """The 30 task names, in the package's order."""
    return list(scienceworld_tasks().values())


def resolve_task(task: str) -> str:
    """Map a task name, a task id (``"1-1"``) or a ``task-1-boil`` style name to the task name."""
    tasks = scienceworld_tasks()
    if task in tasks:
        return tasks[task]
    names = list(tasks.values())
    if task in names:
        return task
    from scienceworld.utils import infer_task

    inferred = infer_task(task)
    if inferred in names:
        return inferred
    raise UnknownChoiceError("ScienceWorld task", task, names)


def parse_simplifications(value: str | Sequence[str]) -> str:
    """Check simplification names and return the package's comma-separated string."""
    names = [s.strip() for s in value.split(",")] if isinstance(value, str) else [str(s).strip() for s in value]
    names = [n for n in names if n]
    for name in names:
        check_choice("ScienceWorld simplification", name, SIMPLIFICATIONS)
    return ",".join(dict.fromkeys(names))


def _jvm_errors() -> tuple[type[BaseException], ...]:
    from py4j.protocol import Py4JError

    # Py4JNetworkError (a dead JVM) and Py4JJavaError (an exception inside the simulator) are
    # both Py4JErrors; a broken socket can also surface as an OSError.
    return (Py4JError, OSError, EOFError)


class ScienceWorldTextEnv(gym.Env):
    """A ScienceWorld task as a Gymnasium text env. See the module docstring for the env card.

    Args:
        task: a task name (``"boil"``), a task id (``"1-1"``) or the paper's name.
        split: ``"train"``, ``"dev"`` or ``"test"``: the variations the reset seed draws from.
        simplifications: ``"easy"`` (default), ``""`` or names from :data:`SIMPLIFICATIONS`
            (a comma-separated string or a sequence).
        expert: generate the gold path at each reset and expose it as an **oracle** label.
        admit_oracle_action: add the oracle label to ``admissible_actions`` when it is a gold
            command with no equivalent in the simulator's list (none is left over the 30 tasks;
            see *Expert*). This leaks the oracle into the candidates: for oracle-only runs
            only; the oracle bound does not need it.
        max_steps: ``truncated`` after this many steps (default: the task's entry in
            :data:`TASK_MAX_STEPS`, long enough for its gold path, else 100).
        history_length: how many past ``(observation, action)`` pairs the text observation keeps.
        render_mode: ``None`` or ``"ansi"``.
        jar_path: another ScienceWorld jar (default: the package's own).
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        task: str = "boil",
        *,
        split: str = "train",
        simplifications: str | Sequence[str] = DEFAULT_SIMPLIFICATIONS,
        expert: bool = True,
        admit_oracle_action: bool = False,
        max_steps: int | None = None,
        history_length: int = 3,
        render_mode: str | None = None,
        jar_path: str | None = None,
    ) -> None:
        self.task = resolve_task(task)
        self.split = check_choice(f"ScienceWorld split ({', '.join(SPLITS)})", split, SPLITS)
        self.simplifications = parse_simplifications(simplifications)
        if "noElectricalAction" in self.simplifications.split(",") and (
            "power-component" in self.task or "conductivity" in self.task
        ):
            raise ValueError(
                f"task {self.task!r} needs electrical actions; drop 'noElectricalAction' "
                "('easy' keeps them for this task)"
            )
        if max_steps is None:
            max_steps = TASK_MAX_STEPS.get(self.task, DEFAULT_MAX_STEPS)
        if max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {max_steps}")
        if history_length < 0:
            raise ValueError(f"history_length must be >= 0, got {history_length}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        if admit_oracle_action and not expert:
            raise ValueError("admit_oracle_action=True needs expert=True")
        if jar_path is not None and not Path(jar_path).is_file():
            raise FileNotFoundError(f"ScienceWorld jar not found: {jar_path}")
        self.expert = bool(expert)
        self.admit_oracle_action = bool(admit_oracle_action)
        self.max_steps = int(max_steps)
        self.history_length = int(history_length)
        self.render_mode = render_mode
        self.jar_path = jar_path
        self.action_space = spaces.Text(MAX_ACTION_CHARS, charset=ACTION_CHARSET)
        self.observation_space = text_space(TEXT_BYTES)

        self._sw: Any = None  # the package's ScienceWorldEnv (owns the JVM); started lazily
        self._history: deque[tuple[str, str]] = deque(maxlen=max(self.history_length, 1))
        self._text_obs: TextObservation | None = None
        self._steps = 0
        self._variation: int | None = None
        self._gold: tuple[str, ...] = ()
        self._gold_pos = 0
        self._label_pos = 0
        self._label_unlisted = False
        self._label_answer = False
        self._on_gold = False
        self._needs_reset = True
        self.crash_count = 0
        #: Oracle labels that had to be a gold command missing from the valid list (see *Expert*).
        self.unlisted_gold_actions = 0

    # ------------------------------------------------------------------ JVM lifecycle
    def _start(self) -> Any:
        from scienceworld import ScienceWorldEnv

        # The package counts its own step limit in moves and folds it into `done`; a limit it
        # never reaches keeps its `done` to "completed or failed", and this env truncates itself.
        self._sw = ScienceWorldEnv("", serverPath=self.jar_path, envStepLimit=np.iinfo(np.int32).max)
        logger.info("started the ScienceWorld JVM (pid %s)", self.jvm_pid)
        return self._sw

    @property
    def jvm_pid(self) -> int | None:
        """The process id of the simulator's JVM, or ``None`` when none is running."""
        if self._sw is None:
            return None
        return self._sw._gateway.java_process.pid

    def _stop(self, *, wait: bool = True) -> None:
        """Shut the JVM down and reap it; never raises (it also runs after a crash).

        With ``wait=False`` (from ``__del__``) the JVM is killed without a polite shutdown and
        without waiting for it: a finaliser can run inside another ``Popen.wait`` on the same
        process, whose lock is not re-entrant, and blocking there would hang the interpreter.
        """
        sw, self._sw = self._sw, None
        if sw is None:
            return
        gateway = getattr(sw, "_gateway", None)
        proc = getattr(gateway, "java_process", None)
        client = getattr(gateway, "_gateway_client", None)
        if not wait:
            if client is not None:
                client.is_connected = False
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.kill()
            sw.close = lambda: None
            return
        if proc is not None and proc.poll() is not None:
            # The JVM is gone: a polite shutdown would only try to reconnect (and log errors).
            with contextlib.suppress(Exception):
                gateway.shutdown_callback_server()
        else:
            try:
                sw.close()
            except Exception as exc:  # a broken gateway cannot be shut down politely
                logger.debug("ScienceWorld close raised %r; killing the JVM", exc)
        if client is not None:
            # Java proxies that are garbage-collected later must not try to reach a dead JVM.
            client.is_connected = False
        if proc is not None:
            try:
                proc.wait(timeout=_JVM_EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logger.warning("the ScienceWorld JVM (pid %s) did not exit; killing it", proc.pid)
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        tempdir = getattr(sw, "_obj_tree_tempdir", None)
        if tempdir is not None:
            with contextlib.suppress(OSError):
                tempdir.cleanup()
        # The package's __del__ closes again; make that a no-op on the already closed gateway.
        sw.close = lambda: None

    def close(self) -> None:
        """Stop the JVM. Safe to call more than once."""
        self._stop()
        self._needs_reset = True

    def __del__(self) -> None:
        try:
            self._stop(wait=False)
        except Exception:  # interpreter shutdown: modules may be gone already
            pass

    # ------------------------------------------------------------------ splits
    def split_variations(self, split: str | None = None) -> tuple[int, ...]:
        """The variations of ``split`` (default: this env's split) for this task. Starts the JVM."""
        split = check_choice(f"ScienceWorld split ({', '.join(SPLITS)})", split or self.split, SPLITS)
        cached = _SPLIT_CACHE.get(self.task)
        if cached is None:
            sw = self._sw or self._start()
            # The package answers split queries for the loaded task only.
            sw.load(self.task, 0, self.simplifications, generateGoldPath=False)
            cached = {
                "train": tuple(sw.get_variations_train()),
                "dev": tuple(sw.get_variations_dev()),
                "test": tuple(sw.get_variations_test()),
            }
            _SPLIT_CACHE[self.task] = cached
        return cached[split]

    # ------------------------------------------------------------------ observation
    def _oracle(self, info: dict[str, Any], text: str) -> str | None:
        """The oracle label for the current state (:func:`~londi.envs.scienceworld_gold.oracle_label`;
        see *Expert* in the module docstring); it may replace ``info["valid"]``. Sets
        ``_label_pos`` (the gold index the label stands for), ``_label_unlisted`` (the label is a
        gold command the valid list lacks) and ``_label_answer`` (an ambiguity answer)."""
        self._label_unlisted = False
        if not self._on_gold:
            return None
        label = oracle_label(self._gold, self._gold_pos, info, text, self._gold_table)
        self._label_pos, self._label_unlisted, self._label_answer = label.pos, label.unlisted, label.answer
        if label.unlisted:
            self.unlisted_gold_actions += 1
            logger.debug("gold action %r has no equivalent in the valid list", label.action)
        return label.action

    def _gold_table(self) -> GoldTable:
        """The valid list with object ids, the referent table and the object tree (3 JVM calls)."""
        return (self._sw.get_valid_action_object_combinations_with_templates(),
                self._sw.get_all_object_ids_types_referents_LUTJSON(),
                object_parents(self._sw.getObjectTree()))

    def _make_obs(self, text: str, info: dict[str, Any], oracle: str | None) -> tuple[np.ndarray, dict[str, Any]]:
        valid = info["valid"]
        if oracle is not None and self._label_unlisted and self.admit_oracle_action and oracle not in valid:
            valid = [*valid, oracle]
        goal = info["taskDesc"]
        self._text_obs = TextObservation(
            goal=goal,
            text=text,
            admissible_actions=tuple(valid),
            history=tuple(self._history) if self.history_length else (),
            inventory=info["inv"],
            look=info["look"],
            step=self._steps,
            oracle_action=oracle,
        )
        out = {
            "text_obs": self._text_obs,
            "admissible_actions": list(valid),
            "oracle_action": oracle,
            "gold_action": self._gold[self._label_pos] if oracle is not None else None,
            "score": int(info["score"]),
            "moves": int(info["moves"]),
            "task": self.task,
            "variation": self._variation,
            "split": self.split,
            "simplifications": self.simplifications,
            "success": int(info["score"]) >= 100,
            "env_crashed": False,
        }
        return encode_text(f"Task: {goal}\n{text}"), out

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"variation"}
        if unknown:
            raise UnknownChoiceError("ScienceWorld reset option", min(unknown), ["variation"])
        variations = self._retry_on_crash(self.split_variations)
        if options.get("variation") is not None:
            variation = int(options["variation"])
            if variation not in variations:
                raise ValueError(
                    f"variation {variation} is not in the {self.split!r} split of {self.task!r} "
                    f"(variations {variations[0]}..{variations[-1]}, {len(variations)} in all)"
                )
        else:
            variation = int(variations[int(self.np_random.integers(len(variations)))])
        obs_text, info = self._retry_on_crash(self._load, variation)
        self._variation = variation
        self._history.clear()
        self._steps = 0
        self._needs_reset = False
        self._gold_pos = 0
        self._on_gold = self.expert
        return self._make_obs(obs_text, info, self._oracle(info, obs_text))

    def _retry_on_crash(self, fn, *args):
        """Run ``fn``; if the JVM fails, start a fresh one and run it once more (a crash during a
        reset must not stop a training run; a second failure is raised)."""
        try:
            return fn(*args)
        except _jvm_errors() as exc:
            logger.warning("ScienceWorld failed during reset (%r); restarting the JVM", exc)
            self.crash_count += 1
            self._stop()
            return fn(*args)

    def _load(self, variation: int) -> tuple[str, dict[str, Any]]:
        sw = self._sw or self._start()
        # The package's reset() reloads the task (its server-side reset is a load with the same
        # arguments) and then plays "look around"; after our own load one such step is enough.
        sw.load(self.task, variation, self.simplifications, generateGoldPath=self.expert)
        self._gold = tuple(sw.get_gold_action_sequence()) if self.expert else ()
        obs_text, _, _, info = sw.step("look around")
        return obs_text, info

    def step(self, action: str | int):
        if self._needs_reset or self._text_obs is None:
            raise RuntimeError("call reset() before step() (after close() or a crash too)")
        action = resolve_action(action, self._text_obs.admissible_actions)
        prev = self._text_obs
        try:
            obs_text, reward, done, info = self._sw.step(action)
        except _jvm_errors() as exc:
            return self._crashed(prev, action, exc)
        self._steps += 1
        self._history.append((prev.text, action))
        if self._on_gold:
            self._follow_gold(action, prev.oracle_action)
        terminated = bool(done)
        truncated = not terminated and self._steps >= self.max_steps
        self._label_unlisted = False
        oracle = None if (terminated or truncated) else self._oracle(info, obs_text)
        obs, out = self._make_obs(obs_text, info, oracle)
        return obs, float(reward), terminated, truncated, out

    def _follow_gold(self, action: str, label: str | None) -> None:
        """Advance the gold-path position past ``action``, or leave the gold path
        (:func:`~londi.envs.scienceworld_gold.follow_gold`)."""
        pos = follow_gold(action, label, self._gold, self._gold_pos, self._label_pos, self._label_answer)
        if pos is None:
            self._on_gold = False
        else:
            self._gold_pos = pos

    def _crashed(self, prev: TextObservation, action: str, exc: BaseException):
        logger.warning("the ScienceWorld JVM failed on %r (%r); truncating the episode", action, exc)
        self.crash_count += 1
        self._stop()  # reap it now; the next reset starts a fresh one
        self._needs_reset = True
        self._steps += 1
        info = {
            "text_obs": prev,
            "admissible_actions": list(prev.admissible_actions),
            "oracle_action": None,
            "score": None,
            "moves": None,
            "task": self.task,
            "variation": self._variation,
            "split": self.split,
            "simplifications": self.simplifications,
            "success": False,
            "env_crashed": True,
            "error": repr(exc),
        }
        return encode_text(f"Task: {prev.goal}\n{prev.text}"), 0.0, False, True, info

    def render(self):
        if self.render_mode == "ansi" and self._text_obs is not None:
            return f"Task: {self._text_obs.goal}\n{self._text_obs.text}"
        return None

    # ------------------------------------------------------------------ accessors
    @property
    def text_observation(self) -> TextObservation:
        """The current :class:`TextObservation` (also in ``info['text_obs']``)."""
        if self._text_obs is None:
            raise RuntimeError("call reset() first")
        return self._text_obs

    @property
    def gold_path(self) -> tuple[str, ...]:
        """The current episode's gold action sequence (**oracle**; empty unless ``expert=True``)."""
        return self._gold

    @property
    def variation(self) -> int | None:
        """The variation of the current episode."""
        return self._variation


def register_scienceworld_envs() -> None:
    """Register ``londi/ScienceWorld-<task-name>-v0`` for the package's 30 tasks (no JVM starts)."""
    for name in scienceworld_task_names():
        env_id = f"{ID_PREFIX}{name}-v0"
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="londi.envs.scienceworld:ScienceWorldTextEnv",
                kwargs={"task": name},
            )


__all__ = [
    "DEFAULT_MAX_STEPS",
    "DEFAULT_SIMPLIFICATIONS",
    "ID_PREFIX",
    "SIMPLIFICATIONS",
    "SPLITS",
    "TASK_MAX_STEPS",
    "ScienceWorldTextEnv",
    "parse_simplifications",
    "register_scienceworld_envs",
    "resolve_task",
    "scienceworld_task_names",
    "scienceworld_tasks",
]
