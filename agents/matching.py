"""Map a language model's free text to one of the admissible actions.

Generating models (served LLMs, chat models) answer with text such as ``"turn left"``,
``" Turn left.\\nObservation: ..."`` or ``"I will pick up the key"``. The environment only accepts
its admissible actions, so the text is matched in three stages, the first that succeeds wins:

1. **exact**: a line of the answer (after the answer is cleaned, see :func:`extract_lines`) is
   exactly an admissible action;
2. **normalised**: a line equals an action once both are normalised by :func:`normalise`
   (case, Unicode compatibility forms, punctuation, the articles *a/an/the*, whitespace);
3. **nearest**: the action most similar to the whole answer. An action whose normalised words
   appear contiguously in the normalised answer scores 1 (the longest such action wins, then
   the one mentioned first, so ``"pick up the key"`` beats ``"pick up"``); otherwise the score is
   the mean of the word-overlap F1 and :class:`difflib.SequenceMatcher`'s character ratio,
   in ``[0, 1)``.

:func:`match_action` always returns an admissible action; an empty answer matches the first
admissible action with score 0 (the caller can tell from :attr:`Match.kind` and
:attr:`Match.score`). Ties are broken by the order of the admissible actions, so matching is
deterministic.
"""
from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

MatchKind = Literal["exact", "normalised", "nearest"]

#: The match kinds, from the most to the least trustworthy.
MATCH_KINDS: tuple[MatchKind, ...] = ("exact", "normalised", "nearest")

_ARTICLES = frozenset({"a", "an", "the"})
# Punctuation and symbols become spaces, so "pick-up" and "pick up" normalise alike.
_NON_WORD = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACES = re.compile(r"\s+")
# Labels a model may put before its answer: "Action: go forward", "answer - go forward".
_LABEL = re.compile(r"^\s*(?:final\s+)?(?:action|answer|command|next\s+action)\s*[:\-=]\s*", re.IGNORECASE)
# Decoration around an answer: quotes, backticks, markdown emphasis, list bullets.
_DECOR = " \t\"'`*>#-•"
#: Only this many characters of an answer are compared in the nearest stage; a model that
#: rambles on for pages is not made slower to match.
MAX_ANSWER_CHARS = 500
#: Only this many lines of an answer are tried in the exact and normalised stages.
MAX_ANSWER_LINES = 20


@dataclass(frozen=True)
class Match:
    """The result of :func:`match_action`.

    Attributes:
        action: the matched action; always one of the admissible actions.
        kind: how it matched: ``"exact"``, ``"normalised"`` or ``"nearest"``.
        score: 1 for exact and normalised matches; the similarity in ``[0, 1]`` for nearest.
        index: the position of ``action`` in the admissible actions.
    """

    action: str
    kind: MatchKind
    score: float
    index: int


@functools.lru_cache(maxsize=65536)
def normalise(text: str) -> str:
    """Lower-case ``text``, fold Unicode compatibility forms, turn punctuation into spaces,
    drop the articles *a*, *an*, *the* and collapse whitespace.

    >>> normalise("  Pick up THE red-key. ")
    'pick up red key'
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _NON_WORD.sub(" ", text)
    return " ".join(w for w in text.split() if w not in _ARTICLES)


def _clean(line: str) -> str:
    line = _LABEL.sub("", line.strip()).strip(_DECOR)
    if line.endswith(".") and not line.endswith(".."):
        line = line[:-1].rstrip()
    return line


def _candidate_lines(text: str) -> list[tuple[str, str]]:
    """``(stripped line, cleaned line)`` for the first non-empty lines of ``text``."""
    out: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("```"):
            continue
        cleaned = _clean(line)
        if cleaned:
            out.append((line, cleaned))
        if len(out) >= MAX_ANSWER_LINES:
            break
    return out


def extract_lines(text: str) -> list[str]:
    """The candidate answers in ``text``: its non-empty lines, in order, each with a leading
    label (``Action:``, ``Answer -``), surrounding quotes, backticks, markdown emphasis, list
    bullets and a final full stop removed. At most :data:`MAX_ANSWER_LINES` lines are kept.
    """
    return [cleaned for _, cleaned in _candidate_lines(text)]


def _word_f1(a: frozenset[str], b: frozenset[str]) -> float:
    common = len(a & b)
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


def match_action(text: str, admissible_actions: Sequence[str]) -> Match:
    """Map ``text`` to one of ``admissible_actions`` (see the module docstring for the rules).

    Raises:
        ValueError: if ``admissible_actions`` is empty.
    """
    actions = list(admissible_actions)
    if not actions:
        raise ValueError("admissible_actions is empty: there is nothing to match the answer to")
    candidates = _candidate_lines(text)
    lines = [cleaned for _, cleaned in candidates]

    # 1. exact: the first line that is an action, as written or once cleaned of labels/quotes.
    position = {a: i for i, a in reversed(list(enumerate(actions)))}
    for line, cleaned in candidates:
        for candidate in (line, cleaned):
            if candidate in position:
                return Match(candidate, "exact", 1.0, position[candidate])
    stripped = text.strip()
    if stripped in position:  # a multi-line action, or one that starts with a label word
        return Match(stripped, "exact", 1.0, position[stripped])

    # 2. normalised: the first line equal to an action once both are normalised.
    norm_actions = [normalise(a) for a in actions]
    by_norm: dict[str, int] = {}
    for i, n in enumerate(norm_actions):
        by_norm.setdefault(n, i)
    for line in lines:
        i = by_norm.get(normalise(line))
        if i is not None and norm_actions[i]:
            return Match(actions[i], "normalised", 1.0, i)

    # 3. nearest, against the whole (cleaned) answer.
    answer = normalise(" ".join(lines))[:MAX_ANSWER_CHARS]
    if not answer:
        return Match(actions[0], "nearest", 0.0, 0)
    padded = f" {answer} "
    # An answer that starts with an action: a completion that ran on past its answer (a server
    # that does not stop at the end of the line, a tokenizer with no newline), "turn left go
    # forward go forward ...". The longest such action wins ("pick up the key now" -> "pick up
    # the key"), then list order.
    leading = [(-len(n), i) for i, n in enumerate(norm_actions) if n and padded.startswith(f" {n} ")]
    if leading:
        i = min(leading)[1]
        return Match(actions[i], "nearest", 1.0, i)
    # Contained actions: the longest wins, then the one mentioned first, then list order.
    contained = [
        (-len(n), padded.find(f" {n} "), i) for i, n in enumerate(norm_actions) if n and f" {n} " in padded
    ]
    if contained:
        i = min(contained)[2]
        return Match(actions[i], "nearest", 1.0, i)
    answer_words = frozenset(answer.split())
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(answer)  # SequenceMatcher caches its analysis of seq2: set it once
    best_i, best = 0, -1.0
    for i, n in enumerate(norm_actions):
        f1 = _word_f1(frozenset(n.split()), answer_words) if n else 0.0
        matcher.set_seq1(n)
        # quick_ratio() bounds ratio() from above; skip the exact ratio when it cannot win.
        if 0.5 * f1 + 0.5 * matcher.quick_ratio() <= best:
            continue
        score = 0.5 * f1 + 0.5 * matcher.ratio()
        if score > best:
            best_i, best = i, score
    return Match(actions[best_i], "nearest", float(max(best, 0.0)), best_i)


__all__ = ["MATCH_KINDS", "Match", "MatchKind", "extract_lines", "match_action", "normalise"]
