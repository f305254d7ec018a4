"""LONDI: learn when a text-game agent should pay for a large language model.

The package is organised as:

* :mod:`londi.envs` - gymnasium text environments (BabyAI-Text, ScienceWorld, TextWorld);
* :mod:`londi.agents` - text policies: the LM interface, trained LMs, backends, experts;
* :mod:`londi.meter` - per-call accounting (device-seconds, tokens, FLOPs);
* :mod:`londi.cli` - the ``londi`` command.
"""
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
