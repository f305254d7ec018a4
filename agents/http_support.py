"""The OpenAI-compatible wire protocol as :class:`~londi.agents.http.HTTPPolicy` speaks it: the
configuration it reads from the environment, the statuses it retries or adapts to, the error
text it reports, and the request parameters it drops for servers that reject them.

Everything here is a plain function of a request body, a response or a string, with no state
of a policy: :class:`~londi.agents.http.HTTPPolicy` keeps the state (what it sent, what it
probed, what it no longer sends) and the call loop, this module the rules, so that they can be
read and tested on their own.

Servers that reject a parameter
    Some OpenAI-compatible servers refuse an optional parameter: ``transformers serve`` answers
    every request that has a ``stop`` with HTTP 400 when the model's tokenizer cannot encode the
    stop string (``{"detail": "substring not found"}``). After a 400 or 422
    (:data:`REJECT_STATUSES`), :func:`named_params` reads which parameter of
    :data:`OPTIONAL_PARAMS` the error names, and :func:`probe_params` takes out of the request the
    ones to try it without (those named, else the next one not probed yet); a dropped ``stop`` is
    applied on the client side with :func:`cut_at_stop`.

Secrets
    The API key is held in a :class:`Secret`, whose repr never shows it, so that it cannot leak
    into a log line or a traceback through a policy's repr, nor be pickled along with a policy.
"""
from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from londi.core.errors import ConfigError

#: Environment variables read when the constructor gets no value, in order of precedence.
ENV_API_BASE: tuple[str, ...] = ("LONDI_API_BASE", "OPENAI_BASE_URL", "OPENAI_API_BASE")
ENV_API_KEY: tuple[str, ...] = ("LONDI_API_KEY", "OPENAI_API_KEY")
ENV_MODEL: tuple[str, ...] = ("LONDI_MODEL",)

#: Characters per token for the token estimate used when a server reports no ``usage``.
CHARS_PER_TOKEN = 4.0

#: Statuses worth retrying: timeouts, conflicts, rate limits and server errors.
RETRY_STATUSES = frozenset({408, 409, 425, 429})

#: Statuses with which a server rejects a request it cannot take (bad or unsupported fields).
REJECT_STATUSES = frozenset({400, 422})

#: Optional request parameters that :class:`~londi.agents.http.HTTPPolicy` leaves out, for the
#: rest of its life, once a server rejects them (see "Servers that reject a parameter" in
#: :mod:`londi.agents.http`), in the order in which an unexplained rejection is probed. ``stop``
#: is then applied on the client side; ``seed`` only matters for sampling servers. Nothing else is
#: ever dropped: the model, the prompt, ``max_tokens``, ``temperature`` and ``extra_body`` are
#: always sent.
OPTIONAL_PARAMS: tuple[str, ...] = ("stop", "seed")


def estimate_tokens(text: str) -> int:
    """Tokens in ``text`` by the rule of thumb of :data:`CHARS_PER_TOKEN` characters a token."""
    return int(math.ceil(len(text) / CHARS_PER_TOKEN)) if text else 0


class Secret:
    """Holds a secret string; its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None) -> None:
        self._value = value or None

    def get(self) -> str | None:
        return self._value

    def __bool__(self) -> bool:
        return self._value is not None

    def __repr__(self) -> str:
        return "'***'" if self._value else "None"

    __str__ = __repr__

    def __reduce__(self):  # never pickle the key along with a policy
        return (Secret, (None,))


def first_env(names: Sequence[str]) -> str | None:
    """The value of the first of the environment variables ``names`` that is set and not empty."""
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def normalise_base_url(url: str) -> str:
    """``http://host:port`` -> ``http://host:port/v1``; a URL with a path is kept as given.

    Raises:
        ConfigError: for anything but an ``http``/``https`` URL with a host.
    """
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(
            f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {url!r}"
        )
    if parsed.username or parsed.password:
        # Credentials in a URL end up in logs; the key belongs in api_key / LONDI_API_KEY.
        raise ConfigError("base_url must not contain credentials; pass api_key or set LONDI_API_KEY")
    path = parsed.path.rstrip("/")
    if not path:
        path = "/v1"
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, parsed.query, ""))


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any of the ``stop`` strings,
    as an OpenAI server that honours ``stop`` returns it."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return text[:cut] if cut >= 0 else text


def as_int(value: Any) -> int | None:
    """``value`` as an int when it is a number (a ``usage`` count), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def error_detail(response: httpx.Response, limit: int = 300) -> str:
    """The server's error message (OpenAI's ``{"error": {"message": ...}}`` or the body's start)."""
    try:
        data = response.json()
        if isinstance(data, dict):
            err = data.get("error", data.get("detail"))
            if isinstance(err, dict):
                err = err.get("message", err)
            if err is not None:
                return str(err)[:limit]
    except ValueError:
        pass
    return response.text[:limit] or response.reason_phrase


# ------------------------------------------------------------------ adapting to the server
def named_params(response: httpx.Response, body: Mapping[str, Any], extra_body: Mapping[str, Any]) -> list[str]:
    """The optional parameters in ``body`` that a 400/422 ``response`` names as the problem.

    Read from OpenAI's ``error.param``, from a validation error's ``detail[*].loc`` (FastAPI,
    pydantic), and from the words of the message (``"Unexpected fields in the request:
    {'seed'}"``, ``"stop_strings is not supported"``). Parameters set through ``extra_body``
    are the user's and are never dropped.
    """
    candidates = [p for p in OPTIONAL_PARAMS if p in body and p not in extra_body]
    if not candidates:
        return []
    words: set[str] = set()
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("param"), str):
            words.add(err["param"].strip().lower())
        detail = data.get("detail")
        if isinstance(detail, list):  # FastAPI / pydantic validation errors
            for item in detail:
                if isinstance(item, dict) and isinstance(item.get("loc"), (list, tuple)):
                    words.update(str(part).lower() for part in item["loc"])
    words.update(re.split(r"[^a-z0-9]+", error_detail(response, limit=2000).lower()))
    return [p for p in candidates if p in words]


def probe_params(
    response: httpx.Response,
    body: dict[str, Any],
    tried: set[str],
    probed: set[str],
    extra_body: Mapping[str, Any],
) -> dict[str, Any]:
    """Take out of ``body`` the optional parameters to try the request without, after a
    400/422 ``response``: those the error names, else the first not in ``probed`` (the
    parameters a policy has probed in any call: an unexplained rejection probes each parameter
    once per policy). Returns them with their values, to put back if the request fails without
    them too; ``{}`` when there is nothing left to try. No parameter is left out twice in one
    call: ``tried`` (this call's) and ``probed`` are updated with those returned."""
    named = [p for p in named_params(response, body, extra_body) if p not in tried]
    if not named:
        named = [
            next((p for p in OPTIONAL_PARAMS
                  if p in body and p not in extra_body and p not in probed and p not in tried), "")
        ]
        if not named[0]:
            return {}
    tried.update(named)
    probed.update(named)
    return {p: body.pop(p) for p in named}


__all__ = [
    "CHARS_PER_TOKEN",
    "ENV_API_BASE",
    "ENV_API_KEY",
    "ENV_MODEL",
    "OPTIONAL_PARAMS",
    "REJECT_STATUSES",
    "RETRY_STATUSES",
    "Secret",
    "as_int",
    "cut_at_stop",
    "error_detail",
    "estimate_tokens",
    "first_env",
    "named_params",
    "normalise_base_url",
    "probe_params",
]
