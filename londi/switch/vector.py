"""Several episodes of the switch played side by side, each step's LM calls batched across them.

:class:`SwitchEnvBatch` steps ``N`` :class:`~londi.switch.env.SwitchEnv` copies over the same two
policies in lockstep. At each step it asks each role once for every env that needs it
(:meth:`~londi.agents.base.TextPolicy.act_batch`: one forward over all the prompts for a local
model, concurrent requests for a served one), then hands every env its own answer through the
two halves of ``SwitchEnv.step`` (:meth:`~londi.switch.env.SwitchEnv.begin_step`, the call the
switch's choice needs; :meth:`~londi.switch.env.SwitchEnv.finish_step`, QUICK on the new state).
Everything else (the hard budget, fallbacks, fault counting, metering, rewards) is the
``SwitchEnv``'s own code, run per env.

Each env's switcher keeps its episode's sampling streams (``own_streams``), seeded exactly as a
lone ``SwitchEnv`` reseeds its policies, so an episode draws the same actions whichever envs
play beside it: ``--num-envs N`` gives the per-episode results of ``--num-envs 1`` for the same
seed, up to the floating-point order of a batched forward (which can flip a sampled action that
sits on a boundary; ``scripts/bench_vector.py`` counts such episodes). A policy without stream
support (:attr:`~londi.agents.base.TextPolicy.supports_streams`) that samples draws from its
own single stream, so its episodes depend on what runs beside them.

:func:`run_rule_batched` is :func:`~londi.switch.rollout.run_rule` over such a batch: one rule
copy per env (:func:`spawn_decider`), the episodes in seed order, results in seed order.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from londi.agents.base import BatchAnswer, act_batch, split_timing
from londi.core.errors import TOLERATED_ENV_ERRORS, EnvCrashError
from londi.core.meter import CallRecord, call_clock
from londi.envs.base import TextObservation
from londi.envs.worker import SubprocessEnv
from londi.switch.env import Move, PendingStep, SwitchEnv
from londi.switch.rollout import Decider, EpisodeStats, episode_stats

logger = logging.getLogger(__name__)


@dataclass
class StepInFlight:
    """A :meth:`SwitchEnvBatch.step_start` waiting for its :meth:`SwitchEnvBatch.step_finish`."""

    pending: list[tuple[int, PendingStep]] = field(default_factory=list)
    """Steps already played (games in this process)."""
    moves: list[tuple[int, Move, bool]] = field(default_factory=list)
    """Steps sent to the games' worker processes: ``(env index, move, sent)``."""


class SwitchEnvBatch:
    """``N`` switch envs over the same policies, stepped together with batched LM calls.

    Args:
        envs: the envs; every one must hold the same QUICK and the same DEEPTHINK object and
            keep its own streams (``SwitchEnv(..., own_streams=True)``).
    """

    def __init__(self, envs: Sequence[SwitchEnv]) -> None:
        if not envs:
            raise ValueError("SwitchEnvBatch needs at least one env")
        first = envs[0].switcher
        for i, env in enumerate(envs):
            sw = env.switcher
            if sw.quick is not first.quick or sw.deepthink is not first.deepthink:
                raise ValueError(f"env {i} does not share env 0's QUICK and DEEPTHINK objects: a batch calls "
                                 "each policy once for all its envs")
            if not sw.own_streams:
                raise ValueError(f"env {i} reseeds the shared policies per episode; make it with own_streams=True "
                                 "so that each episode keeps its own sampling streams")
        self.envs = list(envs)
        self.policies = {"quick": first.quick, "deepthink": first.deepthink}
        #: the games run in their own processes (:class:`~londi.envs.worker.SubprocessEnv`):
        #: their resets and steps are started together, then collected
        self.asynchronous = all(isinstance(env.env, SubprocessEnv) for env in self.envs)

    def __len__(self) -> int:
        return len(self.envs)

    @property
    def observation_space(self):
        return self.envs[0].observation_space

    @property
    def action_space(self):
        return self.envs[0].action_space

    # ------------------------------------------------------------------ batched calls
    def _ask(self, requests: Sequence[tuple[int, str, TextObservation]]) -> dict[int, BatchAnswer]:
        """One batched call per role for ``(env index, role, state)`` requests."""
        answers: dict[int, BatchAnswer] = {}
        for role, policy in self.policies.items():
            items = [(i, obs) for i, r, obs in requests if r == role]
            if not items:
                continue
            generators = [self.envs[i].switcher.stream(role) for i, _ in items]
            streams = generators if getattr(policy, "supports_streams", False) else None
            results = act_batch(policy, [obs for _, obs in items], streams)
            if len(results) != len(items):
                raise RuntimeError(f"{role} answered {len(results)} of {len(items)} batched observations")
            answers.update({i: a for (i, _), a in zip(items, results)})
        return answers

    def _quick_requests(self, items: Sequence[tuple[int, TextObservation]]) -> list[tuple[int, str, TextObservation]]:
        return [(i, "quick", obs) for i, obs in items if self.envs[i].switcher.consults_quick_every_step]

    # ------------------------------------------------------------------ the gym-like API, per index
    def reset(self, indices: Sequence[int], seeds: Sequence[int | None]) -> list[tuple[dict[str, np.ndarray], dict]]:
        """Reset the envs at ``indices`` with their seeds; returns ``(obs, info)`` per index."""
        if self.asynchronous:  # every game resets at once, each in its process
            for i, s in zip(indices, seeds):
                self.envs[i].env.reset_async(seed=s)
            firsts = [(i, self.envs[i].start_episode(s, self.envs[i].env.reset_wait()[1]))
                      for i, s in zip(indices, seeds)]
        else:
            firsts = [(i, self.envs[i].begin_reset(seed=s)) for i, s in zip(indices, seeds)]
        answers = self._ask(self._quick_requests(firsts))
        return [self.envs[i].finish_reset(obs, answer=answers.get(i)) for i, obs in firsts]

    def step(self, indices: Sequence[int], actions: Sequence[int]) -> list[tuple[Any, float, bool, bool, dict]]:
        """Step the envs at ``indices`` with the switch's choices; gymnasium's five-tuple per index."""
        return self.step_finish(self.step_start(indices, actions))

    def step_start(self, indices: Sequence[int], actions: Sequence[int]) -> StepInFlight:
        """The first half of :meth:`step`: the calls the choices need (batched), the choices
        carried out and, with games in worker processes, their steps started (not waited for)."""
        planned = []
        for i, a in zip(indices, actions):
            role = self.envs[i].switcher.planned_call(int(a))
            if role is not None:
                planned.append((i, role, self.envs[i].switcher.text_observation))
        answers = self._ask(planned)
        if not self.asynchronous:
            return StepInFlight([(i, self.envs[i].begin_step(int(a), answer=answers.get(i)))
                                 for i, a in zip(indices, actions)])
        moves = []
        for i, a in zip(indices, actions):
            move = self.envs[i].choose_move(int(a), answer=answers.get(i))
            try:
                self.envs[i].env.step_async(move.env_action)
                started = True
            except TOLERATED_ENV_ERRORS:
                started = False
            moves.append((i, move, started))
        return StepInFlight(moves=moves)

    def step_finish(self, step: StepInFlight) -> list[tuple[Any, float, bool, bool, dict]]:
        """The second half of :meth:`step`: the games' answers collected, QUICK asked on the new
        states (batched), the five-tuples."""
        pending = list(step.pending)
        for i, move, started in step.moves:
            try:
                result: Any = self.envs[i].env.step_wait() if started else EnvCrashError("the env worker is gone")
            except TOLERATED_ENV_ERRORS as exc:
                result = exc
            pending.append((i, self.envs[i].apply_env_step(move, result)))
        quick = self._ask(self._quick_requests([(i, p.next_text_obs) for i, p in pending if not p.done]))
        return [self.envs[i].finish_step(p, answer=quick.get(i)) for i, p in pending]

    def close(self) -> None:
        for env in self.envs:
            env.close()


# ------------------------------------------------------------------------------ playing rules
def spawn_decider(rule: Any) -> Any:
    """A copy of ``rule`` for one of several episodes played side by side: ``rule.spawn()``
    where it has one (:meth:`~londi.rules.base.SwitchRule.spawn`), else a deep copy."""
    spawn = getattr(rule, "spawn", None)
    return spawn() if callable(spawn) else copy.deepcopy(rule)


def _choose_all(rule: Any, copies: Sequence[Any], obs: Sequence[dict], ctxs: Sequence[Any]) -> list[int]:
    batch = getattr(rule, "choose_batch", None)
    if callable(batch):  # a rule without per-episode state decides for all envs in one pass
        return [int(c) for c in batch(obs, ctxs)]
    return [int(r.choose(o, c)) for r, o, c in zip(copies, obs, ctxs)]


def run_rule_batched(
    rule: Decider,
    batch: SwitchEnvBatch,
    seeds: Sequence[int],
    *,
    progress: bool = True,
    desc: str | None = None,
    on_episode: Callable[[int, EpisodeStats, dict[str, Any]], None] | None = None,
) -> list[EpisodeStats]:
    """:func:`~londi.switch.rollout.run_rule` with ``len(batch)`` episodes at a time.

    Episodes start in seed order as envs free up; results come back in seed order, and
    ``on_episode`` is called in seed order too. The rule's decision time for a step of all envs
    is metered as switch cost, shared out equally among them.
    """
    n = len(batch)
    copies = [spawn_decider(rule) for _ in range(n)]
    results: list[EpisodeStats | None] = [None] * len(seeds)
    infos: list[dict[str, Any] | None] = [None] * len(seeds)
    slot_episode: list[int | None] = [None] * n
    obs: list[dict | None] = [None] * n
    next_episode = 0
    reported = 0
    faults = 0
    bar = tqdm(total=len(seeds), desc=desc or rule.name, disable=not progress, leave=False)

    def start(slots: list[int]) -> None:
        nonlocal next_episode
        starting = []
        for slot in slots:
            if next_episode < len(seeds):
                slot_episode[slot] = next_episode
                starting.append(slot)
                next_episode += 1
            else:
                slot_episode[slot] = None
        for slot, (o, _info) in zip(starting, batch.reset(starting, [int(seeds[slot_episode[s]]) for s in starting])):
            obs[slot] = o
            copies[slot].reset()

    def launch(group: list[int]) -> StepInFlight | None:
        """The rule's choices for the group's live episodes, and their step started."""
        active = [s for s in group if slot_episode[s] is not None]
        if not active:
            return None
        ctxs = [batch.envs[s].step_context() for s in active]
        with call_clock() as clock:
            choices = _choose_all(rule, [copies[s] for s in active], [obs[s] for s in active], ctxs)
        for s, share in zip(active, split_timing(clock, [1.0] * len(active))):
            batch.envs[s].add_switch_cost(CallRecord(
                model=f"rule:{rule.name}", device_seconds=max(share.process_cpu_seconds, share.thread_cpu_seconds),
                wall_seconds=share.wall_seconds))
        return batch.step_start(active, choices)

    def land(step: StepInFlight) -> None:
        """The step's results: the rules observe them, finished episodes are recorded and replaced."""
        nonlocal reported, faults
        finished = []
        for s, (o, _r, terminated, truncated, info) in zip([i for i, _ in step.pending] + [i for i, _, _ in step.moves],
                                                             batch.step_finish(step)):
            copies[s].observe(info)
            obs[s] = o
            if terminated or truncated:
                episode = slot_episode[s]
                results[episode] = episode_stats(info)
                infos[episode] = info
                acc = info["accounting"]
                faults += acc.policy_errors + acc.env_errors
                finished.append(s)
        while reported < len(seeds) and results[reported] is not None:
            if on_episode is not None:
                on_episode(reported, results[reported], infos[reported])
            infos[reported] = None
            reported += 1
            bar.update(1)
        if finished:
            start(finished)

    # With the games in worker processes, the envs play in two groups: while one group's games
    # step, this process runs the LMs and the switch for the other.
    groups = [list(range(0, n, 2)), list(range(1, n, 2))] if batch.asynchronous and n > 1 else [list(range(n))]
    try:
        start(list(range(n)))
        in_flight = [launch(g) for g in groups]
        while any(step is not None for step in in_flight):
            for k, group in enumerate(groups):
                step = in_flight[k]
                if step is not None:
                    land(step)
                    in_flight[k] = launch(group)
    finally:
        bar.close()
    if faults:
        logger.warning("%s: %d policy/env faults over %d episodes (counted in results)", rule.name, faults, len(seeds))
    return [r for r in results if r is not None]


__all__ = ["SwitchEnvBatch", "run_rule_batched", "spawn_decider"]
