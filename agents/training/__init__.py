"""Training the shipped LMs (installed as ``londi.agents.training``): behaviour cloning from the
env's oracle with DAgger rounds, into Hugging Face checkpoints that ``load_policy`` loads.

One concern per module:

==================  ============================================================================
``specs``           :class:`ModelSpec` (architecture, prompt, data, schedule, decoding) and the
                    named recipes of every shipped pair; ``--set`` overrides
``tokenizer``       the word-level tokenizers (BabyAI phrases as single tokens; lower-cased words)
``rollout``         expert demonstrations and DAgger roll-ins over any ``TextPolicy`` (or a
                    batched actor) plus the oracle, every state labelled by the oracle
``trainer``         :class:`Learner` (model, data, the training loop) and the DAgger schedule
``checkpoint``      ``save_pretrained`` + ``londi_policy.json``, then ``MODEL_CARD.md`` + ``SHA256SUMS``
``evaluation``      held-out episodes with a trained model in control, and their tables
``cards``           the model cards' text
``babyai``          the BabyAI-Text pairs: the action-token learner, its auxiliary heads, its recipe
``textgames``       the TextWorld / ScienceWorld pairs: setups, the command learner, its recipe
==================  ============================================================================

``scripts/train_lms.py`` (BabyAI-Text), ``scripts/train_text_lms.py`` (TextWorld, ScienceWorld)
and ``scripts/bench_lms.py`` are command lines over these. Layering: this package imports only
the leaf modules (``londi.core.errors``, ``londi.core.io``, ``londi.core.meter``, ``londi.core.seeds``),
``londi.envs`` and ``londi.agents``, never the switch.
"""
from londi.agents.training.checkpoint import finish_checkpoint, policy_settings, save_checkpoint
from londi.agents.training.rollout import Collected, Sample, policy_actor, rollin_episode, rollin_lockstep
from londi.agents.training.specs import HELDOUT_SEED_START, TRAIN_SEED_START, ModelSpec, apply_overrides
from londi.agents.training.trainer import Learner, run_dagger

__all__ = [
    "HELDOUT_SEED_START",
    "TRAIN_SEED_START",
    "Collected",
    "Learner",
    "ModelSpec",
    "Sample",
    "apply_overrides",
    "finish_checkpoint",
    "policy_actor",
    "policy_settings",
    "rollin_episode",
    "rollin_lockstep",
    "run_dagger",
    "save_checkpoint",
]
