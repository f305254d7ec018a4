"""``londi serve``: serve a Hugging Face causal-LM checkpoint over an OpenAI-compatible HTTP API.

Use it to put your own model (an in-project LM, any local checkpoint folder) behind the same
API as vLLM, Ollama or llama.cpp, so that :class:`londi.agents.http.HTTPPolicy` can use it as
QUICK or DEEPTHINK, and to test how an agent copes with a slow, failing or dying server.

Endpoints
    ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions`` (OpenAI's
    request and response formats, no streaming) and ``GET /health`` (``{"status": "ok",
    "model": ..., "requests": <completion requests so far>}``, never subject to faults or the
    API key, for readiness checks).

Generation
    Greedy decoding (``temperature``/``top_p`` are accepted and ignored), at most ``max_tokens``
    new tokens (capped by ``--max-tokens-limit``), cut at the first ``stop`` string or the
    end-of-sequence token (``finish_reason`` ``"stop"``, else ``"length"``). A prompt longer
    than the context leaves is cut from the left, so that the end of a LONDI prompt (the
    current observation and ``Action:``) is kept; ``usage`` counts the tokens actually used.
    Chat messages go through the tokenizer's chat template where it has one; otherwise their
    contents are joined with newlines, so a user message holding a LONDI prompt reaches the
    model verbatim. Requests are served one at a time (one model, one device).

Accounting
    Each response has OpenAI's ``usage`` and llama.cpp's ``timings`` (``prompt_n``,
    ``prompt_ms``, ``predicted_n``, ``predicted_ms``), whose times are the device time measured
    the LONDI way (:func:`londi.core.meter.device_timer`: CUDA events on a GPU, process CPU time on
    the CPU); ``HTTPPolicy`` reports their sum as the call's ``device_seconds``.

Fault injection (for testing fallbacks; they apply to the two completion endpoints only)
    ``--inject-delay S`` waits S seconds before answering each request; ``--fail-every N``
    answers every N-th request (N, 2N, ...) with HTTP 500; ``--inject-error-rate R`` answers
    a request with HTTP 500 with probability R (drawn from ``--inject-seed``);
    ``--die-after N`` makes the process exit abruptly, like a crash, right after it has
    answered N requests (status :data:`DIED_EXIT_CODE`): requests in flight are dropped and
    later connections are refused.

Examples::

    londi serve --model runs/lm/deepthink --port 8000
    python -m londi.agents.serving --model runs/lm/quick --port 8001 --fail-every 3
"""

import argparse
import hmac
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from londi.core.errors import ConfigError, LondiError
from londi.core.meter import device_timer

logger = logging.getLogger(__name__)

#: Exit status of a server stopped by ``--die-after``.
DIED_EXIT_CODE = 3
#: Environment variable read for ``--api-key`` when the option is not given.
ENV_SERVE_API_KEY = "LONDI_SERVE_API_KEY"
DTYPES = ("auto", "float32", "float16", "bfloat16")


# ---------------------------------------------------------------------- the model
@dataclass
class Generation:
    """One completion: the text, why it ended, and its accounting."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    prompt_seconds: float
    decode_seconds: float


class CausalLMGenerator:
    """Greedy generation with a Hugging Face causal LM and its tokenizer.

    Args:
        model_path: a folder with a checkpoint saved by ``save_pretrained`` (model and tokenizer).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        dtype: ``"auto"`` (as saved), ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        threads: CPU threads for PyTorch's operators (``torch.set_num_threads``); ``None`` keeps
            PyTorch's default. Small models on a busy CPU run much faster with 1, since idle
            worker threads then have nothing to spin on.
    """

    def __init__(self, model_path: str, *, device: str = "auto", dtype: str = "auto", threads: int | None = None) -> None:
        if not os.path.isfile(os.path.join(model_path, "config.json")):
            raise ConfigError(
                f"--model {model_path!r} is not a Hugging Face checkpoint folder (no config.json); "
                "pass a folder written by save_pretrained"
            )
        if dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {dtype!r}; valid choices: {', '.join(DTYPES)}")
        if threads is not None and threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but CUDA is not available; use --device cpu")
        if device != "cpu" and not device.startswith("cuda"):
            raise ConfigError(f"unknown device {device!r}; valid choices: auto, cpu, cuda, cuda:N")
        if threads is not None:
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path)
        if dtype != "auto":
            model = model.to(getattr(torch, dtype))
        self.model = model.to(device).eval()
        config = self.model.config
        self.max_context = int(
            getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 2048
        )
        self.n_parameters = sum(p.numel() for p in self.model.parameters())
        eos = self.model.generation_config.eos_token_id if self.model.generation_config else None
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else ([] if eos is None else [eos]))
        self._lock = threading.Lock()

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        """The prompt for chat ``messages`` (the chat template, or the contents joined by newlines)."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        return "\n".join(m["content"] for m in messages)

    def generate(self, prompt: str, *, max_tokens: int, stop: Sequence[str] = ()) -> Generation:
        """Greedy completion of ``prompt``; thread-safe (requests are served one at a time)."""

        torch = self._torch
        ids = self.tokenizer(prompt)["input_ids"]
        if not ids:  # an empty prompt: start from the beginning-of-sequence token
            start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
            if start is None:
                raise ValueError("the prompt is empty and the tokenizer has no BOS/EOS token to start from")
            ids = [start]
        if max_tokens >= self.max_context:
            raise ValueError(f"max_tokens={max_tokens} does not fit the model's context of {self.max_context} tokens")
        keep = self.max_context - max_tokens
        if len(ids) > keep:
            logger.debug("prompt of %d tokens cut to its last %d", len(ids), keep)
            ids = ids[-keep:]
        generated: list[int] = []
        text, finish = "", "length"
        with self._lock, torch.inference_mode():
            with device_timer(self.device) as prompt_timing:
                out = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True)
                next_id = int(out.logits[0, -1].argmax())
            with device_timer(self.device) as decode_timing:
                while True:
                    if next_id in self.eos_ids:
                        finish = "stop"
                        break
                    generated.append(next_id)
                    text = self.tokenizer.decode(generated, skip_special_tokens=True)
                    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
                    if cut >= 0:
                        text, finish = text[:cut], "stop"
                        break
                    if len(generated) >= max_tokens:
                        break
                    out = self.model(
                        input_ids=torch.tensor([[next_id]], device=self.device),
                        past_key_values=out.past_key_values,
                        use_cache=True,
                    )
                    next_id = int(out.logits[0, -1].argmax())
        return Generation(
            text=text,
            finish_reason=finish,
            prompt_tokens=len(ids),
            completion_tokens=len(generated),
            prompt_seconds=prompt_timing.device_seconds,
            decode_seconds=decode_timing.device_seconds,
        )


# ---------------------------------------------------------------------- faults
@dataclass
class FaultInjection:
    """Faults a test server injects into its completion endpoints (see the module docstring).

    Attributes:
        delay: seconds to wait before answering each request.
        error_rate: probability of answering a request with HTTP 500.
        fail_every: answer every N-th request with HTTP 500 (0: never).
        die_after: end the process (a simulated crash) after answering N requests (0: never).
        seed: seed of the draws for ``error_rate``.
    """

    delay: float = 0.0
    error_rate: float = 0.0
    fail_every: int = 0
    die_after: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ConfigError(f"--inject-delay must be >= 0 seconds, got {self.delay}")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ConfigError(f"--inject-error-rate must be in [0, 1], got {self.error_rate}")
        if self.fail_every < 0 or self.die_after < 0:
            raise ConfigError("--fail-every and --die-after must be >= 0 (0 turns them off)")

    @property
    def active(self) -> bool:
        return bool(self.delay or self.error_rate or self.fail_every or self.die_after)


# ---------------------------------------------------------------------- the app
class APIError(Exception):
    """An error answered in OpenAI's format ``{"error": {"message", "type", "code"}}``."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


def create_app(
    generator: Any,
    *,
    model_name: str,
    faults: FaultInjection | None = None,
    api_key: str | None = None,
    max_tokens_limit: int = 512,
    on_die: Callable[[], None] | None = None,
):
    """The FastAPI application serving ``generator`` (a :class:`CausalLMGenerator` or anything
    with its ``generate`` / ``chat_prompt`` / ``max_context`` interface).

    Args:
        generator: the model.
        model_name: the id listed at ``/v1/models`` and accepted in requests.
        faults: faults to inject (none by default).
        api_key: when given, ``/v1/*`` requests must carry ``Authorization: Bearer <api_key>``.
        max_tokens_limit: the most tokens a request may ask for.
        on_die: called once the ``die_after``-th request has been answered.

    The app's ``state.stopping`` event must be set once the server has stopped: it ends the
    waits of ``--inject-delay`` and of requests held while the server dies.
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict
    from starlette.background import BackgroundTask

    faults = faults or FaultInjection()
    rng = random.Random(faults.seed)
    # Set by the caller once the server has stopped: ends injected waits (see ``run``).
    stopping = threading.Event()
    state = {"requests": 0}
    counter_lock = threading.Lock()
    created = int(time.time())

    class _Request(BaseModel):
        model_config = ConfigDict(extra="allow")
        model: str | None = None
        max_tokens: int | None = None
        stop: str | list[str] | None = None
        n: int = 1
        stream: bool = False
        temperature: float | None = None

    class CompletionRequest(_Request):
        prompt: str | list[str]

    class ChatMessage(BaseModel):
        model_config = ConfigDict(extra="allow")
        role: str
        content: str | list[dict[str, Any]] | None = None

    class ChatRequest(_Request):
        messages: list[ChatMessage]
        max_completion_tokens: int | None = None

    app = FastAPI(title="londi serve", version="1")
    app.state.stopping = stopping

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError):
        return JSONResponse(
            status_code=exc.status, content={"error": {"message": exc.message, "type": exc.kind, "code": exc.status}}
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse(
            status_code=400, content={"error": {"message": detail, "type": "invalid_request_error", "code": 400}}
        )

    if api_key is not None:
        expected = f"Bearer {api_key}".encode()

        class KeyCheck:
            """Checks the key before anything else (even body validation). A plain ASGI
            middleware rather than ``@app.middleware``: that one buffers responses, and the answer
            that ``--die-after`` sends last must reach the socket before the process ends."""

            def __init__(self, inner: Any) -> None:
                self.inner = inner

            async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
                if scope["type"] == "http" and scope["path"].startswith("/v1/"):
                    given = dict(scope["headers"]).get(b"authorization", b"")
                    if not hmac.compare_digest(given, expected):
                        response = JSONResponse(
                            status_code=401,
                            content={"error": {"message": "missing or wrong API key",
                                               "type": "authentication_error", "code": 401}},
                        )
                        await response(scope, receive, send)
                        return
                await self.inner(scope, receive, send)

        app.add_middleware(KeyCheck)

    def check_request(body: _Request, max_tokens: int | None) -> tuple[int, list[str]]:
        if body.model not in (None, "", model_name):
            raise APIError(404, f"model {body.model!r} not found; this server serves {model_name!r}", "not_found_error")
        if body.stream:
            raise APIError(400, "streaming is not supported by londi serve; send stream=false")
        if body.n != 1:
            raise APIError(400, f"only n=1 is supported, got n={body.n}")
        max_tokens = 16 if max_tokens is None else max_tokens
        if not 1 <= max_tokens <= max_tokens_limit:
            raise APIError(400, f"max_tokens must be in [1, {max_tokens_limit}], got {max_tokens}")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        return max_tokens, stop

    def inject() -> tuple[int, bool]:
        """Count the request and apply the faults; ``(request number, die after answering)``."""
        with counter_lock:
            state["requests"] += 1
            number = state["requests"]
            fail = (faults.fail_every and number % faults.fail_every == 0) or (
                faults.error_rate and rng.random() < faults.error_rate
            )
        if faults.die_after and number > faults.die_after:
            # The server is dying (the N-th answer has gone out and the process is exiting):
            # hold the request until it is gone, so the client sees the connection drop.
            stopping.wait(60.0)
            raise APIError(503, "the server is shutting down (--die-after)", "server_error")
        if faults.delay:
            stopping.wait(faults.delay)  # a shutdown ends the wait, so it is not held up by it
        die = bool(faults.die_after) and number == faults.die_after
        if fail:
            logger.info("fault injection: answering request %d with HTTP 500", number)
            response = JSONResponse(
                status_code=500,
                content={"error": {"message": "injected server error", "type": "server_error", "code": 500}},
                background=BackgroundTask(_die) if die else None,
            )
            raise _Injected(response)
        return number, die

    class _Injected(Exception):
        def __init__(self, response: Any) -> None:
            self.response = response

    @app.exception_handler(_Injected)
    async def _injected(_: Request, exc: _Injected):
        return exc.response

    def _die() -> None:
        logger.warning("fault injection: %d requests answered, the server dies now (--die-after)", faults.die_after)
        if on_die is not None:
            on_die()

    def generate(prompt: str, max_tokens: int, stop: list[str]) -> Generation:
        try:
            return generator.generate(prompt, max_tokens=max_tokens, stop=stop)
        except ValueError as exc:
            raise APIError(400, str(exc)) from None

    def usage_and_timings(gens: list[Generation]) -> dict[str, Any]:
        prompt_n = sum(g.prompt_tokens for g in gens)
        predicted_n = sum(g.completion_tokens for g in gens)
        return {
            "usage": {"prompt_tokens": prompt_n, "completion_tokens": predicted_n, "total_tokens": prompt_n + predicted_n},
            "timings": {
                "prompt_n": prompt_n,
                "prompt_ms": 1000.0 * sum(g.prompt_seconds for g in gens),
                "predicted_n": predicted_n,
                "predicted_ms": 1000.0 * sum(g.decode_seconds for g in gens),
            },
        }

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name, "requests": state["requests"]}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": model_name,
                    "object": "model",
                    "created": created,
                    "owned_by": "londi",
                    "max_model_len": generator.max_context,
                }
            ],
        }

    @app.post("/v1/completions")
    def completions(body: CompletionRequest):
        max_tokens, stop = check_request(body, body.max_tokens)
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        if not prompts:
            raise APIError(400, "prompt is an empty list")
        _, die = inject()
        gens = [generate(p, max_tokens, stop) for p in prompts]
        content = {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [
                {"index": i, "text": g.text, "logprobs": None, "finish_reason": g.finish_reason}
                for i, g in enumerate(gens)
            ],
            **usage_and_timings(gens),
        }
        return JSONResponse(content, background=BackgroundTask(_die) if die else None)

    @app.post("/v1/chat/completions")
    def chat_completions(body: ChatRequest):
        max_tokens, stop = check_request(body, body.max_completion_tokens or body.max_tokens)
        if not body.messages:
            raise APIError(400, "messages is empty")
        messages = []
        for m in body.messages:
            content = m.content
            if isinstance(content, list):  # OpenAI content parts: keep the text ones
                content = "".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
            messages.append({"role": m.role, "content": content or ""})
        _, die = inject()
        gen = generate(generator.chat_prompt(messages), max_tokens, stop)
        content = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": gen.text}, "finish_reason": gen.finish_reason}
            ],
            **usage_and_timings([gen]),
        }
        return JSONResponse(content, background=BackgroundTask(_die) if die else None)

    return app


# ---------------------------------------------------------------------- the command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` options to ``parser`` (shared by ``londi serve`` and ``python -m londi.agents.serving``)."""
    parser.add_argument("--model", required=True, help="a Hugging Face causal-LM checkpoint folder (save_pretrained)")
    parser.add_argument("--served-model-name", default=None, help="the model id clients send (default: the folder's name)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--dtype", default="auto", choices=DTYPES, help="weights' dtype (default: as saved)")
    # its own dest: under `londi serve` the Namespace is shared with the global `londi --threads`,
    # which a subcommand default of None would overwrite (torch.set_num_threads(None) then fails)
    parser.add_argument(
        "--threads", dest="serve_threads", type=int, default=None, metavar="N",
        help="CPU threads for PyTorch (default: PyTorch's, or under `londi serve` the global `londi --threads`; "
             "1 suits small models)",
    )
    parser.add_argument(
        "--max-tokens-limit", type=int, default=512, help="the most tokens one request may ask for (default: %(default)s)"
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"require 'Authorization: Bearer KEY' on /v1/* (default: ${ENV_SERVE_API_KEY}, else no key)",
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    faults = parser.add_argument_group("fault injection (for testing; completion endpoints only)")
    none = FaultInjection()  # the options' defaults are its fields' (no faults)
    faults.add_argument("--inject-delay", type=float, default=none.delay, metavar="S",
                        help="wait S seconds before each answer")
    faults.add_argument(
        "--inject-error-rate", type=float, default=none.error_rate, metavar="R", help="answer HTTP 500 with probability R"
    )
    faults.add_argument("--inject-seed", type=int, default=none.seed, help="seed of the --inject-error-rate draws")
    faults.add_argument(
        "--fail-every", type=int, default=none.fail_every, metavar="N", help="answer every N-th request with HTTP 500"
    )
    faults.add_argument(
        "--die-after",
        type=int,
        default=none.die_after,
        metavar="N",
        help=f"exit abruptly, like a crash, after answering N requests (exit status {DIED_EXIT_CODE})",
    )


def run(args: argparse.Namespace) -> int:
    """Load the model and serve it until interrupted; the exit status."""
    import uvicorn

    faults = FaultInjection(
        delay=args.inject_delay,
        error_rate=args.inject_error_rate,
        fail_every=args.fail_every,
        die_after=args.die_after,
        seed=args.inject_seed,
    )
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be in [1, 65535], got {args.port}")
    if args.max_tokens_limit < 1:
        raise ConfigError(f"--max-tokens-limit must be >= 1, got {args.max_tokens_limit}")
    api_key = args.api_key or os.environ.get(ENV_SERVE_API_KEY) or None
    model_name = args.served_model_name or os.path.basename(os.path.normpath(args.model))
    t0 = time.perf_counter()
    generator = CausalLMGenerator(args.model, device=args.device, dtype=args.dtype, threads=args.serve_threads)
    logger.info(
        "loaded %s (%d parameters, context %d tokens) on %s in %.1f s",
        args.model, generator.n_parameters, generator.max_context, generator.device, time.perf_counter() - t0,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        logger.warning("serving on %s without an API key: anyone who can reach it can use the model", args.host)
    if faults.active:
        logger.warning("fault injection on: %s", faults)

    def on_die() -> None:
        # A crash, not a shutdown: the process is gone at once and later connections are
        # refused. The N-th answer has already been handed to the kernel, which still delivers it.
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(DIED_EXIT_CODE)

    app = create_app(
        generator, model_name=model_name, faults=faults, api_key=api_key,
        max_tokens_limit=args.max_tokens_limit, on_die=on_die,
    )
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    logger.info("serving %r at http://%s:%d/v1", model_name, args.host, args.port)
    try:
        server.run()
    finally:
        app.state.stopping.set()  # wake requests held by --inject-delay
    return 0 if server.started else 1


def register(subparsers: Any) -> None:
    """Add the ``serve`` subcommand to the ``londi`` CLI's subparsers."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a Hugging Face checkpoint over an OpenAI-compatible API",
        description=__doc__.split("\n\n")[0],
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m londi.agents.serving --model PATH [...]``: the same options as ``londi serve``."""
    parser = argparse.ArgumentParser(prog="python -m londi.agents.serving", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except LondiError as exc:
        parser.exit(2, f"londi serve: error: {exc}\n")
        return 2  # unreachable; parser.exit raises SystemExit


if __name__ == "__main__":
    raise SystemExit(main())
