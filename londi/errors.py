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
