"""Build a text policy from a command-line spec: a shipped model name, a checkpoint folder, or
the URL of an OpenAI-compatible server."""
from __future__ import annotations

import urllib.parse
from typing import Any

from londi.agents.base import TextPolicy
from londi.agents.cache import CachedPolicy
from londi.agents.fallback import FallbackPolicy
from londi.agents.http import DEFAULT_MAX_CONCURRENCY, HTTPPolicy
from londi.agents.lm import load_policy


def load_text_policy(spec: str, *, role: str, fallback: TextPolicy | None = None, http_api: str = "chat",
                     http_list_actions: bool = True, http_concurrency: int = DEFAULT_MAX_CONCURRENCY,
                     cache: bool = True, **kwargs: Any) -> TextPolicy:
    """``spec`` is ``quick``/``deepthink`` (shipped), a checkpoint folder, or ``http(s)://host:port/v1``.

    A served model is wrapped in a call cache (``cache=True``) and, when ``fallback`` is given
    (QUICK, for DEEPTHINK), in a :class:`~londi.agents.fallback.FallbackPolicy`, so that a slow or
    dead server costs a counted fallback rather than the episode. The API key is read from
    ``LONDI_API_KEY`` (or ``OPENAI_API_KEY``), never from the command line. ``http_list_actions``:
    whether a served model's prompt lists the admissible actions (an instruction model must see
    its choices; the checkpoints shipped here were trained without the list). ``http_concurrency``:
    a served model's requests in flight at once when several episodes ask together.
    """
    if spec.startswith(("http://", "https://")):

        host = urllib.parse.urlsplit(spec).netloc
        policy: TextPolicy = HTTPPolicy(base_url=spec, api=http_api, name=f"{role}@{host}",
                                        list_actions=http_list_actions, max_concurrency=http_concurrency, **kwargs)
        if cache:
            policy = CachedPolicy(policy)
        if fallback is not None:
            policy = FallbackPolicy(policy, fallback)
        return policy

    return load_policy(spec, **kwargs)
