"""Errors with messages that name the valid choices."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class LondiError(Exception):
    """Base class for errors that the CLI reports as one clear line, without a traceback."""


class UnknownChoiceError(LondiError, ValueError):
    """A name (env id, method, backend, ...) that is not one of the valid choices."""

    def __init__(self, kind: str, value: str, choices: Iterable[str]) -> None:
        self.kind = kind
        self.value = value
        self.choices = sorted(set(choices))
        close = difflib.get_close_matches(value, self.choices, n=3, cutoff=0.4)
        if close:
            hint = "did you mean " + ", ".join(repr(c) for c in close) + "?"
        else:
            shown = self.choices[:12]
            more = f" (and {len(self.choices) - len(shown)} more)" if len(self.choices) > len(shown) else ""
            hint = "valid choices: " + ", ".join(shown) + more
        super().__init__(f"unknown {kind} {value!r}; {hint}")


class ConfigError(LondiError, ValueError):
    """A configuration value that is out of range or inconsistent."""


def check_choice(kind: str, value: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise :class:`UnknownChoiceError`."""
    choices = list(choices)
    if value not in choices:
        raise UnknownChoiceError(kind, value, choices)
    return value


class ModelCallError(LondiError):
    """A model call failed in a way a run is built to survive (a timeout, an HTTP or connection
    error): the switch counts it and falls back. Backends raise a subclass of it."""


class EnvCrashError(LondiError):
    """The environment's simulator died mid-episode (e.g. a crashed JVM): the episode is
    truncated and counted, and the next reset starts a fresh simulator."""


class EndpointFailureError(LondiError):
    """Most calls of one model failed: the run stops rather than report a fallback's numbers
    as that model's.

    Attributes:
        partial_results: set by the evaluation loop: what had finished, marked
            ``"valid": False`` with the error, for a caller that writes it down.
    """

    partial_results: dict | None = None


#: What a model call may raise and still leave the run going (counted, then a fallback
#: answers). Anything else, e.g. an ``AttributeError`` in a user's policy, is a bug and raises.
TOLERATED_POLICY_ERRORS: tuple[type[BaseException], ...] = (ModelCallError, TimeoutError, ConnectionError)
#: What an environment's ``step`` may raise and only truncate the episode.
TOLERATED_ENV_ERRORS: tuple[type[BaseException], ...] = (EnvCrashError, ConnectionError)
