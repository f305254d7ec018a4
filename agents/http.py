"""A text policy backed by any OpenAI-compatible HTTP server (vLLM, Ollama, llama.cpp,
``transformers serve``, ``londi serve``).

:class:`HTTPPolicy` turns an observation into the shared LONDI prompt
(:func:`londi.agents.prompt.build_prompt`), asks the server for a completion, and maps the
answer to an admissible action with :func:`londi.agents.matching.match_action`.

Endpoints
    ``api="chat"`` posts to ``{base_url}/chat/completions`` with a system message (the
    instructions) and a user message (the prompt): use it for instruction-tuned chat models.
    ``api="completions"`` posts the prompt itself to ``{base_url}/completions`` and stops at the
    end of the line: use it for base models and for the in-project LMs trained on the LONDI
    prompt format (served with ``londi serve``).

Configuration
    Every setting is a keyword argument; the endpoint, the model and the key may also come from
    the environment: ``LONDI_API_BASE`` (then ``OPENAI_BASE_URL``, ``OPENAI_API_BASE``),
    ``LONDI_MODEL`` and ``LONDI_API_KEY`` (then ``OPENAI_API_KEY``). Without a model name the
    first model that the server lists at ``/v1/models`` is used. The API key is kept in a
    wrapper that never prints it; it is sent only in the ``Authorization`` header and removed
    from every error message, log line and repr.

Failures
    Connection errors, timeouts and the statuses 408, 409, 425, 429 and 5xx are retried up to
    ``max_retries`` times with exponential backoff (``backoff * 2**k`` seconds, at most
    ``backoff_max``, or the server's ``Retry-After`` where it asks for longer within that
    cap), within an optional overall ``deadline``. Other statuses (400, 401, 404, ...) are
    configuration errors and are not retried; neither is a malformed answer. When the call
    cannot be completed,
    :class:`HTTPBackendError` is raised; its ``record`` holds the call's accounting (the error
    and the retries), so that :class:`londi.agents.fallback.FallbackPolicy` can record it.

Servers that reject a parameter
    Some OpenAI-compatible servers refuse an optional parameter: ``transformers serve`` answers
    every request that has a ``stop`` with HTTP 400 when the model's tokenizer cannot encode the
    stop string (``{"detail": "substring not found"}``). On a 400 or 422 the policy then adapts,
    within the same call (the rules are in :mod:`londi.agents.http_support`): a parameter of
    :data:`~londi.agents.http_support.OPTIONAL_PARAMS` that the error names (OpenAI's
    ``error.param``, a validation error's ``loc``, or the parameter's name in the message) is
    dropped and the request is sent again at once; an error that names no parameter is probed
    by sending the request once without ``stop`` (then once without ``seed``), each probe at
    most once per policy. Only a probe that succeeds convicts its parameter; one that fails
    again restores it and the call fails with the server's first error, as any 400 does. A
    dropped parameter is remembered (:attr:`HTTPPolicy.unsupported_params`) and never sent
    again by that policy; a dropped ``stop`` is applied on the client side (the answer is cut
    at the first stop string) and logged once at WARNING. These re-sends are not retries: they
    wait for no backoff and are not counted in ``retries``.

Accounting (the :class:`~londi.core.meter.CallRecord` of each call)
    ``device="http"``. ``device_seconds`` is the server-side compute time when the server
    reports one (llama.cpp's ``timings.prompt_ms + timings.predicted_ms``, which ``londi serve``
    also fills), else the wall latency of the request that produced the answer: from the
    client's side that is the only upper bound on the time the server's device spent, and a
    remote device is billed by the time it is held. ``wall_seconds`` covers every attempt and
    backoff of the call. A failed call records ``device_seconds=0`` (no answer was produced;
    its time is in ``wall_seconds``) and no tokens. Tokens come from the response's ``usage``;
    when a server omits it, they are estimated as one token per
    :data:`~londi.agents.http_support.CHARS_PER_TOKEN` characters (the usual rule of thumb for
    English text with BPE tokenizers). ``flops`` is :func:`~londi.core.meter.estimate_flops`
    when ``n_parameters`` is given, else 0 (a remote model's size is unknown).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np

from londi.agents.base import BatchAnswer, Decision, TextPolicy, timed_act
from londi.agents.http_support import (
    ENV_API_BASE,
    ENV_API_KEY,
    ENV_MODEL,
    REJECT_STATUSES,
    RETRY_STATUSES,
    Secret,
    as_int,
    cut_at_stop,
    error_detail,
    estimate_tokens,
    first_env,
    normalise_base_url,
    probe_params,
)
from londi.agents.matching import MATCH_KINDS, Match, match_action
from londi.agents.prompt import build_prompt
from londi.core.errors import ConfigError, ModelCallError, check_choice
from londi.core.meter import CallRecord, estimate_flops
from londi.envs.base import TextObservation

logger = logging.getLogger(__name__)

#: The APIs :class:`HTTPPolicy` can talk to.
APIS: tuple[str, ...] = ("chat", "completions")

#: Requests one batched call (``--num-envs``) keeps in flight at most, by default.
DEFAULT_MAX_CONCURRENCY = 8
DEFAULT_SYSTEM_PROMPT = (
    "You are an agent playing a text game. Read the goal, the possible actions and the "
    "observations, then answer with exactly one of the possible actions, written as it is "
    "listed, and nothing else."
)


# The backoff's sleep; a module attribute so that tests can replace it without touching ``time``.
_sleep = time.sleep


class HTTPBackendError(ModelCallError):
    """An HTTP backend call that could not be completed.

    Attributes:
        record: the call's accounting, with ``error`` and ``retries`` filled.
        status_code: the last HTTP status received, or ``None`` (connection error, timeout).
        retryable: whether the last failure was of a kind that is retried (the retries were
            then used up); ``False`` for configuration errors such as 401 or 404.
    """

    def __init__(
        self, message: str, *, record: CallRecord, status_code: int | None = None, retryable: bool = True
    ) -> None:
        super().__init__(message)
        self.record = record
        self.status_code = status_code
        self.retryable = retryable


class HTTPTimeoutError(HTTPBackendError, TimeoutError):
    """The server did not answer within the timeout (after the retries)."""


class HTTPPolicy(TextPolicy):
    """A :class:`~londi.agents.base.TextPolicy` that asks an OpenAI-compatible server.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1`` (vLLM), ``http://127.0.0.1:11434/v1``
            (Ollama), ``http://127.0.0.1:8080/v1`` (llama.cpp). A URL without a path gets ``/v1``.
            Default: ``$LONDI_API_BASE``, ``$OPENAI_BASE_URL``, ``$OPENAI_API_BASE``.
        model: the model name sent to the server. Default: ``$LONDI_MODEL``, else the first
            model the server lists at ``/v1/models`` (asked once, at the first call).
        api_key: sent as ``Authorization: Bearer ...``. Default: ``$LONDI_API_KEY``, then
            ``$OPENAI_API_KEY``; none for local servers that need none.
        api: ``"chat"`` (``/chat/completions``) or ``"completions"`` (``/completions``).
        name: the policy's name (default: the model name).
        timeout: seconds allowed per attempt for connecting and for waiting for the answer.
        max_retries: retries after the first attempt (connection errors, timeouts, 5xx, 429).
        backoff: the first retry's delay in seconds; it doubles at each retry.
        backoff_max: the longest delay between two attempts.
        deadline: optional limit in seconds on a whole call, attempts and backoff included:
            no retry starts after it.
        max_tokens: the most tokens the server may generate for an answer.
        temperature: sampling temperature; 0 (the default) asks for greedy decoding, which
            makes answers reproducible and cacheable.
        stop: stop sequences. Default: ``("\\n",)`` for ``"completions"`` (one action per line),
            none for ``"chat"``.
        system_prompt: the system message for ``"chat"`` (``None`` sends none); unused for
            ``"completions"``.
        prompt_kwargs: keyword arguments for :func:`~londi.agents.prompt.build_prompt`
            (``history_length``, ``max_listed_actions``, ...); ``list_actions`` is its own
            argument.
        list_actions: list the admissible actions in the prompt (the default: a general LLM must
            know its choices). Pass ``False`` for a model trained on the LONDI prompt without
            them, as every shipped checkpoint is (``londi_policy.json`` says
            ``"list_actions": false``): shown a list it never saw in training, the shipped
            ``deepthink-dagger`` solves 0.56 of the BabyAI episodes instead of 0.98.
        seed: sent as the request's ``seed`` where given (servers that sample use it).
        n_parameters: the model's parameter count, for the FLOPs estimate (0 FLOPs when unknown).
        extra_body: more fields merged into every request body (e.g. Ollama ``options``).
        headers: more HTTP headers for every request (e.g. an organisation header).
        transport: an ``httpx`` transport, for tests (e.g. ``httpx.MockTransport``).
        max_concurrency: requests in flight at most when several episodes played side by side
            ask at once (:meth:`act_batch`, ``--num-envs``); 1 sends them one after another.

    Attributes:
        calls: calls made (answered or failed) since construction.
        failures: calls that raised :class:`HTTPBackendError`.
        retries: retries made over all calls.
        match_counts: how many answers matched ``"exact"``, ``"normalised"`` and ``"nearest"``.
        last_match: the :class:`~londi.agents.matching.Match` of the last answer.
        last_text: the text of the last answer (cut at the first stop string when the server
            does not support ``stop``).
        unsupported_params: the optional request parameters the server rejected, which this
            policy no longer sends (see the module docstring).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        api: str = "chat",
        name: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        deadline: float | None = None,
        max_tokens: int = 32,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        prompt_kwargs: Mapping[str, Any] | None = None,
        list_actions: bool = True,
        seed: int | None = None,
        n_parameters: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self.api = check_choice("HTTP API", api, APIS)
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
        self.max_concurrency = max_concurrency
        url = base_url or first_env(ENV_API_BASE)
        if not url:
            raise ConfigError(
                "no HTTP endpoint: pass base_url=... (e.g. http://127.0.0.1:8000/v1) or set "
                + " / ".join(ENV_API_BASE)
            )
        self.base_url = normalise_base_url(url)
        self._api_key = Secret(api_key if api_key is not None else first_env(ENV_API_KEY))
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if backoff < 0 or backoff_max < 0:
            raise ValueError(f"backoff and backoff_max must be >= 0, got {backoff} and {backoff_max}")
        if deadline is not None and not deadline > 0:
            raise ValueError(f"deadline must be > 0 seconds or None, got {deadline}")
        if max_tokens <= 0:
            raise ValueError(f"max_tokens must be > 0, got {max_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if n_parameters is not None and n_parameters <= 0:
            raise ValueError(f"n_parameters must be > 0 or None, got {n_parameters}")
        self.prompt_kwargs = dict(prompt_kwargs or {})
        if "list_actions" in self.prompt_kwargs:
            raise ValueError("prompt_kwargs may not set list_actions: pass list_actions=... to HTTPPolicy")
        self.list_actions = bool(list_actions)
        # Fail now, not at the first step, on a bad prompt option.
        build_prompt(TextObservation(goal="g", text="t", admissible_actions=("a",)), list_actions=self.list_actions,
                     **self.prompt_kwargs)
        self.model: str | None = model or first_env(ENV_MODEL)
        self._name = name
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        self.deadline = deadline
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.stop: tuple[str, ...] = tuple(stop) if stop is not None else (("\n",) if api == "completions" else ())
        self.system_prompt = system_prompt
        self.seed = seed
        self.n_parameters = n_parameters
        self.extra_body = dict(extra_body or {})
        self._headers = dict(headers or {})
        self._transport = transport
        self._client: httpx.Client | None = None
        self.calls = 0
        self.failures = 0
        self.retries = 0
        self.match_counts: dict[str, int] = {kind: 0 for kind in MATCH_KINDS}
        self.last_match: Match | None = None
        self.last_text: str | None = None
        self.unsupported_params: set[str] = set()
        self._probed_params: set[str] = set()
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:  # type: ignore[override]
        return self._name or self.model or "http"

    @property
    def endpoint(self) -> str:  # type: ignore[override]
        return f"{self.base_url} ({self.api}, model {self.model or 'the server default'})"

    def fingerprint(self) -> dict[str, Any]:
        """The endpoint, API and model name (the server's weights are not visible from here)."""
        return {"kind": "http", "endpoint": self.base_url, "api": self.api, "model": self.model}

    @property
    def cache_namespace(self) -> str:
        """What, besides the observation, determines the answer; used by
        :class:`~londi.agents.cache.CachedPolicy` as part of its key. Resolves the model name."""
        settings = {
            "model": self.resolve_model(),
            "api": self.api,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stop": list(self.stop),
            "system_prompt": self.system_prompt if self.api == "chat" else None,
            "prompt_kwargs": self.prompt_kwargs,
            "seed": self.seed,
            "extra_body": self.extra_body,
        }
        if not self.list_actions:  # only when set, so that the keys of existing caches still hold
            settings["list_actions"] = False
        return "http:" + json.dumps(settings, sort_keys=True, default=str)

    def __repr__(self) -> str:
        return (
            f"HTTPPolicy(base_url={self.base_url!r}, model={self.model!r}, api={self.api!r}, "
            f"api_key={self._api_key!r}, timeout={self.timeout}, max_retries={self.max_retries})"
        )

    # ------------------------------------------------------------------ plumbing
    def _redact(self, text: str) -> str:
        key = self._api_key.get()
        return text.replace(key, "***") if key else text

    def _http(self) -> httpx.Client:
        with self._lock:  # one pool for all threads of a batched call (httpx.Client is thread-safe)
            if self._client is None:
                self._client = httpx.Client(transport=self._transport, follow_redirects=False,
                                            limits=httpx.Limits(max_connections=max(self.max_concurrency, 10)))
            return self._client

    def _request_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", **self._headers}
        key = self._api_key.get()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def resolve_model(self) -> str:
        """The model name; without one, the first model the server lists (asked once)."""
        if self.model:
            return self.model
        try:
            response = self._http().get(
                f"{self.base_url}/models", headers=self._request_headers(), timeout=self.timeout
            )
            response.raise_for_status()
            data = response.json()["data"]
            self.model = str(data[0]["id"])
        except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise ConfigError(
                self._redact(
                    f"no model name given and none could be read from {self.base_url}/models "
                    f"({type(exc).__name__}: {exc}); pass model=... or set LONDI_MODEL"
                )
            ) from None
        logger.info("HTTP backend %s: using model %r, the first the server lists", self.base_url, self.model)
        return self.model

    def prompt_for(self, obs: TextObservation) -> str:
        """The prompt sent for ``obs``."""
        return build_prompt(obs, list_actions=self.list_actions, **self.prompt_kwargs)

    def _payload(self, prompt: str, model: str) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": model, "max_tokens": self.max_tokens, "temperature": self.temperature}
        if self.stop and "stop" not in self.unsupported_params:
            body["stop"] = list(self.stop)
        if self.seed is not None and "seed" not in self.unsupported_params:
            body["seed"] = self.seed
        if self.api == "chat":
            messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            messages.append({"role": "user", "content": prompt})
            body["messages"] = messages
            path = "/chat/completions"
        else:
            body["prompt"] = prompt
            path = "/completions"
        body.update(self.extra_body)
        return self.base_url + path, body

    def _parse(self, data: Any) -> tuple[str, dict[str, Any], float | None]:
        """``(answer text, usage, server seconds or None)``; ValueError for a malformed body."""
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ValueError("the response has no 'choices'")
        choice = choices[0]
        if self.api == "chat":
            message = choice.get("message") or {}
            text = message.get("content")
            if isinstance(text, list):  # content parts
                text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        else:
            text = choice.get("text")
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise ValueError(f"the answer is not text: {type(text).__name__}")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        server_seconds = None
        timings = data.get("timings")
        if isinstance(timings, dict):
            ms = [timings.get(k) for k in ("prompt_ms", "predicted_ms")]
            if any(isinstance(v, (int, float)) for v in ms):
                server_seconds = sum(float(v) for v in ms if isinstance(v, (int, float))) / 1000.0
        return text, usage, server_seconds

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        delay = min(self.backoff_max, self.backoff * (2.0**attempt))
        if response is not None:
            retry_after = response.headers.get("retry-after")
            try:
                delay = max(delay, min(self.backoff_max, float(retry_after)))
            except (TypeError, ValueError):
                pass  # absent, or an HTTP date: the computed backoff will do
        return delay

    # ------------------------------------------------------------------ adapting to the server
    def _mark_unsupported(self, param: str, why: str) -> None:
        if param in self.unsupported_params:
            return
        self.unsupported_params.add(param)
        if param == "stop":
            logger.warning(
                "HTTP backend %s: the server rejected the request parameter 'stop' (%s); sending "
                "requests without it and cutting answers at the stop sequences %r on the client side",
                self.name, self._redact(why), list(self.stop),
            )
        else:
            logger.warning(
                "HTTP backend %s: the server rejected the request parameter %r (%s); sending requests without it",
                self.name, param, self._redact(why),
            )

    # ------------------------------------------------------------------ the call
    def complete(self, prompt: str) -> tuple[str, CallRecord]:
        """Send ``prompt`` and return the answer's text and the call's record.

        Raises:
            HTTPBackendError: the call failed after the retries (``HTTPTimeoutError`` when the
                last failure was a timeout), or failed with a status that is not retried.
            ConfigError: no model name was given and the server lists none.
        """
        model = self.resolve_model()
        url, body = self._payload(prompt, model)
        headers = self._request_headers()
        start = time.perf_counter()
        attempt = 0
        with self._lock:
            self.calls += 1
        probe: dict[str, Any] = {}  # parameters left out to see whether they were the cause
        tried: set[str] = set()  # parameters left out in this call (each at most once)
        rejection = ""  # the server's last rejection of a request with every parameter
        while True:
            t0 = time.perf_counter()
            response: httpx.Response | None = None
            status: int | None = None
            timed_out = False
            retryable = True
            timeout = self.timeout
            if self.deadline is not None:  # the last attempt may not run past the deadline
                timeout = max(min(timeout, self.deadline - (t0 - start)), 1e-3)
            try:
                response = self._http().post(url, json=body, headers=headers, timeout=timeout)
                status = response.status_code
                if status == 200:
                    text, usage, server_seconds = self._parse(response.json())
                    latency = time.perf_counter() - t0
                    for param in probe:  # the request went through without them: convicted
                        self._mark_unsupported(param, rejection)
                    break
                retryable = status in RETRY_STATUSES or status >= 500
                detail = error_detail(response)
                error = f"HTTP {status} from {url}: {detail}"
                if status in REJECT_STATUSES:
                    if probe:  # left out, they did not help: not the cause
                        body.update(probe)
                        probe = {}
                    else:
                        rejection = error
                    if not (self.deadline is not None and time.perf_counter() - start >= self.deadline):
                        probe = probe_params(response, body, tried, self._probed_params, self.extra_body)
                        if probe:
                            logger.info(
                                "HTTP backend %s: %s; trying once without %s",
                                self.name, self._redact(error), ", ".join(map(repr, probe)),
                            )
                            continue
                    error = rejection  # the server's answer to the full request, not to a probe
                if status in (401, 403):
                    error += " (check the API key: LONDI_API_KEY / OPENAI_API_KEY)"
                elif status == 404:
                    error += f" (check base_url and the model name {model!r})"
            except httpx.TimeoutException as exc:
                timed_out = True
                error = f"timeout after {timeout:g} s ({type(exc).__name__}) from {url}"
            except httpx.RequestError as exc:  # connection refused/reset, protocol errors
                error = f"{type(exc).__name__} from {url}: {exc}"
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                # JSON decoding or a malformed body: a server bug, not retried
                retryable = False
                error = f"malformed response from {url}: {exc}"
            elapsed = time.perf_counter() - start
            delay = self._delay(attempt, response)
            out_of_time = self.deadline is not None and elapsed + delay >= self.deadline
            if not retryable or attempt >= self.max_retries or out_of_time:
                error = self._redact(error)
                if attempt:
                    error += f" (after {attempt} {'retry' if attempt == 1 else 'retries'})"
                record = CallRecord(
                    model=model,
                    device="http",
                    wall_seconds=elapsed,
                    input_tokens=0,
                    output_tokens=0,
                    error=error,
                    retries=attempt,
                )
                with self._lock:
                    self.failures += 1
                    self.retries += attempt
                # Logged at INFO: the caller gets the exception (FallbackPolicy warns once per
                # run of failures), and a dead server must not flood the log at every step.
                logger.info("HTTP backend %s failed: %s", self.name, error)
                cls = HTTPTimeoutError if timed_out else HTTPBackendError
                raise cls(error, record=record, status_code=status, retryable=retryable)
            logger.info(
                "HTTP backend %s: %s; retry %d/%d in %.2f s",
                self.name, self._redact(error), attempt + 1, self.max_retries, delay,
            )
            _sleep(delay)
            attempt += 1

        if self.stop and "stop" not in body:  # the server was not asked to stop: cut here
            text = cut_at_stop(text, self.stop)
        input_tokens = as_int(usage.get("prompt_tokens"))
        output_tokens = as_int(usage.get("completion_tokens"))
        if input_tokens is None:
            sent = prompt if self.api == "completions" else "\n".join(m["content"] for m in body["messages"])
            input_tokens = estimate_tokens(sent)
        if output_tokens is None:
            output_tokens = estimate_tokens(text)
        record = CallRecord(
            model=model,
            device="http",
            device_seconds=server_seconds if server_seconds is not None else latency,
            device_measured=server_seconds is not None,  # the server's own compute figure
            wall_seconds=time.perf_counter() - start,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            flops=estimate_flops(self.n_parameters, input_tokens + output_tokens) if self.n_parameters else 0.0,
            retries=attempt,
        )
        with self._lock:
            self.retries += attempt
        return text, record

    def act(self, obs: TextObservation) -> Decision:
        """Ask the server and map its answer to one of ``obs.admissible_actions``.

        Raises:
            HTTPBackendError: see :meth:`complete`.
            ValueError: ``obs`` has no admissible actions.
        """
        if not obs.admissible_actions:
            raise ValueError("the observation has no admissible actions")
        text, record = self.complete(self.prompt_for(obs))
        match = match_action(text, obs.admissible_actions)
        with self._lock:
            self.last_text, self.last_match = text, match
            self.match_counts[match.kind] += 1
        if match.kind == "nearest":
            logger.debug("HTTP backend %s: answer %r matched %r (score %.2f)", self.name, text, match.action, match.score)
        return Decision(action=match.action, record=record)

    def act_batch(self, observations: Sequence[TextObservation],
                  generators: Sequence[np.random.Generator | None] | None = None) -> list[BatchAnswer]:
        """:meth:`act` per observation as concurrent requests (at most :attr:`max_concurrency`),
        each timed in its own thread; sampling is the server's (``generators`` are unused)."""
        if len(observations) <= 1 or self.max_concurrency == 1:
            return [timed_act(self, obs) for obs in observations]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(observations)),
                                thread_name_prefix="londi-http") as pool:
            return list(pool.map(lambda obs: timed_act(self, obs), observations))

    def close(self) -> None:
        """Close the HTTP connection pool (a later call opens a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> HTTPPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "APIS",
    "DEFAULT_SYSTEM_PROMPT",
    "HTTPBackendError",
    "HTTPPolicy",
    "HTTPTimeoutError",
]
