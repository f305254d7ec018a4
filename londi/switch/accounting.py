"""What one episode cost, per role: calls, device-seconds, tokens, FLOPs, faults."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from londi.core.meter import CallRecord

#: The switch's actions: QUICK's answer is executed, or DEEPTHINK is called and its answer executed.
QUICK, DEEPTHINK = 0, 1
#: The roles whose calls and device-seconds are accounted per episode.
ROLES = ("quick", "deepthink", "switch")


@dataclass
class EpisodeAccounting:
    """What one episode cost so far, per role.

    Measured times are left out of equality (``compare=False``): two runs with the same seed
    make the same calls but never take exactly the same time, and gymnasium's determinism check
    compares ``info``.
    """

    calls: dict[str, int] = field(default_factory=lambda: {r: 0 for r in ROLES})
    device_seconds: dict[str, float] = field(default_factory=lambda: {r: 0.0 for r in ROLES}, compare=False)
    wall_seconds: dict[str, float] = field(default_factory=lambda: {r: 0.0 for r in ROLES}, compare=False)
    tokens: dict[str, int] = field(default_factory=lambda: {r: 0 for r in ROLES})
    flops: dict[str, float] = field(default_factory=lambda: {r: 0.0 for r in ROLES})
    cache_hits: dict[str, int] = field(default_factory=lambda: {r: 0 for r in ROLES})
    steps: int = 0
    env_return: float = 0.0
    budget_left: float = float("inf")
    masked_overrides: int = 0
    policy_errors: int = 0
    invalid_actions: int = 0
    env_errors: int = 0
    oracle_disagreements: int = 0
    taken_oracle_disagreements: int = 0
    oracle_labelled_steps: int = 0

    def add(self, role: str, record: CallRecord) -> None:
        self.calls[role] += 1
        self.device_seconds[role] += record.device_seconds
        self.wall_seconds[role] += record.wall_seconds
        self.tokens[role] += record.input_tokens + record.output_tokens
        self.flops[role] += record.flops
        self.cache_hits[role] += int(record.cache_hit)
        self.policy_errors += int(record.error is not None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def snapshot(self) -> EpisodeAccounting:
        """An independent copy (the env keeps updating its own)."""
        return EpisodeAccounting(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()})


__all__ = ["DEEPTHINK", "QUICK", "ROLES", "EpisodeAccounting"]
