"""Word-level tokenizers for the LMs trained here (``PreTrainedTokenizerFast``, saved with each model).

One builder, :func:`build_word_tokenizer` (vocabulary = special tokens, then a fixed word list
and every piece of the training text, sorted), and the two flavours the shipped models use:

* :func:`babyai_tokenizer`: BabyAI-Text's pieces, where each action and several phrases
  (the mission, a coloured object, a step offset) are single tokens;
* :func:`text_game_tokenizer`: lower-cased words, digits and single characters (TextWorld,
  ScienceWorld); commands are several tokens long.
"""
from __future__ import annotations

from collections.abc import Iterable

#: The special tokens, ids 0, 1, 2.
SPECIAL_TOKENS = ("<pad>", "<unk>", "<eos>")
#: BabyAI-Text's actions; each is one token (:func:`babyai_tokenizer` checks it).
ACTIONS = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")
COLOURS = ("red", "green", "blue", "purple", "yellow", "grey")
OBJECT_TYPES = ("ball", "box", "key", "door")
_COLOURS = "|".join(COLOURS)
_TYPES = "|".join(OBJECT_TYPES)
_OFFSET = r"\d+ steps? (?:left|right) and \d+ steps? forward|\d+ steps? (?:left|right|forward)"
#: BabyAI pre-tokenization into words, except for phrases that become single tokens: the action
#: names (so scoring an action is one next-token probability), "You see a", the mission ("go to
#: the red ball"), a coloured object ("red ball", "locked blue door") and a step offset ("2 steps
#: left", "1 step right and 3 steps forward"). The phrases make the prompts about a third as
#: long, and they shorten the chain of attention steps between the mission and the matching
#: line of the observation (mission token -> the offset token that follows the same object).
BABYAI_PATTERN = (
    rf"go to (?:the|a) (?:{_COLOURS}) (?:{_TYPES})"
    r"|turn left|turn right|go forward|pick up|You see a|You carry a"
    rf"|(?:(?:open|closed|locked) )?(?:{_COLOURS}) (?:{_TYPES})"
    rf"|{_OFFSET}"
    r"|[A-Za-z]+|\d+|[^\sA-Za-z\d]"
)
#: Words always in the BabyAI vocabulary (the prompt template, the BabyAI-Text renderer and
#: missions), so that unseen-but-possible words do not map to <unk>.
BABYAI_BASE_WORDS = tuple(
    ["Goal", "of", "the", "agent", ":", "Possible", "actions", ",", "Observation", "Action", "Inventory", ".", "(", ")", "more", "You", "wall", "step", "steps", "left", "right", "forward", "and", "carry", "nothing", "a", "an", "red", "green", "blue", "purple", "yellow", "grey", "ball", "box", "key", "door", "open", "closed", "locked", "go", "to", "the", "pick", "up", "put", "next", "then", "after", "you", "in", "front", "of", "behind", "on", "your", "drop", "toggle"]
) + ("turn left", "turn right", "go forward", "pick up", "You see a", "You carry a")
#: Text games: runs of letters, runs of digits, single other characters (spaces dropped), lower-cased.
TEXT_GAME_PATTERN = r"[a-z]+|\d+|[^\sa-z\d]"


def babyai_compound_words() -> list[str]:
    """Every go-to mission, coloured object and step offset the BabyAI-Text renderer can write."""
    out = []
    for colour in COLOURS:
        for kind in OBJECT_TYPES:
            out.append(f"{colour} {kind}")
            out.append(f"go to the {colour} {kind}")
            out.append(f"go to a {colour} {kind}")
        for state in ("open", "closed", "locked"):
            out.append(f"{state} {colour} door")

    def steps(n: int, word: str) -> str:
        return f"{n} step{'s' if n != 1 else ''} {word}"

    for n in range(1, 10):
        for side in ("left", "right", "forward"):
            out.append(steps(n, side))
    for n in range(1, 4):
        for side in ("left", "right"):
            for m in range(1, 7):
                out.append(f"{steps(n, side)} and {steps(m, 'forward')}")
    return out


def pre_tokenizer(pattern: str):
    """A ``tokenizers`` pre-tokenizer whose pieces are ``pattern``'s matches (what lies between,
    the spaces, is dropped)."""
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True)


def build_word_tokenizer(texts: Iterable[str], *, pattern: str, base_words: Iterable[str] = (),
                         lowercase: bool = False, single_tokens: Iterable[str] = ()):
    """A word-level ``PreTrainedTokenizerFast``: pieces are ``pattern``'s matches; the vocabulary is
    :data:`SPECIAL_TOKENS` then, sorted, ``base_words`` plus every piece of ``texts`` (after
    lower-casing when ``lowercase``). Other pieces map to ``<unk>``.

    Raises ``ValueError`` when a string of ``single_tokens`` (with a leading space, as it
    follows the prompt) is not exactly one token.
    """
    from tokenizers import Tokenizer, models, normalizers
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizer(pattern)
    norm = normalizers.Lowercase() if lowercase else None
    words = set(base_words)
    for text in texts:
        words.update(piece for piece, _ in pre.pre_tokenize_str(norm.normalize_str(text) if norm else text))
    words.difference_update(SPECIAL_TOKENS)
    vocab = {tok: i for i, tok in enumerate(list(SPECIAL_TOKENS) + sorted(words))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    if norm is not None:
        core.normalizer = norm
    core.pre_tokenizer = pre
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>", model_max_length=1024
    )
    for text in single_tokens:
        ids = tok(" " + text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or ids[0] == tok.unk_token_id:
            raise ValueError(f"{text!r} is not a single token of this vocabulary: {ids}")
    return tok


def babyai_tokenizer(texts: Iterable[str] = ()):
    """The BabyAI tokenizer: :data:`BABYAI_BASE_WORDS`, the actions, every compound phrase and the
    pieces of ``texts``; each action is one token (the design's invariant)."""
    return build_word_tokenizer(texts, pattern=BABYAI_PATTERN,
                                base_words=set(BABYAI_BASE_WORDS) | set(ACTIONS) | set(babyai_compound_words()),
                                single_tokens=ACTIONS)


def text_game_tokenizer(texts: Iterable[str]):
    """The text-game tokenizer: a lower-casing word-level tokenizer whose vocabulary is every word of ``texts``."""
    return build_word_tokenizer(texts, pattern=TEXT_GAME_PATTERN, lowercase=True)
