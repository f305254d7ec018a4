"""Expert demonstrations and DAgger roll-ins: a learner plays, the oracle labels every state.

Every state visited is labelled with the env's expert action, ``TextObservation.oracle_action``
(**an oracle**: BabyAI's bot, TextWorld's ``policy_commands``, ScienceWorld's gold path), when
that action is admissible. Who plays is mixed per step: with probability ``beta`` the oracle,
otherwise the learner (DAgger's roll-in policy ``beta * expert + (1 - beta) * learner``);
without a learner the oracle plays alone (expert demonstrations).

The learner is any :class:`~londi.agents.base.TextPolicy` (:func:`rollin_episode`, one env and
one episode at a time; or :func:`policy_actor` for :func:`rollin_lockstep`) or a
:data:`BatchActor`, a function from a batch of observations to actions, which
:func:`rollin_lockstep` calls once per step for all the envs it plays in parallel (the BabyAI
trainer's batched forward pass).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from londi.envs.base import TextObservation

#: A learner that acts on a batch of observations at once (``None``: let the oracle act).
BatchActor = Callable[[list[TextObservation]], Sequence["str | None"]]


@dataclass
class Sample:
    """One labelled state."""

    obs: TextObservation
    """What the learner saw (for ScienceWorld, the history without the oracle's non-admissible moves)."""
    label: str
    """The oracle's action in that state."""


class Collected(NamedTuple):
    """What a collection returns (a tuple: ``samples, successes, episodes = collect(...)``)."""

    samples: list[Sample]
    successes: int
    episodes: int


def oracle_label(obs: TextObservation) -> str | None:
    """The oracle's action if it is admissible (a model only ever plays admissible actions), else None."""
    oracle = obs.oracle_action
    return oracle if oracle is not None and oracle in obs.admissible_actions else None


def policy_actor(policy: Any) -> BatchActor:
    """A :data:`BatchActor` over any ``TextPolicy`` (one ``act`` per observation, in order)."""
    return lambda observations: [policy.act(obs).action for obs in observations]


def rollin_lockstep(envs: Sequence[Any], seeds, *, actor: BatchActor | None = None, beta: float = 1.0, rng=None,
                    fallback_action: str | None = None, desc: str = "collect", progress: bool = True) -> Collected:
    """Play one episode per seed on ``envs`` in parallel (each env takes the next seed when its
    episode ends); label every state with the oracle.

    ``actor(list_of_obs) -> list_of_actions`` is the learner, asked once per step for every
    running env; then, per env, with probability ``beta`` (drawn from ``rng``) the oracle's
    action is played instead. ``actor=None`` plays the oracle alone (no draws). Where neither has
    an action, ``fallback_action`` (default: the first admissible action) is played.
    """
    from tqdm.auto import tqdm

    seeds = list(seeds)
    samples: list[Sample] = []
    successes = 0
    next_seed = 0
    slots: list = [None] * len(envs)  # current obs per env, None when idle
    bar = tqdm(total=len(seeds), desc=desc, leave=False, disable=not progress)

    def start(i: int) -> None:
        nonlocal next_seed
        if next_seed < len(seeds):
            _, info = envs[i].reset(seed=int(seeds[next_seed]))
            next_seed += 1
            slots[i] = info["text_obs"]
        else:
            slots[i] = None

    for i in range(len(envs)):
        start(i)
    while any(s is not None for s in slots):
        active = [i for i, s in enumerate(slots) if s is not None]
        obs_list = [slots[i] for i in active]
        learner = actor(obs_list) if actor is not None else [None] * len(active)
        for i, obs, mine in zip(active, obs_list, learner):
            oracle = obs.oracle_action
            label = oracle_label(obs)
            if label is not None:
                samples.append(Sample(obs, label))
            use_expert = mine is None or (oracle is not None and rng is not None and rng.random() < beta)
            fallback = fallback_action if fallback_action is not None else obs.admissible_actions[0]
            action = oracle if use_expert and oracle is not None else (mine or fallback)
            _, _, term, trunc, info = envs[i].step(action)
            if term or trunc:
                successes += int(info.get("success", False))
                bar.update(1)
                start(i)
            else:
                slots[i] = info["text_obs"]
    bar.close()
    return Collected(samples, successes, len(seeds))


def without_steps(obs: TextObservation, dropped: set[int]) -> TextObservation:
    """``obs`` with the history entries at absolute steps in ``dropped`` removed."""
    if not dropped:
        return obs
    first = obs.step - len(obs.history)
    hist = tuple(h for k, h in enumerate(obs.history) if first + k not in dropped)
    return replace(obs, history=hist)


def rollin_episode(env: Any, seed: int, *, policy: Any = None, beta: float = 1.0, rng=None,
                   reset_options: dict | None = None) -> tuple[list[Sample], bool, float]:
    """One episode on ``env``; the oracle labels every state; returns ``(samples, success, return)``.

    With ``policy`` (any ``TextPolicy``; reset and seeded with ``seed`` first), per step the
    oracle acts with probability ``beta`` (drawn from ``rng`` before the policy is asked) and
    the policy otherwise. Without, the oracle plays, also its non-admissible commands
    (ScienceWorld's open-loop gold path): those are played but not learned, and dropped from
    the history the learner sees (with the observation they produced), since a model only ever
    plays admissible actions. The episode stops when the oracle should act and has no action.
    """
    _, info = env.reset(seed=int(seed), options=reset_options)
    obs = info["text_obs"]
    samples: list[Sample] = []
    dropped: set[int] = set()
    ret, done = 0.0, False
    carried = None  # the text a model would still see after dropped moves (not "The door is already open.")
    if policy is not None:
        policy.reset()
        policy.set_seed(int(seed))
    while not done:
        oracle = obs.oracle_action
        clean = without_steps(obs, dropped)
        if carried is not None:
            clean = replace(clean, text=carried)
        if oracle_label(obs) is not None:
            samples.append(Sample(clean, oracle))
        if policy is None or (oracle is not None and rng is not None and rng.random() < beta):
            if oracle is None:
                break  # the open-loop gold path ended without finishing
            action = oracle
            if oracle not in obs.admissible_actions:
                dropped.add(obs.step)
                carried = clean.text
            else:
                carried = None
        else:
            carried = None
            action = policy.act(clean).action
        _, r, term, trunc, info = env.step(action)
        obs, ret, done = info["text_obs"], ret + r, term or trunc
    return samples, bool(info.get("success", False)), ret
