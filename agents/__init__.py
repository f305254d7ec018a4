"""Text policies for LONDI (installed as ``londi.agents``): the policy interface, experts
(oracles), in-project language models and the Hugging Face / HTTP backends."""
from londi.agents.base import Decision, TextPolicy
from londi.agents.expert import OracleExpert

__all__ = ["Decision", "OracleExpert", "TextPolicy"]
