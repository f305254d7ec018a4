"""The recipes of the shipped LMs: :class:`ModelSpec` (architecture, prompt, data, schedule,
decoding) and the named specs of the BabyAI pairs and the TextWorld/ScienceWorld pairs.

``--set MODEL.FIELD=VALUE`` on the training command lines is :func:`apply_overrides`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from londi.core.seeds import HELDOUT_SEED_BASE, LM_TRAIN_SEED_START
from londi.envs.registration import DEFAULT_ENV_ID

#: The env of the task-mix pair: go-to, pick-up (with location words) and put-next-to levels,
#: one drawn per episode.
MIX_ENV_ID = "londi/BabyAIText-MixedTrainLocal-v0"

#: Training episodes use env seeds from here upwards (held-out evaluation seeds lie below).
TRAIN_SEED_START = LM_TRAIN_SEED_START
#: First env seed of the LMs' held-out evaluation episodes (500,000 + i, never trained on).
HELDOUT_SEED_START = HELDOUT_SEED_BASE
#: Values of :attr:`ModelSpec.augment`.
AUGMENTATIONS = ("none", "colours", "colours+mirror")


@dataclass
class ModelSpec:
    """Architecture, prompt and training schedule of one model."""

    name: str
    """Folder name under the output directory (``quick`` / ``deepthink``)."""
    hidden_size: int
    """Model width (d_model)."""
    num_layers: int
    """Transformer blocks."""
    num_heads: int
    """Attention heads (hidden_size must be divisible by it)."""
    intermediate_size: int
    """Width of the SwiGLU feed-forward layer."""
    history_length: int
    """Past (observation, action) pairs in the prompt."""
    demo_episodes: int
    """Expert episodes for the first dataset (TextWorld: unused, one per training game;
    ScienceWorld: per task)."""
    dagger_rounds: int
    """DAgger rounds after the expert data."""
    dagger_episodes: int
    """Episodes rolled in by the learner per DAgger round."""
    dagger_beta: float
    """Probability that the expert acts in the first DAgger round (halved each round)."""
    epochs_demo: float
    """Passes over the expert data before the first DAgger round."""
    epochs_round: float
    """Passes over the aggregated data after each DAgger round."""
    batch_size: int = 64
    """Training batch size."""
    lr: float = 2e-3
    """Peak learning rate (AdamW, warm-up then cosine decay per phase)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    list_actions: bool = False
    """List the admissible actions in the prompt (scoring models do not need them)."""
    lm_loss_weight: float = 0.0
    """BabyAI only: weight of the auxiliary next-token loss on the prompt's text (see
    :meth:`londi.agents.training.babyai.ActionLearner.batch_loss`)."""
    aux_weight: float = 1.0
    """BabyAI only: weight of the training-only auxiliary head that predicts, from the state at
    the prompt's last token, where the goal object is in the current observation (see
    :func:`londi.agents.training.babyai.goal_offset`)."""
    match_weight: float = 1.0
    """BabyAI only: weight of the training-only auxiliary head that predicts, at every object
    token of the prompt and at the offset token after it, whether that object is the mission's."""
    temperature: float = 0.5
    """Decoding saved with the model (``londi_policy.json``) and used in the DAgger roll-ins:
    the action distribution is ``softmax(log-likelihood / temperature)``."""
    sample: bool = True
    """Draw the action from that distribution (``True``) or take the most likely one. Sampling
    keeps a cloned policy from repeating the same mistake in a loop (a deterministic policy that
    turns left where the expert turned right, then right where it turned left, never escapes)."""
    augment: str = "colours"
    """BabyAI only: data augmentation per training sample: ``"none"``; ``"colours"`` (rename
    colours and object types consistently across goal, observations and history: the expert's
    choice does not depend on them, and it forces the model to match the goal to the line
    instead of learning per-colour shortcuts); ``"colours+mirror"`` (also swap left and right)."""

    env: str = DEFAULT_ENV_ID
    """BabyAI only: the env whose episodes the demonstrations and DAgger roll-ins are drawn from
    (``londi/BabyAIText-MixedTrainLocal-v0`` for the task-mix pair); the held-out evaluation
    measures each of its levels."""
    init_from: str = ""
    """BabyAI only: a shipped model (by name) whose weights and tokenizer training starts from;
    empty for random weights. ``--init-from`` on the command line takes precedence."""
    levels: str = ""
    """BabyAI only: for a mixed ``env``, the levels its training episodes draw from, comma-separated
    (e.g. ``"GoToLocal,PickupLoc,PickupLoc,PutNextLocal"``: a level named twice is drawn twice as
    often); empty for the env's own mix. The held-out evaluation still measures each level alone."""

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"{self.name}: hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if not self.temperature > 0:
            raise ValueError(f"{self.name}: temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.dagger_beta <= 1.0:
            raise ValueError(f"{self.name}: dagger_beta must be in [0, 1], got {self.dagger_beta}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"{self.name}: augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        if self.levels and self.env != MIX_ENV_ID:
            raise ValueError(f"{self.name}: levels is only for env {MIX_ENV_ID!r}, got env {self.env!r}")
        for field_name in ("demo_episodes", "batch_size", "num_layers", "hidden_size"):
            if getattr(self, field_name) <= 0:
                raise ValueError(f"{self.name}: {field_name} must be positive")

    def level_names(self) -> tuple[str, ...] | None:
        """:attr:`levels` as a tuple for the env's ``levels`` argument; ``None`` for the env's own."""
        return tuple(name.strip() for name in self.levels.split(",") if name.strip()) or None

    def dagger_beta_at(self, round_index: int) -> float:
        """The expert's share in DAgger round ``round_index`` (0-based): halved every round."""
        return self.dagger_beta * 0.5**round_index


#: BabyAI fields that the text-game checkpoints leave out of their ``londi_policy.json``.
BABYAI_ONLY_FIELDS = ("aux_weight", "match_weight", "augment", "lm_loss_weight", "env", "init_from",
                      "levels")

# ------------------------------------------------------------------------------ BabyAI-Text
#: QUICK: one tiny layer without history, trained briefly on expert demonstrations only. One
#: attention layer cannot match the mission to a line of the observation, so it learns what the
#: text shows without that match (walk on, turn at walls): right when the goal is straight ahead,
#: often wrong when it is off to the side or out of view.
QUICK = ModelSpec(
    name="quick", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, history_length=0,
    demo_episodes=600, dagger_rounds=0, dagger_episodes=0, dagger_beta=0.5,
    epochs_demo=4.0, epochs_round=0.0, lr=3e-3, augment="none", aux_weight=0.0, match_weight=0.0,
)
#: DEEPTHINK: eight wider layers that read the last three steps, expert data plus DAgger rounds,
#: and the two auxiliary heads that teach it to find the mission's object in the observation.
DEEPTHINK = ModelSpec(
    name="deepthink", hidden_size=192, num_layers=8, num_heads=6, intermediate_size=512, history_length=3,
    demo_episodes=1500, dagger_rounds=2, dagger_episodes=500, dagger_beta=0.5,
    epochs_demo=3.0, epochs_round=1.0, lr=1e-3,
)
#: The default pair (``quick-dagger``, ``deepthink-dagger``): the same architectures, trained with
#: learner-led DAgger rounds (a low ``dagger_beta``, so that the model itself acts on most roll-in
#: steps and its own mistakes get labelled). QUICK then succeeds on 0.680 of the held-out episodes
#: and DEEPTHINK on 0.975 (docs/models.md). DEEPTHINK-DAGGER's shipped weights were trained with
#: this recipe on a lent GPU (321 s, its model card); QUICK-DAGGER's on the 2-core CPU (55 s).
QUICK_DAGGER = replace(QUICK, name="quick-dagger", dagger_rounds=3, dagger_episodes=300, dagger_beta=0.25,
                       epochs_round=2.0)
DEEPTHINK_DAGGER = replace(DEEPTHINK, name="deepthink-dagger", demo_episodes=3000, dagger_rounds=3,
                           dagger_episodes=1000, dagger_beta=0.25, epochs_demo=4.0, epochs_round=1.5)
#: The task-mix pair (``quick-mix``, ``deepthink-mix``). QUICK-MIX is QUICK-DAGGER's recipe on the
#: mix, from random weights. DEEPTHINK-MIX starts from DEEPTHINK-DAGGER's weights (it already
#: finds and reaches the mission's object, and its tokenizer has every word of the mix), then
#: learns picking up and putting next to from the mix's expert data and learner-led DAgger
#: rounds: a fine-tuning run that fits a 2-core CPU, where the from-scratch recipe takes hours.
QUICK_MIX = replace(QUICK_DAGGER, name="quick-mix", env=MIX_ENV_ID, demo_episodes=900)
DEEPTHINK_MIX = replace(DEEPTHINK_DAGGER, name="deepthink-mix", env=MIX_ENV_ID, init_from="deepthink-dagger",
                        demo_episodes=1500, dagger_rounds=3, dagger_episodes=600, dagger_beta=0.25,
                        epochs_demo=3.0, epochs_round=1.0, lr=7e-4)
#: Every BabyAI spec by name.
BABYAI_SPECS = {"quick-dagger": QUICK_DAGGER, "deepthink-dagger": DEEPTHINK_DAGGER, "quick": QUICK,
                "deepthink": DEEPTHINK, "quick-mix": QUICK_MIX, "deepthink-mix": DEEPTHINK_MIX}
#: What ``train_lms.py --models`` trains by default: the default pair.
DEFAULT_MODELS = ["quick-dagger", "deepthink-dagger"]
#: ``--small``: the whole pipeline (demos, a DAgger round, saving) in well under two minutes.
_SMALL_QUICK = replace(QUICK, demo_episodes=150, epochs_demo=4.0)
_SMALL_DEEPTHINK = replace(
    DEEPTHINK, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, history_length=1,
    demo_episodes=120, dagger_rounds=1, dagger_episodes=40, epochs_demo=4.0, epochs_round=2.0, lr=2e-3,
)
BABYAI_SMALL = {
    "quick": _SMALL_QUICK,
    "deepthink": _SMALL_DEEPTHINK,
    "quick-dagger": replace(_SMALL_QUICK, name="quick-dagger", dagger_rounds=1, dagger_episodes=40, dagger_beta=0.25,
                            epochs_round=2.0),
    "deepthink-dagger": replace(_SMALL_DEEPTHINK, name="deepthink-dagger", dagger_beta=0.25),
    "quick-mix": replace(_SMALL_QUICK, name="quick-mix", env=MIX_ENV_ID),
    "deepthink-mix": replace(_SMALL_DEEPTHINK, name="deepthink-mix", env=MIX_ENV_ID),
}

# ------------------------------------------------------------------------------ TextWorld / ScienceWorld
#: The text games with a trained pair.
GAMES = ("textworld", "scienceworld")
# A tiny one-layer QUICK without history; a deeper, wider DEEPTHINK that reads the last steps.
_TEXT_QUICK = dict(name="quick", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, history_length=0,
                   lr=3e-3, augment="none", aux_weight=0.0, match_weight=0.0, temperature=0.5, sample=True,
                   batch_size=32)
_TEXT_DEEP = dict(name="deepthink", hidden_size=64, num_layers=2, num_heads=4, intermediate_size=192, history_length=1,
                  lr=2e-3, augment="none", aux_weight=0.0, match_weight=0.0, temperature=0.5, sample=True,
                  batch_size=32)
TEXT_SPECS: dict[str, dict[str, ModelSpec]] = {
    # TextWorld: one oracle episode per training game (demo_episodes is not used); DAgger
    # episodes are rounded to whole passes over the games.
    "textworld": {
        "quick": ModelSpec(**_TEXT_QUICK, demo_episodes=40, dagger_rounds=0, dagger_episodes=0, dagger_beta=0.5,
                           epochs_demo=12.0, epochs_round=0.0),
        "deepthink": ModelSpec(**_TEXT_DEEP, demo_episodes=40, dagger_rounds=1, dagger_episodes=40, dagger_beta=0.3,
                               epochs_demo=12.0, epochs_round=6.0),
    },
    # demo_episodes per task. 40 demonstrations and no DAgger gave a DEEPTHINK no better than
    # chance on held-out variations; 150 plus one DAgger round made the shipped pair.
    "scienceworld": {
        "quick": ModelSpec(**_TEXT_QUICK, demo_episodes=150, dagger_rounds=0, dagger_episodes=0, dagger_beta=0.0,
                           epochs_demo=10.0, epochs_round=0.0),
        "deepthink": ModelSpec(**_TEXT_DEEP, demo_episodes=150, dagger_rounds=1, dagger_episodes=60, dagger_beta=0.3,
                               epochs_demo=20.0, epochs_round=8.0),
    },
}
#: ``train_text_lms.py --small``: tiny data and models.
TEXT_SMALL = {
    game: {
        "quick": replace(specs["quick"], demo_episodes=3, epochs_demo=15.0),
        "deepthink": replace(specs["deepthink"], hidden_size=48, num_layers=2, num_heads=2, intermediate_size=96,
                             demo_episodes=3, dagger_rounds=1 if game == "textworld" else 0, dagger_episodes=3,
                             epochs_demo=15.0, epochs_round=5.0),
    }
    for game, specs in TEXT_SPECS.items()
}


def _parse_bool(value: str) -> bool:
    if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"not a boolean: {value!r}")
    return value.lower() in ("true", "1")


def apply_overrides(specs: dict[str, ModelSpec], overrides: list[str]) -> dict[str, ModelSpec]:
    """``MODEL.FIELD=VALUE`` strings applied to copies of ``specs`` (values parsed by the field's
    type); ``specs`` itself is not changed. Raises ``ValueError`` naming the bad item."""
    types = {f.name: (f.type if isinstance(f.type, str) else f.type.__name__) for f in fields(ModelSpec)}
    parsers = {"int": int, "float": float, "str": str, "bool": _parse_bool}
    out = dict(specs)
    for item in overrides:
        key, sep, value = item.partition("=")
        model, dot, field_name = key.partition(".")
        if not sep or not dot or model not in out or field_name not in types or field_name == "name":
            raise ValueError(f"--set {item!r}: expected MODEL.FIELD=VALUE with MODEL in {sorted(out)} and FIELD a "
                             "ModelSpec field")
        try:
            out[model] = replace(out[model], **{field_name: parsers[types[field_name]](value)})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--set {item!r}: {exc}") from exc
    return out
