"""ScienceWorld's gold path as oracle labels that the valid-action list contains.

:class:`~londi.envs.scienceworld.ScienceWorldTextEnv` (env card, *Expert*) labels each state
with the next gold action (``get_gold_action_sequence``) while the agent has followed the gold
path. Many gold commands (about 23% over the 30 tasks) are not in the simulator's valid-action
list, although the simulator accepts them; an oracle that only plays admissible actions
(:class:`~londi.agents.expert.OracleExpert`, the switch) could not play them, and adding them to
the list would leak the oracle into the candidates that LMs see. This module turns the gold
path into labels *as the valid list has them* (:func:`oracle_label`), and keeps the gold-path
position in step with what the agent plays (:func:`follow_gold`):

* a gold command spelled differently from the list is mapped onto the valid action with the
  same verb and **the same objects**, resolved by the simulator's object ids
  (``get_valid_action_object_combinations_with_templates`` and the referent table
  ``get_all_object_ids_types_referents_LUTJSON``; see :func:`map_gold_action`): ``use
  thermometer in inventory on X`` -> ``use thermometer on X``, ``connect battery anode to
  yellow wire terminal 1`` -> ``connect anode in battery to terminal 1 in yellow wire``,
  ``move egg parrot egg in inventory to blue box`` -> ``move egg parrot to blue box``,
  ``examine X`` -> ``look at X``, ``drop X`` -> ``put down X``; doors (``door to kitchen``,
  ``kitchen door``) and the terminals of an object are matched by the names the list gives them;
* a gold command that is a no-op in the current state is played as ``look at X`` on the same
  object (:func:`noop_stand_in`): ``open X`` when the list offers ``close X`` instead (the
  ``easy`` simplification opened every door), ``pick up X`` when X is held already, likewise
  ``close``, ``put down``, ``activate``, ``deactivate``. It is not skipped because the
  no-op still takes one tick of the simulator's clock and some tasks run on the clock
  (skipping them made ``identify-life-stages-1``'s gold path focus on an animal that had
  not grown yet); ``look at X`` changes nothing and takes one tick too;
* a gold step that answers the simulator's "which one do you mean?" (``0``) after an
  ambiguous gold command is skipped when no such question was asked (the label had spelled
  the command unambiguously; an unparsed command takes no tick); when a respelled label
  is itself ambiguous to the parser (look-alike seeds in ``mendelian-genetics-*``), the
  simulator asks and offers only the numbers, and the label is ``0``, the gold path's own
  answer to such questions; it completes the command and does not advance the path.

The gold-path position advances when the agent plays the label, the gold command itself, or a
skipped no-op, so the label stays in sync with what is executed (replaying the gold path
verbatim keeps the labels too). The three extra JVM calls (the list with object ids, the
referent table and the object tree, for ``X in Y`` qualifiers) are made only on steps whose
gold command is not in the list. A gold command with no equivalent in the list and no no-op
reading (none was left over the 30 tasks, 3 episodes each, see ``docs/benchmarks.md``) stays
the label as it is (:attr:`GoldLabel.unlisted`).

Nothing here talks to the JVM itself: the env passes the simulator's answers in, so the mapping
is plain functions over the package's data structures.
"""
from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: The valid list with object ids, the referent table and the object tree's containment
#: (:func:`object_parents`): what :func:`map_gold_action` resolves gold commands with.
GoldTable = tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[int, int]]


def _normalise(action: str) -> str:
    return " ".join(action.lower().split())


#: Verbs of the commands the gold paths use, as ``(pattern, verb, slots)``; ``verb`` names the
#: valid-list template the command is compared with. ``examine X`` and ``drop X`` are the gold
#: paths' spellings of ``look at X`` and ``put down X`` (neither is a template of the valid list).
_VERB_PATTERNS: tuple[tuple[str, str, int], ...] = (
    ("use ", "use", 2),
    ("connect ", "connect", 2),
    ("move ", "move", 2),
    ("pour ", "pour", 2),
    ("dunk ", "dunk", 2),
    ("focus on ", "focus on", 1),
    ("look at ", "look at", 1),
    ("examine ", "look at", 1),
    ("look in ", "look in", 1),
    ("pick up ", "pick up", 1),
    ("put down ", "put down", 1),
    ("drop ", "put down", 1),
    ("open ", "open", 1),
    ("close ", "close", 1),
    ("activate ", "activate", 1),
    ("deactivate ", "deactivate", 1),
    ("disconnect ", "disconnect", 1),
    ("eat ", "eat", 1),
    ("mix ", "mix", 1),
    ("read ", "read", 1),
    ("flush ", "flush", 1),
    ("go to ", "go to", 1),
    ("teleport to ", "teleport to", 1),
)
#: The words between the two objects of a two-object verb.
_SEPARATORS: dict[str, tuple[str, ...]] = {
    "use": (" on ",),
    "connect": (" to ",),
    "move": (" to ",),
    "pour": (" into ", " in "),
    "dunk": (" into ", " in "),
}
#: Verbs whose two objects can be given in either order (a wire connects both ways).
_SYMMETRIC = frozenset({"connect"})
#: ``open X`` is a no-op when the valid list offers ``close X`` instead (X is open already), and
#: likewise ``pick up X`` when it offers ``put down X`` (X is held already), and so on: the valid
#: list offers only the one of each pair that would change the state.
_OPPOSITE = {
    "open": "close", "close": "open",
    "pick up": "put down", "put down": "pick up",
    "activate": "deactivate", "deactivate": "activate",
}
#: What :func:`map_gold_action` returns for a gold action that does nothing in this state.
NOOP = ""


def parse_command(command: str) -> tuple[str, list[list[str]]] | None:
    """``(verb, splits)`` for a command: each split is one way to cut it into object strings
    (a two-object command may contain its separator inside an object, e.g. ``move X to door to
    kitchen``). ``None`` for a command that names no object (``look around``, ``wait1``)."""
    text = _normalise(command)
    for prefix, verb, slots in _VERB_PATTERNS:
        if not text.startswith(prefix):
            continue
        rest = text[len(prefix):]
        if slots == 1:
            return verb, [[rest]]
        splits = []
        for sep in _SEPARATORS[verb]:
            start = 0
            while (i := rest.find(sep, start)) >= 0:
                if i > 0 and i + len(sep) < len(rest):
                    splits.append([rest[:i], rest[i + len(sep):]])
                start = i + 1
        return (verb, splits) if splits else None
    return None


def _referent_forms(referent: str) -> list[tuple[str, str | None]]:
    """``(form, container)`` pairs: the referent as written, then without its location
    qualifiers from the right (``thermometer in inventory`` -> ``thermometer`` in
    ``inventory``, ``seed cherry seed on seed jar`` -> ``seed cherry seed`` on ``seed jar``); a
    door also as ``X door`` and plain ``door`` (the names the valid list gives a door), a
    terminal of an object also as the object."""
    forms: list[tuple[str, str | None]] = [(referent, None)]
    while " in " in forms[-1][0] or " on " in forms[-1][0]:
        last = forms[-1][0]
        cut = max(last.rfind(" in "), last.rfind(" on "))
        forms.append((last[:cut], referent[cut + 4:]))
    base = forms[-1][0]
    if base.startswith("door to "):  # ``door to bedroom`` is also ``bedroom door``
        forms.append((base[len("door to "):] + " door", None))
    if base.startswith("door to ") or base.endswith(" door"):
        forms.append(("door", None))
    for part in (" terminal 1", " terminal 2"):
        # ``metal pot terminal 1``: the list connects the object itself (a free terminal of it)
        if base.endswith(part) and len(base) > len(part):
            forms.append((base[: -len(part)], None))
    return forms


#: Rank penalty of an object whose location does not match the qualifier it was named with.
_UNPLACED = 100


def _object_ids(
    referent: str, referents: dict[str, set[int]], parents: dict[int, int] | None = None
) -> dict[int, int]:
    """``{object id: rank}`` for the objects that have a form of ``referent`` as a referent; the
    rank is the index of the first such form (0: the referent as written). With ``parents``
    (the object tree), an object named with a location qualifier (``X in Y``) that is not
    inside ``Y`` ranks last: look-alike objects (seeds of different plants) differ only there."""
    ids: dict[int, int] = {}
    for rank, (form, container) in enumerate(_referent_forms(referent)):
        found = referents.get(form, ())
        if container is not None and parents is not None and found:
            places = set(_object_ids(container, referents, parents))
            for obj_id in found:
                inside, node, seen = False, parents.get(obj_id), set()
                while node is not None and node not in seen and not inside:
                    inside = node in places
                    seen.add(node)
                    node = parents.get(node)
                ids.setdefault(obj_id, rank if inside else rank + _UNPLACED)
            continue
        for obj_id in found:
            ids.setdefault(obj_id, rank)
    return ids


def object_parents(tree: dict[str, Any]) -> dict[int, int]:
    """``{object id: id of the object that contains it}`` from the package's ``getObjectTree``."""
    parents: dict[int, int] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in (node.get("contents") or {}).values():
            with contextlib.suppress(KeyError, TypeError, ValueError):
                parents[int(child["uuid"])] = int(node["uuid"])
            stack.append(child)
    return parents


def map_gold_action(
    gold: str,
    valid: Sequence[dict[str, Any]],
    objects: dict[str, dict[str, Any]],
    parents: dict[int, int] | None = None,
) -> str | None:
    """Map a gold action that is missing from the valid-action list onto the list.

    ``valid`` is the simulator's valid list with object ids
    (``get_valid_action_object_combinations_with_templates``), ``objects`` its object table
    (``get_all_object_ids_types_referents_LUTJSON``: the referents of each object; it lacks
    some, such as doors, whose names are then taken from the valid list's one-object actions),
    ``parents`` the containment of the object tree (:func:`object_parents`). The gold
    action is parsed into a verb and object strings; each object string is resolved to the
    objects that have it as a referent (after dropping location qualifiers such as ``in
    inventory``), and the valid action with the same verb and the same objects is returned
    (``use thermometer in inventory on X`` -> ``use thermometer on X``, ``connect battery anode
    to ...`` -> ``connect anode in battery to ...``, ``examine X`` -> ``look at X``). Returns
    :data:`NOOP` for ``open X`` when ``X`` is already open (the valid list offers ``close X``;
    likewise ``close``, ``pick up`` / ``put down`` and ``activate`` / ``deactivate``), and
    ``None`` when nothing matches.
    """
    parsed = parse_command(gold)
    if parsed is None:
        return None
    verb, splits = parsed
    referents: dict[str, set[int]] = {}
    for obj_id, entry in objects.items():
        for ref in entry.get("referents", ()):
            referents.setdefault(_normalise(str(ref)), set()).add(int(obj_id))
    by_verb: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    for entry in valid:
        parsed_valid = parse_command(entry["action"])
        if parsed_valid is not None:
            ids = tuple(int(i) for i in entry.get("obj_ids", ()))
            by_verb.setdefault(parsed_valid[0], []).append((entry["action"], ids))
            if len(ids) == 1:  # the table lacks some objects (doors): the list names them too
                referents.setdefault(parsed_valid[1][0][0], set()).add(ids[0])

    def find(target_verb: str) -> dict[str, int]:
        """``{valid action: rank}`` of the valid actions of ``target_verb`` on the gold objects."""
        found: dict[str, int] = {}
        for split in splits:
            wanted = [_object_ids(ref, referents, parents) for ref in split]
            if not all(wanted):
                continue
            orders = [wanted, wanted[::-1]] if target_verb in _SYMMETRIC else [wanted]
            for action, ids in by_verb.get(target_verb, ()):
                for order in orders:
                    if len(ids) == len(order) and all(i in w for i, w in zip(ids, order)):
                        rank = sum(w[i] for i, w in zip(ids, order))
                        found[action] = min(rank, found.get(action, rank))
        return found

    matches = find(verb)
    if matches:
        # The objects as written first; among equals (several objects can share a referent,
        # ``substance``) the closest spelling.
        return min(matches, key=lambda a: (
            matches[a], -difflib.SequenceMatcher(None, _normalise(gold), _normalise(a)).ratio()))
    if verb in _OPPOSITE and find(_OPPOSITE[verb]):
        return NOOP
    return None


def noop_stand_in(
    gold: str,
    valid: Sequence[dict[str, Any]],
    objects: dict[str, dict[str, Any]],
    parents: dict[int, int] | None = None,
) -> str | None:
    """The oracle label for a gold action that is a no-op here (:data:`NOOP`): ``look at X`` on
    the same object, else ``look at agent``; ``None`` when the list has neither.

    A no-op is not simply skipped: the simulator's clock advances one tick on ``open X`` even
    when X is open already, and some tasks depend on the clock (animals and plants age on it:
    skipping the no-ops of ``identify-life-stages-1`` made its gold path focus on a baby
    elephant that was not yet juvenile, score 58). ``look at X`` changes nothing and takes one
    tick too (``look around``, ``inventory`` and ``task`` take none, ``wait1`` two).
    """
    parsed = parse_command(gold)
    if parsed is not None and len(parsed[1][0]) == 1:
        look = map_gold_action("look at " + parsed[1][0][0], valid, objects, parents)
        if look:
            return look
    return next((e["action"] for e in valid if _normalise(e["action"]) == "look at agent"), None)



@dataclass(frozen=True)
class GoldLabel:
    """The oracle label of one state (:func:`oracle_label`).

    Attributes:
        action: the label (``None`` when the gold path is used up).
        pos: the index of the gold action the label stands for.
        unlisted: the label is a gold command that the valid list lacks and that has no
            equivalent in it.
        answer: the label is ``0``, the answer to an ambiguity question that a respelled label
            raised; it completes that command and does not advance the gold path.
    """

    action: str | None
    pos: int
    unlisted: bool = False
    answer: bool = False


def oracle_label(
    gold_path: Sequence[str], pos: int, info: dict[str, Any], text: str, fetch_table: Callable[[], GoldTable]
) -> GoldLabel:
    """The oracle label after the agent has followed ``gold_path`` up to ``pos``: the next gold
    action, spelled as the valid list spells it (see the module docstring).

    ``info`` is the simulator's step info (its ``"valid"`` list), ``text`` its last answer, and
    ``fetch_table`` makes the three extra JVM calls (:data:`GoldTable`), only when a gold action
    is not in ``info["valid"]``. The list it returns **replaces** ``info["valid"]``: the
    simulator names look-alike objects afresh on every call (``seed plant on cup`` in one list may
    be ``organism in seed jar`` in the next), so the label must come from the very list that the
    observation offers."""
    listed = {_normalise(a): a for a in info["valid"]}
    table: GoldTable | None = None
    asked = "ambiguous request" in text.lower()
    if asked and "0" in listed and not (pos < len(gold_path) and gold_path[pos].strip().isdigit()):
        # A respelled command named look-alike objects that the parser could not tell apart
        # and it asks which one: answer as the gold path answers its own such questions (the
        # first option); the answer completes that command and does not advance the path.
        return GoldLabel(listed["0"], max(pos - 1, 0), answer=True)
    while pos < len(gold_path):
        gold = gold_path[pos]
        if _normalise(gold) in listed:
            return GoldLabel(listed[_normalise(gold)], pos)
        if gold.strip().isdigit() and "ambiguous" not in text.lower():
            # The gold path's answer to the simulator's "which one do you mean?" after an
            # ambiguous command; the label spelled that command unambiguously, so no question
            # was asked and the answer is moot (an unparsed "0" takes no tick either).
            pos += 1
            continue
        if table is None:  # three more JVM calls, only on the steps that need them
            table = fetch_table()
            info["valid"] = list(dict.fromkeys(e["action"] for e in table[0]))
            listed = {_normalise(a): a for a in info["valid"]}
            continue  # the gold action may be in the new list as it is
        mapped = map_gold_action(gold, *table)
        if mapped == NOOP:
            mapped = noop_stand_in(gold, *table)
            if mapped is None:
                pos += 1
                continue
        if mapped is None:
            return GoldLabel(gold, pos, unlisted=True)
        return GoldLabel(mapped, pos)
    return GoldLabel(None, pos)


def follow_gold(
    action: str, label: str | None, gold_path: Sequence[str], pos: int, label_pos: int, answer: bool = False
) -> int | None:
    """The gold-path position after the agent played ``action`` at position ``pos``, or ``None``
    when ``action`` leaves the gold path.

    ``label``, ``label_pos`` and ``answer`` are the last :class:`GoldLabel`'s ``action``, ``pos``
    and ``answer``. ``action`` follows the path when it is the label (the valid-list spelling of
    gold action ``label_pos``; an ambiguity answer keeps the position) or any gold action from
    ``pos`` up to the label's (the gold spelling itself, or a skipped no-op played anyway)."""
    played = _normalise(action)
    if label is not None and played == _normalise(label):
        return pos if answer else label_pos + 1
    for i in range(pos, min(label_pos, len(gold_path) - 1) + 1):
        if played == _normalise(gold_path[i]):
            return i + 1
    return None


__all__ = [
    "NOOP",
    "GoldLabel",
    "GoldTable",
    "follow_gold",
    "map_gold_action",
    "noop_stand_in",
    "object_parents",
    "oracle_label",
    "parse_command",
]
