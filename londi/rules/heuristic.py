"""``heuristic``: SwiftSage-style hand rules that escalate when QUICK looks stuck.

The rule reads only what already happened (the executed action, the observation text, the
reward and the count of invalid actions), so it needs no features and QUICK is called only when
chosen: the cheapest rule that reacts to the state. SwiftSage switches from its small to its
large model after failed actions, loops or no reward for ``k`` steps, and back after a few large
model steps; :class:`HeuristicSwitch` is that rule with each trigger a parameter.
"""
from __future__ import annotations

from collections import Counter, deque
from typing import Any

import numpy as np

from londi.core.errors import ConfigError
from londi.rules.base import SwitchRule
from londi.rules.offline import can_call
from londi.switch.accounting import DEEPTHINK, QUICK
from londi.switch.context import StepContext


class HeuristicSwitch(SwitchRule):
    """SwiftSage-style hand rules: QUICK acts until it looks stuck, then DEEPTHINK acts for a
    few steps, then control returns to QUICK.

    The rule looks only at what happened (the executed action, the observation text, the reward
    and the env's count of invalid actions), so it does not consult QUICK in advance (it
    declares no features) and costs nothing but a few comparisons. It escalates when:

    * **failed or invalid actions**: at least ``fail_limit`` of the last ``fail_window`` actions
      failed. An action fails when it leaves the observation text unchanged (in BabyAI-Text a
      move into a wall, ``toggle`` or ``pick up`` with nothing in front) or when the chosen
      model answered with a non-admissible action or raised (``invalid_actions`` /
      ``policy_errors`` of the accounting grow);
    * **a loop**: the same (observation text, action) pair occurs twice within the last
      ``loop_window`` steps (e.g. four ``turn left`` in a row bring back the same view);
    * **a repeated action**: the same action ``repeat_limit`` times in a row (0 disables it);
    * **no reward**: ``patience`` steps without a positive reward (SwiftSage's ``k``; 0
      disables it). BabyAI rewards only success, so the default is longer than SwiftSage's 5.

    After a trigger DEEPTHINK acts for ``deepthink_steps`` steps (fewer if a hard budget runs
    out) and all the trigger memories are cleared, so the next escalation needs new evidence.

    Args:
        fail_limit: failed/invalid actions that trigger an escalation (default 2).
        fail_window: how many recent actions are counted for ``fail_limit`` (default 3).
        loop_window: steps within which a repeated (text, action) pair is a loop (default 8; 0
            disables loop detection).
        repeat_limit: identical consecutive actions that trigger an escalation (default 5).
        patience: steps without reward that trigger an escalation (default 15).
        deepthink_steps: DEEPTHINK steps per escalation (default 3).
    """

    features = None

    def __init__(
        self,
        *,
        fail_limit: int = 2,
        fail_window: int = 3,
        loop_window: int = 8,
        repeat_limit: int = 5,
        patience: int = 15,
        deepthink_steps: int = 3,
    ) -> None:
        for key, value, low in (("fail_limit", fail_limit, 1), ("fail_window", fail_window, 1),
                                ("loop_window", loop_window, 0), ("repeat_limit", repeat_limit, 0),
                                ("patience", patience, 0), ("deepthink_steps", deepthink_steps, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"heuristic: {key} must be an integer >= {low}, got {value!r}")
        if fail_limit > fail_window:
            raise ConfigError(f"heuristic: fail_limit ({fail_limit}) cannot exceed fail_window ({fail_window})")
        self.fail_limit = fail_limit
        self.fail_window = fail_window
        self.loop_window = loop_window
        self.repeat_limit = repeat_limit
        self.patience = patience
        self.deepthink_steps = deepthink_steps
        self.name = "heuristic"
        #: How often each trigger fired since the rule was made (for analysis).
        self.trigger_counts: Counter = Counter()
        self.reset()

    def reset(self) -> None:
        self._pending = 0
        self._text_before: str | None = None
        self._faults_seen = 0
        self._clear_memory()

    def _clear_memory(self) -> None:
        self._fails: deque[bool] = deque(maxlen=self.fail_window)
        self._pairs: deque[tuple[str, str]] = deque(maxlen=max(self.loop_window, 1))
        self._last_action: str | None = None
        self._repeats = 0
        self._dry_steps = 0

    def choose(self, obs: dict[str, np.ndarray], ctx: StepContext) -> int:
        self._text_before = ctx.text_obs.text
        if self._pending > 0:
            self._pending -= 1
            return DEEPTHINK if can_call(obs) else QUICK
        return QUICK

    def observe(self, info: dict[str, Any]) -> None:
        acc = info.get("accounting")
        faults = (acc.invalid_actions + acc.policy_errors) if acc is not None else self._faults_seen
        invalid = faults > self._faults_seen
        self._faults_seen = faults
        if self._pending > 0 or info.get("choice") == "deepthink":
            # DEEPTHINK's own steps are not evidence against QUICK.
            return
        text_obs = info.get("text_obs")
        text_after = getattr(text_obs, "text", None)
        action = str(info.get("executed_action"))
        unchanged = self._text_before is not None and text_after == self._text_before
        self._fails.append(bool(unchanged or invalid))
        reason = None
        if sum(self._fails) >= self.fail_limit:
            reason = "failed actions"
        if self.loop_window and self._text_before is not None:
            pair = (self._text_before, action)
            if reason is None and pair in self._pairs:
                reason = "loop"
            self._pairs.append(pair)
        self._repeats = self._repeats + 1 if action == self._last_action else 1
        self._last_action = action
        if reason is None and self.repeat_limit and self._repeats >= self.repeat_limit:
            reason = "repeated action"
        self._dry_steps = 0 if float(info.get("env_reward", 0.0)) > 0 else self._dry_steps + 1
        if reason is None and self.patience and self._dry_steps >= self.patience:
            reason = "no reward"
        if reason is not None:
            self.trigger_counts[reason] += 1
            self._pending = self.deepthink_steps
            self._clear_memory()


__all__ = ["HeuristicSwitch"]
