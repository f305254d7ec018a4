"""Text policies for LONDI (installed as ``londi.agents``): the policy interface, experts
(oracles), in-project language models and the Hugging Face / HTTP backends."""
from londi.agents.base import Decision, TextPolicy
from londi.agents.checkpoints import DEFAULT_DEEPTHINK, DEFAULT_QUICK, SHIPPED_MODELS, shipped_models_dir
from londi.agents.expert import OracleExpert
from londi.agents.lm import HFPolicy, load_policy

__all__ = ["DEFAULT_DEEPTHINK", "DEFAULT_QUICK", "SHIPPED_MODELS", "Decision", "HFPolicy", "OracleExpert", "TextPolicy", "load_policy", "shipped_models_dir"]
