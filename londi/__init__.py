"""LONDI: learn when a text-game agent should pay for a large language model.

The public API::

    from londi import SwitchEnv, LondiDQN, LondiAgent, TrainConfig, train_switch, load_switch

    env = SwitchEnv(make_env("londi/BabyAIText-GoToLocal-v0"), quick, deepthink, call_cost=0.05)
    model = LondiDQN("MultiInputPolicy", env, call_cost=0.05).learn(8000)

The package is organised as:

* :mod:`londi.envs` - gymnasium text environments (BabyAI-Text, ScienceWorld, TextWorld);
* :mod:`londi.agents` - text policies: the LM interface, trained LMs, backends, experts;
* :mod:`londi.switch.env` - ``SwitchEnv``, the switching decision as a gymnasium env;
* :mod:`londi.learn.dqn` - ``LondiDQN``, the stable-baselines3 learner with reward and cost values;
* :mod:`londi.learn.train` - ``TrainConfig``, ``train_switch``, ``load_switch``;
* :mod:`londi.agent` - ``LondiAgent``, a trained switch in your own game loop;
* :mod:`londi.core.meter` - per-call accounting (device-seconds, tokens, FLOPs);
* :mod:`londi.cli` - the ``londi`` command.

The names above are imported on first use (PEP 562), so that ``import londi.envs`` (a
simulator's worker process, ``londi envs``) does not pay for torch and stable-baselines3.
"""
from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

#: public name -> the module that defines it
_EXPORTS = {
    "SwitchEnv": "londi.switch.env",
    "LondiDQN": "londi.learn.dqn",
    "LondiAgent": "londi.agent",
    "TrainConfig": "londi.learn.train",
    "train_switch": "londi.learn.train",
    "load_switch": "londi.learn.train",
    "load_switches": "londi.learn.train",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:  # the names for type checkers; at run time __getattr__ imports them
    from londi.agent import LondiAgent  # noqa: F401
    from londi.learn.dqn import LondiDQN  # noqa: F401
    from londi.learn.train import TrainConfig, load_switch, load_switches, train_switch  # noqa: F401
    from londi.switch.env import SwitchEnv  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'londi' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
