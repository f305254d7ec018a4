"""Keep an episode going when a model fails: a primary policy with a fallback that answers instead.

The usual set-up is a served DEEPTHINK (:class:`~londi.agents.http.HTTPPolicy`) as the primary
and the local QUICK model as the fallback::

    deepthink = FallbackPolicy(HTTPPolicy(base_url=..., model=...), quick)

Counting (what the evaluation loop writes to ``results.json``)
    :attr:`FallbackPolicy.episode` holds the counts since the last :meth:`~FallbackPolicy.reset`
    (the env loop calls ``reset()`` at the start of each episode) and
    :attr:`FallbackPolicy.total` the counts since construction, both as :class:`FallbackStats`
    with the fields

    * ``calls``: calls to :meth:`~FallbackPolicy.act`;
    * ``fallbacks``: calls that the fallback answered (``errors + skipped``);
    * ``errors``: calls where the primary raised or timed out;
    * ``skipped``: calls where the primary was not asked, because the circuit breaker was open
      or a timed-out call of the primary was still running;
    * ``retries``: retries the primary made (from its records; HTTP backends retry).

    ``policy.fallbacks`` and ``policy.errors`` are shortcuts for the episode's counts and
    ``policy.episode.to_dict()`` gives all of them as a dict.

Per decision
    When the primary answers, its :class:`~londi.agents.base.Decision` is returned unchanged.
    When the fallback answers, the fallback's decision is returned with its record marked: the
    record's ``model`` is the fallback's (who answered; its device time is the fallback's),
    ``error`` is set to ``"fallback: <why>"`` (so an episode's accounting counts it as
    an error of the role the primary plays), ``retries`` is the primary's and ``wall_seconds``
    includes the time lost waiting on the primary. :attr:`FallbackPolicy.last_records` holds
    every record of the last call (the primary's failed record, then the fallback's) for
    loops that meter them separately, and :attr:`FallbackPolicy.last_fallback` says whether
    the fallback answered.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from londi.agents.base import (
    BatchAnswer,
    Decision,
    TextPolicy,
    act_batch,
    policy_endpoint,
    policy_fingerprint,
    seed_policy,
    timed_act,
)
from londi.core.errors import TOLERATED_POLICY_ERRORS
from londi.core.meter import CallRecord, CallTiming
from londi.envs.base import TextObservation

logger = logging.getLogger(__name__)


@dataclass
class FallbackStats:
    """Counts of a :class:`FallbackPolicy` over a span (an episode, or its whole life).

    Attributes:
        calls: calls to ``act``.
        fallbacks: calls that the fallback answered (``errors + skipped``).
        errors: calls where the primary raised or timed out.
        skipped: calls where the primary was not asked (circuit breaker open, or still busy
            with a call that timed out).
        retries: retries made by the primary (its records' ``retries``).
    """

    calls: int = 0
    fallbacks: int = 0
    errors: int = 0
    skipped: int = 0
    retries: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class PrimaryTimeoutError(TimeoutError):
    """The primary gave no answer within :attr:`FallbackPolicy.timeout` (always falls back,
    whatever ``catch`` says)."""


class _Call:
    """Runs ``policy.act(obs)`` on a daemon thread, so that a caller can stop waiting for it
    (a daemon thread never keeps the interpreter from exiting, unlike a thread pool's)."""

    def __init__(self, policy: TextPolicy, obs: TextObservation) -> None:
        self.result: Decision | None = None
        self.exception: BaseException | None = None
        self._done = threading.Event()
        threading.Thread(target=self._run, args=(policy, obs), name="londi-fallback-primary", daemon=True).start()

    def _run(self, policy: TextPolicy, obs: TextObservation) -> None:
        try:
            self.result = policy.act(obs)
        except BaseException as exc:  # handed over to the waiting caller
            self.exception = exc
        finally:
            self._done.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)

    def done(self) -> bool:
        return self._done.is_set()


class FallbackPolicy(TextPolicy):
    """Ask ``primary``; when it raises (or takes longer than ``timeout``), ask ``fallback``.

    Args:
        primary: the policy to ask first (e.g. an :class:`~londi.agents.http.HTTPPolicy`).
        fallback: the policy that answers when the primary fails (e.g. the QUICK model). Its
            own errors are not caught: there is nothing left to answer with.
        timeout: optional limit in seconds on the primary's call. The primary then runs on a
            helper thread; when it does not answer in time the fallback answers, the late
            answer is discarded, and the primary is skipped until that call has finished, so
            that two calls never run on it at once. Leave it ``None`` for primaries that
            enforce their own timeout (``HTTPPolicy`` does), so that no thread is involved.
        max_consecutive_errors: open a circuit breaker after this many consecutive primary
            failures: the primary is then skipped for ``cooldown_calls`` calls before it is
            tried again (once; a failure re-opens the breaker). Saves the timeouts and retries
            of a server that is down. ``None`` (the default) always asks the primary.
        cooldown_calls: calls the primary is skipped for while the breaker is open.
        catch: the exception types treated as a failure of the primary (default:
            :data:`~londi.core.errors.TOLERATED_POLICY_ERRORS`: timeouts, HTTP and connection
            errors). Anything else, such as a bug in the primary, propagates.

    Attributes:
        episode: :class:`FallbackStats` since the last :meth:`reset`.
        total: :class:`FallbackStats` since construction.
        last_error: the primary's last error message, or ``None``.
        last_fallback: whether the fallback answered the last call.
        last_records: the records of the last call (primary's, then the fallback's if used).
    """

    def __init__(
        self,
        primary: TextPolicy,
        fallback: TextPolicy,
        *,
        timeout: float | None = None,
        max_consecutive_errors: int | None = None,
        cooldown_calls: int = 10,
        catch: tuple[type[BaseException], ...] = TOLERATED_POLICY_ERRORS,
    ) -> None:
        for role, policy in (("primary", primary), ("fallback", fallback)):
            if not isinstance(policy, TextPolicy):
                raise TypeError(f"{role} must be a TextPolicy, got {type(policy).__name__}")
        if primary is fallback:
            raise ValueError("primary and fallback must be different policies")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds or None, got {timeout}")
        if max_consecutive_errors is not None and max_consecutive_errors < 1:
            raise ValueError(f"max_consecutive_errors must be >= 1 or None, got {max_consecutive_errors}")
        if cooldown_calls < 1:
            raise ValueError(f"cooldown_calls must be >= 1, got {cooldown_calls}")
        if not catch or not all(isinstance(c, type) and issubclass(c, BaseException) for c in catch):
            raise ValueError(f"catch must be a non-empty tuple of exception types, got {catch!r}")
        self.primary = primary
        self.fallback = fallback
        self.timeout = timeout
        self.max_consecutive_errors = max_consecutive_errors
        self.cooldown_calls = int(cooldown_calls)
        self.catch = tuple(catch)
        self.episode = FallbackStats()
        self.total = FallbackStats()
        self.last_error: str | None = None
        self.last_fallback = False
        self.last_records: tuple[CallRecord, ...] = ()
        self._consecutive_errors = 0
        self._skip_left = 0
        self._pending: _Call | None = None

    # ------------------------------------------------------------------ identity and counts
    @property
    def name(self) -> str:  # type: ignore[override]
        return self.primary.name

    @property
    def endpoint(self) -> str:  # type: ignore[override]
        return policy_endpoint(self.primary)

    def fingerprint(self) -> dict[str, Any]:
        """The primary's: the fallback only stands in for it (and each answer it gives is
        counted as a failure of the primary)."""
        return policy_fingerprint(self.primary)

    @property
    def is_oracle(self) -> bool:  # type: ignore[override]
        return bool(self.primary.is_oracle or self.fallback.is_oracle)

    @property
    def fallbacks(self) -> int:
        """Calls the fallback answered in this episode."""
        return self.episode.fallbacks

    @property
    def errors(self) -> int:
        """Primary failures (raised or timed out) in this episode."""
        return self.episode.errors

    @property
    def breaker_open(self) -> bool:
        """Whether the primary is being skipped after repeated failures."""
        return self._skip_left > 0

    def _count(self, **fields: int) -> None:
        for stats in (self.episode, self.total):
            for key, value in fields.items():
                setattr(stats, key, getattr(stats, key) + value)

    def __repr__(self) -> str:
        return f"FallbackPolicy(primary={self.primary!r}, fallback={self.fallback!r}, timeout={self.timeout})"

    # ------------------------------------------------------------------ the call
    def _ask_primary(self, obs: TextObservation) -> Decision:
        if self.timeout is None:
            return self.primary.act(obs)
        call = _Call(self.primary, obs)
        if not call.wait(self.timeout):
            self._pending = call
            raise PrimaryTimeoutError(f"{self.primary.name} gave no answer within {self.timeout:g} s")
        if call.exception is not None:
            raise call.exception
        assert call.result is not None
        return call.result

    def act(self, obs: TextObservation) -> Decision:
        """The primary's decision, or the fallback's when the primary fails (see the module doc)."""
        self._count(calls=1)
        t0 = time.perf_counter()
        primary_record: CallRecord | None = None
        if self._pending is not None and self._pending.done():
            self._pending = None
        if self._skip_left > 0 or self._pending is not None:
            reason = "circuit breaker open" if self._skip_left > 0 else "a timed-out call is still running"
            self._skip_left = max(self._skip_left - 1, 0)
            error = f"{self.primary.name} skipped ({reason})"
            self._count(skipped=1, fallbacks=1)
        else:
            try:
                decision = self._ask_primary(obs)
            except (*self.catch, PrimaryTimeoutError) as exc:
                primary_record = _record_of(exc, self.primary.name, time.perf_counter() - t0)
                error = f"{self.primary.name} failed: {primary_record.error}"
                self._count(errors=1, fallbacks=1, retries=primary_record.retries)
                self._consecutive_errors += 1
                self._log_failure(error)
            else:
                self._consecutive_errors = 0
                self._count(retries=decision.record.retries)
                self.last_error, self.last_fallback, self.last_records = None, False, (decision.record,)
                return decision
        self.last_error, self.last_fallback = error, True
        waited = time.perf_counter() - t0
        answer = self.fallback.act(obs)
        record = dataclasses.replace(
            answer.record,
            error=f"fallback: {error}",
            retries=primary_record.retries if primary_record is not None else 0,
            wall_seconds=answer.record.wall_seconds + waited,
        )
        self.last_records = (primary_record, answer.record) if primary_record is not None else (answer.record,)
        return dataclasses.replace(answer, record=record)

    @property
    def supports_streams(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.primary, "supports_streams", False))

    def act_batch(self, observations: Sequence[TextObservation],
                  generators: Sequence[np.random.Generator | None] | None = None) -> list[BatchAnswer]:
        """:meth:`act` for several observations: the primary asked for all of them in one
        batched call, the fallback answering each that failed. With a ``timeout`` (the primary
        on a helper thread) or the breaker open, one :meth:`act` per observation."""
        if self._pending is not None and self._pending.done():
            self._pending = None
        if self.timeout is not None or self._skip_left > 0 or self._pending is not None or len(observations) <= 1:
            return [timed_act(self, obs) for obs in observations]
        answers = act_batch(self.primary, observations, generators)
        out = []
        for i, (obs, answer) in enumerate(zip(observations, answers)):
            self._count(calls=1)
            if answer.error is None and answer.decision is not None:
                self._consecutive_errors = 0
                self._count(retries=answer.decision.record.retries)
                self.last_error, self.last_fallback, self.last_records = None, False, (answer.decision.record,)
                out.append(answer)
                continue
            if not isinstance(answer.error, self.catch):  # tolerated by the switch, not caught here
                out.append(answer)
                continue
            primary_record = _record_of(answer.error, self.primary.name, answer.timing.wall_seconds)
            error = f"{self.primary.name} failed: {primary_record.error}"
            self._count(errors=1, fallbacks=1, retries=primary_record.retries)
            self._consecutive_errors += 1
            self._log_failure(error)
            self.last_error, self.last_fallback = error, True
            stream = [generators[i]] if generators is not None else None
            backup = act_batch(self.fallback, [obs], stream)[0]
            if backup.decision is None:  # the fallback's own error is the item's answer (not caught here)
                out.append(backup)
                continue
            record = dataclasses.replace(backup.decision.record, error=f"fallback: {error}",
                                         retries=primary_record.retries,
                                         wall_seconds=backup.decision.record.wall_seconds + answer.timing.wall_seconds)
            self.last_records = (primary_record, backup.decision.record)
            timing = CallTiming(
                wall_seconds=answer.timing.wall_seconds + backup.timing.wall_seconds,
                thread_cpu_seconds=answer.timing.thread_cpu_seconds + backup.timing.thread_cpu_seconds,
                process_cpu_seconds=answer.timing.process_cpu_seconds + backup.timing.process_cpu_seconds,
            )
            out.append(BatchAnswer(dataclasses.replace(backup.decision, record=record), None, timing))
        return out

    def _log_failure(self, error: str) -> None:
        limit = self.max_consecutive_errors
        if limit is not None and self._consecutive_errors >= limit:
            self._skip_left = self.cooldown_calls
            logger.warning(
                "%s; %d failures in a row: %s answers alone for the next %d calls",
                error, self._consecutive_errors, self.fallback.name, self.cooldown_calls,
            )
        elif self._consecutive_errors == 1:
            logger.warning("%s; %s answers instead", error, self.fallback.name)
        else:  # one warning per run of failures is enough; the counts keep the rest
            logger.debug("%s; %s answers instead", error, self.fallback.name)

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        """Start an episode: zero :attr:`episode` and reset both policies. The circuit
        breaker is kept: a server that was down at the end of an episode still is."""
        self.episode = FallbackStats()
        self.last_error, self.last_fallback, self.last_records = None, False, ()
        self.primary.reset()
        self.fallback.reset()

    def set_seed(self, seed: int | None) -> None:
        seed_policy(self.primary, seed)
        seed_policy(self.fallback, seed)

    def close(self) -> None:
        """Close both policies (a primary call still running on its thread is abandoned)."""
        try:
            self.primary.close()
        finally:
            self.fallback.close()


def _record_of(exc: BaseException, model: str, wall_seconds: float) -> CallRecord:
    """The failed call's record: the one the exception carries (``HTTPBackendError.record``),
    else a new one with the exception as its error."""
    record: Any = getattr(exc, "record", None)
    if isinstance(record, CallRecord):
        if record.error is None:
            record = dataclasses.replace(record, error=f"{type(exc).__name__}: {exc}")
        return record
    return CallRecord(model=model, device="unknown", wall_seconds=wall_seconds, error=f"{type(exc).__name__}: {exc}")


__all__ = ["FallbackPolicy", "FallbackStats", "PrimaryTimeoutError"]
