"""Expert policies. **These are oracles**: they read privileged game state, and are used for
labels (DAgger, router training, the hindsight oracle), upper bounds and controlled experiments.
They are never presented as language models."""
from __future__ import annotations

import time

from londi.agents.base import Decision, TextPolicy
from londi.core.errors import LondiError
from londi.core.meter import CallRecord
from londi.envs.base import TextObservation


class OracleExpert(TextPolicy):
    """Plays the expert action that an environment attaches to each observation.

    Environments that can run an expert alongside the game (BabyAI-Text with Minigrid's
    ``BabyAIBot``, TextWorld with ``policy_commands``, ScienceWorld with its gold path) put its
    choice in :attr:`TextObservation.oracle_action`. The BabyAI bot there is told the action
    actually taken at every step, whichever policy chose it, so its advice stays correct.
    ScienceWorld spells each gold action as its valid-action list does (and stands an
    observation in for a gold no-op), so the label is always one of ``admissible_actions``
    and nothing is added to the candidates (``envs/scienceworld.py``, *Expert*).

    The expert plays only admissible actions: a label outside ``admissible_actions`` is a bug
    in the env (or, on ScienceWorld, a gold command with no equivalent in the valid list) and
    raises :class:`~londi.core.errors.LondiError` rather than being executed silently.
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
            raise LondiError(
                f"oracle action {action!r} is not admissible (not in this step's "
                f"{len(obs.admissible_actions)} admissible actions)"
            )
        rec = CallRecord(model="oracle", device="oracle", wall_seconds=time.perf_counter() - t0)
        return Decision(action=action, record=rec)
