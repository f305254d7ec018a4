"""Expert policies. **These are oracles**: they read privileged game state, and are used for
labels (DAgger, router training, the hindsight oracle), upper bounds and controlled experiments.
They are never presented as language models."""
from __future__ import annotations

import time

from londi.agents.base import Decision, TextPolicy
from londi.envs.base import TextObservation
from londi.errors import LondiError
from londi.meter import CallRecord


class OracleExpert(TextPolicy):
    """Plays the expert action that an environment attaches to each observation.

    Environments that can run an expert alongside the game (BabyAI-Text with Minigrid's
    ``BabyAIBot``, TextWorld with ``policy_commands``, ScienceWorld with its gold path) put its
    choice in :attr:`TextObservation.oracle_action`. The BabyAI bot there is told the action
    actually taken at every step, whichever policy chose it, so its advice stays correct.
    """

    name = "expert (oracle)"
    is_oracle = True

    def act(self, obs: TextObservation) -> Decision:
        t0 = time.perf_counter()
        action = obs.oracle_action
        if action is None:
            raise LondiError(
                "this environment gives no oracle action; create it with expert=True "
                "(BabyAI-Text, TextWorld and ScienceWorld support an expert)"
            )
        if action not in obs.admissible_actions:
            # A bot suggestion outside the action set (e.g. BabyAI's 'done') is mapped by the env;
            # anything else is a bug in the env and must not be executed silently.
            raise LondiError(f"oracle action {action!r} is not admissible")
        rec = CallRecord(model="oracle", device="oracle", wall_seconds=time.perf_counter() - t0)
        return Decision(action=action, record=rec)
