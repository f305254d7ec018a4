"""A saved switch describes itself: ``switch.json`` beside ``model.zip``.

The file says what the switch was trained with, the way a Hugging Face checkpoint's
``config.json`` does: the feature spec and its width, each policy's name and a fingerprint of
its weights or endpoint (:func:`~londi.agents.base.policy_fingerprint`), the episode step limit
that normalises the step feature, and the budget settings. :func:`check_policies` compares it
with the policies a switch is about to drive: a switch trained on QUICK's hidden state and
entropy means nothing on top of another QUICK, so a mismatch is an error unless
``allow_policy_mismatch=True`` (CLI ``--allow-policy-mismatch``) says it is meant.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from londi.agents.base import policy_fingerprint
from londi.core.errors import ConfigError, LondiError
from londi.core.io import atomic_write_json, read_json

logger = logging.getLogger(__name__)

SWITCH_FILE = "switch.json"
FORMAT = "londi-switch"
VERSION = 1
ROLES = ("quick", "deepthink")


def step_limit(env: Any) -> int | None:
    """The step limit that ``env`` (a :class:`~londi.switch.env.SwitchEnv`) normalised its step
    feature by, or ``None`` when it has not played yet or the limit changed between episodes
    (a level mix whose levels have their own limits)."""
    seen = sorted(env.step_limits_seen)
    return seen[0] if len(seen) == 1 else None


def describe_switch(config: Any, env: Any) -> dict[str, Any]:
    """The description of a switch trained by ``config`` (a :class:`~londi.learn.train.TrainConfig`)
    on ``env`` (its :class:`~londi.switch.env.SwitchEnv`).

    ``max_steps`` is the one step limit of the training episodes (``None`` until the env has
    played, or when it differed between episodes; ``step_limits`` then lists them)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "env": config.env,
        "features": {"spec": config.features, "dim": int(env.observation_space["features"].shape[0])},
        "policies": {"quick": policy_fingerprint(env.quick), "deepthink": policy_fingerprint(env.deepthink)},
        "max_steps": step_limit(env),
        "step_limits": sorted(env.step_limits_seen),
        "budget": {"budget": config.budget, "cost": config.cost, "cost_limit": config.cost_limit},
    }


def write_description(run_dir: str | Path, description: dict[str, Any]) -> Path:
    path = Path(run_dir) / SWITCH_FILE
    atomic_write_json(path, description)
    return path


def read_description(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``switch.json``, or ``None`` for a run saved before switches described themselves."""
    path = Path(run_dir) / SWITCH_FILE
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise LondiError(f"{path} is not a LONDI switch description")
    if int(data.get("version", 0)) > VERSION:
        raise LondiError(f"{path} has version {data.get('version')}; this LONDI reads up to {VERSION}: upgrade it")
    return data


def same_policy(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether two fingerprints name the same behaviour: the same weights digest where both
    have one (a copied checkpoint folder has another name, not other weights), else the same
    endpoint and model, else the same class and name."""
    if "sha256" in saved or "sha256" in now:
        return saved.get("sha256") == now.get("sha256")
    if "endpoint" in saved or "endpoint" in now:
        return all(saved.get(k) == now.get(k) for k in ("endpoint", "model"))
    return saved == now


def _label(fingerprint: dict[str, Any]) -> str:
    parts = [str(fingerprint.get("name") or fingerprint.get("endpoint") or fingerprint.get("kind"))]
    if "sha256" in fingerprint:
        parts.append(f"sha256 {str(fingerprint['sha256'])[:12]}")
    elif "endpoint" in fingerprint:
        parts.append(f"{fingerprint.get('endpoint')} model {fingerprint.get('model')}")
    return " ".join(parts)


def check_policies(run_dir: str | Path, description: dict[str, Any] | None, *, quick: Any = None,
                   deepthink: Any = None, allow_policy_mismatch: bool = False) -> None:
    """Raise :class:`~londi.core.errors.ConfigError` when ``quick`` / ``deepthink`` are not the
    policies the switch in ``run_dir`` was trained with (``None`` skips a role)."""
    if description is None:
        logger.warning("%s has no %s (saved before switches described themselves): the policies it was "
                       "trained with cannot be checked", run_dir, SWITCH_FILE)
        return
    saved = description.get("policies", {})
    problems = []
    for role, policy in zip(ROLES, (quick, deepthink)):
        if policy is None or role not in saved:
            continue
        now = policy_fingerprint(policy)
        if not same_policy(saved[role], now):
            problems.append(f"{role.upper()} is {_label(now)}, the switch was trained with {_label(saved[role])}")
    if not problems:
        return
    message = f"the switch in {run_dir} was trained with other policies: " + "; ".join(problems)
    if allow_policy_mismatch:
        logger.warning("%s (allowed by allow_policy_mismatch)", message)
        return
    raise ConfigError(message + ". Its features read QUICK's answers, so it would decide on inputs it never saw; "
                      "pass --allow-policy-mismatch (allow_policy_mismatch=True) if that is what you want")


def check_observation_dim(run_dir: str | Path, description: dict[str, Any] | None, model_dim: int) -> None:
    """The saved model's feature width must be the one its description states."""
    if description is not None and int(description["features"]["dim"]) != int(model_dim):
        raise LondiError(f"{run_dir}: the model reads {model_dim} features, its {SWITCH_FILE} says "
                         f"{description['features']['dim']}; the folder mixes two runs")


__all__ = ["SWITCH_FILE", "check_observation_dim", "check_policies", "describe_switch", "read_description",
           "same_policy", "write_description"]
