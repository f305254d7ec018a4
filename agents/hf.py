"""The Hugging Face scoring policies: any local causal or seq2seq checkpoint as a text policy.

:class:`HFPolicy` loads a causal (decoder-only) or seq2seq (encoder-decoder) checkpoint folder
saved with ``save_pretrained`` and chooses actions the GLAM way: it builds the shared prompt
(:func:`londi.agents.prompt.build_prompt`), scores every admissible action by the sum of its
tokens' log-probabilities given the prompt, and plays the most likely one. The prompt is run
through the model once; the actions' tokens are then scored in batches that reuse the prompt's
key/value cache, so a call costs about one prompt forward however many actions there are (when
every action is a single token, as with the shipped models' tokenizer, the prompt forward alone
scores them all).

Every call returns a :class:`~londi.agents.base.Decision` whose :class:`~londi.core.meter.CallRecord`
holds the device-seconds (:func:`londi.core.meter.device_timer`), wall seconds, tokens and a FLOPs
estimate. Nothing is ever downloaded: checkpoints are read with ``local_files_only=True``. The
checkpoint folder's own files (shipped names, ``londi_policy.json``, ``SHA256SUMS``) are
:mod:`londi.agents.checkpoints`.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from londi.agents.checkpoints import (
    DTYPES,
    checkpoint_digest,
    checkpoint_dtype,
    hf_checkpoint_folder,
    policy_settings,
    verify_checksums,
)
from londi.agents.prompt import build_prompt
from londi.agents.scoring import ScoringPolicy
from londi.core.errors import ConfigError, LondiError, check_choice
from londi.core.meter import estimate_flops
from londi.envs.base import TextObservation

if TYPE_CHECKING:  # torch and transformers are imported lazily: importing londi.agents stays cheap
    import torch

logger = logging.getLogger(__name__)

# The prompt always ends with this; action tokens are computed in this context (see _action_ids).
_ANSWER_CUE = "Action:"


# ---------------------------------------------------------------------------------- helpers
def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was asked for but CUDA is not available; use 'cpu' or 'auto'")
        return "cuda:0" if device == "cuda" else device
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


class HFPolicy(ScoringPolicy):
    """A text policy backed by a local Hugging Face causal or seq2seq language model.

    Each call builds the prompt with :func:`~londi.agents.prompt.build_prompt`, scores every
    admissible action by the sum of its tokens' log-probabilities given the prompt, and returns
    the most likely action with the normalised distribution over the admissible actions
    (``Decision.probs``, in their order), a hidden-state summary (``Decision.hidden``: the final
    layer's state at the last prompt token; for seq2seq models, the decoder's state at its start
    token), and a :class:`~londi.core.meter.CallRecord`.

    Token accounting: ``input_tokens`` is the prompt's length; ``output_tokens`` the number of
    action tokens scored (all admissible actions together); ``flops`` is
    ``2 x parameters x tokens run through the model`` (the prompt plus the action positions that
    need a forward of their own, padding included).

    Args:
        model_path: a local checkpoint folder (``config.json``, weights, tokenizer files).
        name: the model's name in call records (default: the folder's name).
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        dtype: ``"auto"`` (float32 on CPU; the checkpoint's half dtype, else float32, on CUDA),
            ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        history_length: past ``(observation, action)`` pairs in the prompt (default: the
            checkpoint's ``londi_policy.json``, else 3).
        list_actions: list the admissible actions in the prompt (default: the checkpoint's
            ``londi_policy.json``, else ``True``).
        max_listed_actions: cap on the listed actions (ScienceWorld has thousands).
        action_batch_size: how many actions are scored in one batched forward.
        max_prompt_tokens: keep at most this many prompt tokens, cutting the oldest (default: the
            model's position limit minus the longest action, where the config gives one).
        use_kv_cache: reuse the prompt's key/value cache to score multi-token actions (the
            alternative, one batched forward of every ``prompt + action``, gives the same scores
            and is kept for models whose cache cannot be reused).
        temperature: ``Decision.probs`` is ``softmax(log-likelihoods / temperature)`` (default:
            the checkpoint's ``londi_policy.json``, else 1).
        sample: draw the action from ``probs`` instead of taking the most likely one (default:
            the checkpoint's ``londi_policy.json``, else ``False``). Sampling is seeded by
            ``seed`` / :meth:`set_seed`, so runs repeat exactly.
        seed: seed of the sampling generator.
        verify: check the folder's ``SHA256SUMS`` (if it has one) before loading.
        trust_remote_code: passed to transformers (off by default: only code in transformers runs).
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        name: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        history_length: int | None = None,
        list_actions: bool | None = None,
        max_listed_actions: int = 50,
        action_batch_size: int = 64,
        max_prompt_tokens: int | None = None,
        use_kv_cache: bool = True,
        temperature: float | None = None,
        sample: bool | None = None,
        seed: int | None = None,
        verify: bool = True,
        trust_remote_code: bool = False,
    ) -> None:
        folder = hf_checkpoint_folder(model_path)
        if history_length is not None and history_length < 0:
            raise ValueError(f"history_length must be >= 0, got {history_length}")
        if max_listed_actions <= 0:
            raise ValueError(f"max_listed_actions must be positive, got {max_listed_actions}")
        if action_batch_size <= 0:
            raise ValueError(f"action_batch_size must be positive, got {action_batch_size}")
        if max_prompt_tokens is not None and max_prompt_tokens <= 0:
            raise ValueError(f"max_prompt_tokens must be positive, got {max_prompt_tokens}")
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        check_choice("dtype", dtype, DTYPES)
        self.path = folder
        self.name = name or folder.name
        self.device = _resolve_device(device)
        self.verified = verify_checksums(folder) if verify else False
        self.history_length, self.list_actions, self.temperature, self.sample = policy_settings(
            folder, history_length=history_length, list_actions=list_actions, temperature=temperature, sample=sample
        )
        self.max_listed_actions = max_listed_actions
        self.action_batch_size = action_batch_size
        self.use_kv_cache = use_kv_cache
        self._rng = np.random.default_rng(seed)
        self._load(folder, dtype, trust_remote_code)
        limit = getattr(self.model.config, "max_position_embeddings", None) or getattr(
            self.model.config, "n_positions", None
        )
        self.max_prompt_tokens = max_prompt_tokens
        self._position_limit = int(limit) if limit and not self.is_seq2seq else None
        self._action_cache: dict[str, list[int]] = {}
        self._warned_truncation = False
        self._digest: str | None = None
        self._setup_fast_paths()

    def _setup_fast_paths(self) -> None:
        """Pick cheaper but equivalent ways to call the tokenizer and the model, checked on a probe.

        * The Rust tokenizer is called directly when it gives the same ids as the Python wrapper
          (saves a fraction of a millisecond per call, which matters for a tiny model).
        * Causal models run as ``base model -> LM head on the last position`` when that gives the
          same logits as the full model (it skips the head on every other position and the
          collection of all hidden states); models with extra logit processing (soft-capping,
          scaling) fail the check and keep the full forward.
        """
        import torch

        probe = "Goal of the agent: go to the red ball\nObservation: You see a wall 2 steps forward\nAction:"
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        self._backend = None
        if backend is not None:
            try:
                if backend.encode(probe, add_special_tokens=True).ids == list(
                    self.tokenizer(probe, add_special_tokens=True)["input_ids"]
                ):
                    self._backend = backend
            except Exception:  # any mismatch in API: keep the wrapper
                self._backend = None
        self._base = self._head = None
        if self.is_seq2seq:
            return
        base = getattr(self.model, "base_model", None)
        head = self.model.get_output_embeddings()
        if base is None or base is self.model or head is None:
            return
        ids = torch.tensor([self._prompt_ids(probe)], device=self.device)
        try:
            with torch.inference_mode():
                full = self.model(input_ids=ids, use_cache=False).logits[0, -1].float()
                mine = head(base(input_ids=ids, use_cache=False).last_hidden_state[:, -1])[0].float()
        except Exception:
            return
        if full.shape == mine.shape and torch.allclose(full, mine, rtol=1e-3, atol=1e-3 * (1 + float(full.abs().max()))):
            self._base, self._head = base, head

    # ------------------------------------------------------------------ loading
    def _load(self, folder: Path, dtype: str, trust_remote_code: bool) -> None:
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        kw = {"local_files_only": True, "trust_remote_code": trust_remote_code}
        try:
            config = AutoConfig.from_pretrained(folder, **kw)
        except Exception as exc:  # transformers raises OSError/ValueError/JSON errors here
            raise LondiError(f"checkpoint {folder} is corrupt or unreadable: config.json: {exc}") from None
        self.is_seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        torch_dtype = checkpoint_dtype(dtype, self.device, config)
        auto = AutoModelForSeq2SeqLM if self.is_seq2seq else AutoModelForCausalLM
        # transformers renamed ``torch_dtype`` to ``dtype`` in 4.56.
        major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
        dtype_kw = {"dtype": torch_dtype} if (major, minor) >= (4, 56) else {"torch_dtype": torch_dtype}
        from transformers.utils import logging as hf_logging

        # A per-checkpoint "Loading weights" bar is noise in an agent loop; our own bars stay.
        bars_were_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, **kw)
            self.model = auto.from_pretrained(folder, config=config, **dtype_kw, **kw)
        except Exception as exc:
            raise LondiError(f"checkpoint {folder} is corrupt or unreadable: {type(exc).__name__}: {exc}") from None
        finally:
            if bars_were_on:
                hf_logging.enable_progress_bar()
        self.model.to(self.device)
        self.model.eval()
        self.dtype = torch_dtype
        self.n_parameters = int(sum(p.numel() for p in self.model.parameters()))
        if self.is_seq2seq:
            self._n_encoder_parameters = int(sum(p.numel() for p in self.model.get_encoder().parameters()))
            start = self.model.config.decoder_start_token_id
            if start is None:
                start = self.tokenizer.pad_token_id
            if start is None:
                raise LondiError(f"checkpoint {folder}: seq2seq config has no decoder_start_token_id")
            self._decoder_start = int(start)
        self._pad_id = next(
            (int(t) for t in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id) if t is not None), 0
        )
        self._eos_id = self.tokenizer.eos_token_id
        logger.info(
            "loaded %s (%s, %d parameters) on %s as %s", folder, "seq2seq" if self.is_seq2seq else "causal",
            self.n_parameters, self.device, torch_dtype,
        )

    # ------------------------------------------------------------------ tokens
    def _prompt_ids(self, prompt: str) -> list[int]:
        backend = getattr(self, "_backend", None)
        if backend is not None:
            ids = backend.encode(prompt, add_special_tokens=True).ids
        else:
            ids = list(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])
        # Some tokenizers close every text with EOS; the answer must continue the prompt instead.
        if not self.is_seq2seq and self._eos_id is not None and len(ids) > 1 and ids[-1] == self._eos_id:
            ids = ids[:-1]
        return ids

    def _action_ids(self, action: str) -> list[int]:
        """Tokens of ``action`` as it continues a prompt ending in ``"Action:"``.

        Computed as ``tokens("Action: " + action)`` minus ``tokens("Action:")`` so that
        tokenizers which mark word starts (GPT-2's ``Ġ``, SentencePiece's ``▁``) get the form the
        model sees in context; falls back to tokenizing ``" " + action`` where the two
        tokenizations do not share a prefix. Cached per action string.
        """
        ids = self._action_cache.get(action)
        if ids is not None:
            return ids
        if self.is_seq2seq:
            ids = list(self.tokenizer(action, add_special_tokens=False)["input_ids"])
        else:
            cue = list(self.tokenizer(_ANSWER_CUE, add_special_tokens=False)["input_ids"])
            full = list(self.tokenizer(f"{_ANSWER_CUE} {action}", add_special_tokens=False)["input_ids"])
            if full[: len(cue)] == cue and len(full) > len(cue):
                ids = full[len(cue):]
            else:
                ids = list(self.tokenizer(" " + action, add_special_tokens=False)["input_ids"])
        if not ids:
            raise LondiError(f"{self.name}: action {action!r} has no tokens under this tokenizer")
        if len(self._action_cache) < 100_000:  # bounded: ScienceWorld's action strings vary a lot
            self._action_cache[action] = ids
        return ids

    # ------------------------------------------------------------------ scoring
    def prompt(self, obs: TextObservation) -> str:
        """The prompt this policy shows the model for ``obs``."""
        return build_prompt(
            obs,
            history_length=self.history_length,
            list_actions=self.list_actions,
            max_listed_actions=self.max_listed_actions,
        )

    def score(self, obs: TextObservation) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """Log-likelihood of each admissible action given the prompt (no metering).

        Returns ``(scores, hidden, counts)``: the summed log-probabilities in the order of
        ``obs.admissible_actions``, the hidden-state summary, and the token counts
        (``input_tokens``, ``output_tokens``, ``forward_tokens``).
        """
        import torch

        actions = list(obs.admissible_actions)
        if not actions:
            raise LondiError(f"{self.name}: the observation has no admissible actions")
        prompt_ids = self._prompt_ids(self.prompt(obs))
        action_ids = [self._action_ids(a) for a in actions]
        prompt_ids = self._truncate(prompt_ids, max(len(a) for a in action_ids))
        with torch.inference_mode():
            if self.is_seq2seq:
                scores, hidden, fwd = self._score_seq2seq(prompt_ids, action_ids)
            else:
                scores, hidden, fwd = self._score_causal(prompt_ids, action_ids)
        counts = {
            "input_tokens": len(prompt_ids),
            "output_tokens": int(sum(len(a) for a in action_ids)),
            "forward_tokens": fwd,
        }
        return scores, hidden, counts

    def score_batch(self, observations: Sequence[TextObservation]) -> list[tuple[np.ndarray, np.ndarray, dict[str, int]]]:
        """:meth:`score` for several observations, in one forward where every admissible
        action is a single token of a causal model (each prompt's first-token distribution is
        then all that is scored); otherwise one :meth:`score` per observation.

        The prompts are right-padded: under the causal mask no real position attends to the
        pads after it, and positions keep their unbatched ids, so each row computes what its
        unbatched call computes, up to the floating-point order of a batched matrix product.
        """
        import torch

        if len(observations) <= 1 or self.is_seq2seq:
            return [self.score(obs) for obs in observations]
        prompts, firsts = [], []
        for obs in observations:
            actions = list(obs.admissible_actions)
            if not actions:
                raise LondiError(f"{self.name}: the observation has no admissible actions")
            action_ids = [self._action_ids(a) for a in actions]
            if any(len(a) != 1 for a in action_ids):
                return [self.score(obs) for obs in observations]
            prompts.append(self._truncate(self._prompt_ids(self.prompt(obs)), 1))
            firsts.append([a[0] for a in action_ids])
        lengths = [len(p) for p in prompts]
        ids = torch.full((len(prompts), max(lengths)), self._pad_id, dtype=torch.long, device=self.device)
        for r, p in enumerate(prompts):
            ids[r, : len(p)] = torch.tensor(p)
        rows = torch.arange(len(prompts), device=self.device)
        last_pos = torch.tensor([n - 1 for n in lengths], device=self.device)
        with torch.inference_mode():
            if self._base is not None:
                last = self._base(input_ids=ids, use_cache=False).last_hidden_state[rows, last_pos]
                logits = self._head(last)
            else:
                out = self.model(input_ids=ids, use_cache=False, output_hidden_states=True)
                last = out.hidden_states[-1][rows, last_pos]
                logits = out.logits[rows, last_pos]
            logp = torch.log_softmax(logits.float(), dim=-1).double().cpu().numpy()
            hidden = last.float().cpu().numpy()
        return [
            (logp[r, firsts[r]], hidden[r], {"input_tokens": lengths[r], "output_tokens": len(firsts[r]),
                                             "forward_tokens": lengths[r]})
            for r in range(len(prompts))
        ]

    def _truncate(self, ids: list[int], longest_action: int) -> list[int]:
        limit = self.max_prompt_tokens
        if limit is None and self._position_limit is not None:
            limit = max(1, self._position_limit - longest_action)
        if limit is None or len(ids) <= limit:
            return ids
        if not self._warned_truncation:
            logger.warning("%s: prompt of %d tokens cut to its last %d", self.name, len(ids), limit)
            self._warned_truncation = True
        return ids[-limit:]

    def _score_causal(self, prompt_ids: list[int], action_ids: list[list[int]]):
        import torch

        dev = self.device
        ids = torch.tensor([prompt_ids], device=dev)
        multi = [i for i, a in enumerate(action_ids) if len(a) > 1]
        # The cache is only built when some action has more than one token to score.
        want_cache = bool(multi) and self.use_kv_cache
        if self._base is not None:
            out = self._base(input_ids=ids, use_cache=want_cache)
            last = out.last_hidden_state[0, -1]
            logits = self._head(last[None])[0]
        else:
            out = self.model(input_ids=ids, use_cache=want_cache, output_hidden_states=True)
            last = out.hidden_states[-1][0, -1]
            logits = out.logits[0, -1]
        hidden = last.float().cpu().numpy()
        first = torch.log_softmax(logits.float(), dim=-1)
        first_ids = torch.tensor([a[0] for a in action_ids], device=dev)
        scores = first[first_ids].double().cpu().numpy()
        forward = len(prompt_ids)
        if not multi:
            return scores, hidden, forward
        cache = out.past_key_values if want_cache else None
        for start in range(0, len(multi), self.action_batch_size):
            chunk = multi[start : start + self.action_batch_size]
            seqs = [action_ids[i] for i in chunk]
            if cache is not None:
                rest, n_fwd = self._continuation_with_cache(cache, seqs)
            else:
                rest, n_fwd = self._continuation_full(prompt_ids, seqs)
            forward += n_fwd
            for i, s in zip(chunk, rest):
                scores[i] += s
        return scores, hidden, forward

    def _logits(self, **inputs: Any) -> torch.Tensor:
        """Float32 logits at every position, through the base+head split where it was verified."""
        if self._base is not None:
            return self._head(self._base(**inputs).last_hidden_state).float()
        return self.model(**inputs).logits.float()

    def _continuation_with_cache(self, cache: Any, seqs: list[list[int]]) -> tuple[list[float], int]:
        """Sum of log p(token_k | prompt, tokens_<k) for k >= 1, reusing the prompt's KV cache."""
        import torch

        n, width = len(seqs), max(len(s) for s in seqs) - 1
        inp = torch.full((n, width), self._pad_id, dtype=torch.long, device=self.device)
        for r, s in enumerate(seqs):
            inp[r, : len(s) - 1] = torch.tensor(s[:-1])
        # Right padding: real positions never attend to the pads that follow them (causal mask),
        # and the pads' outputs are ignored, so no attention mask is needed.
        if hasattr(cache, "batch_repeat_interleave"):
            batch_cache = copy.deepcopy(cache)
            batch_cache.batch_repeat_interleave(n)
        elif isinstance(cache, tuple):  # legacy tuple-of-tuples caches (older transformers)
            batch_cache = tuple(tuple(t.expand(n, *t.shape[1:]) for t in layer) for layer in cache)
        else:
            raise LondiError(f"{self.name}: cannot reuse a {type(cache).__name__}; pass use_kv_cache=False")
        logp = torch.log_softmax(self._logits(input_ids=inp, past_key_values=batch_cache, use_cache=True), dim=-1)
        out = []
        for r, s in enumerate(seqs):
            targets = torch.tensor(s[1:], device=self.device)
            out.append(float(logp[r, torch.arange(len(s) - 1, device=self.device), targets].double().sum()))
        return out, n * width

    def _continuation_full(self, prompt_ids: list[int], seqs: list[list[int]]) -> tuple[list[float], int]:
        """Same scores as :meth:`_continuation_with_cache`, from one batched ``prompt + action`` forward."""
        import torch

        p = len(prompt_ids)
        n, width = len(seqs), p + max(len(s) for s in seqs) - 1
        inp = torch.full((n, width), self._pad_id, dtype=torch.long, device=self.device)
        for r, s in enumerate(seqs):
            inp[r, : p + len(s) - 1] = torch.tensor(prompt_ids + s[:-1])
        logp = torch.log_softmax(self._logits(input_ids=inp, use_cache=False), dim=-1)
        out = []
        for r, s in enumerate(seqs):
            pos = torch.arange(p, p + len(s) - 1, device=self.device)
            targets = torch.tensor(s[1:], device=self.device)
            out.append(float(logp[r, pos, targets].double().sum()))
        return out, n * width

    def _score_seq2seq(self, prompt_ids: list[int], action_ids: list[list[int]]):
        import torch

        dev = self.device
        enc_ids = torch.tensor([prompt_ids], device=dev)
        encoder_out = self.model.get_encoder()(input_ids=enc_ids)
        enc_h = encoder_out.last_hidden_state
        scores = np.empty(len(action_ids), dtype=np.float64)
        hidden = None
        dec_positions = 0
        for start in range(0, len(action_ids), self.action_batch_size):
            seqs = action_ids[start : start + self.action_batch_size]
            n, width = len(seqs), max(len(s) for s in seqs)
            dec = torch.full((n, width), self._pad_id, dtype=torch.long, device=dev)
            dec[:, 0] = self._decoder_start
            for r, s in enumerate(seqs):
                if len(s) > 1:
                    dec[r, 1 : len(s)] = torch.tensor(s[:-1])
            out = self.model(
                encoder_outputs=(enc_h.expand(n, -1, -1),),
                decoder_input_ids=dec,
                use_cache=False,
                output_hidden_states=hidden is None,
            )
            if hidden is None:
                hidden = out.decoder_hidden_states[-1][0, 0].float().cpu().numpy()
            logp = torch.log_softmax(out.logits.float(), dim=-1)
            for r, s in enumerate(seqs):
                pos = torch.arange(len(s), device=dev)
                scores[start + r] = float(logp[r, pos, torch.tensor(s, device=dev)].double().sum())
            dec_positions += n * width
        # FLOPs: encoder parameters over the prompt, the rest over the decoder positions.
        enc_frac = self._n_encoder_parameters / max(self.n_parameters, 1)
        forward = int(round(len(prompt_ids) * enc_frac + dec_positions * (1 - enc_frac)))
        return scores, hidden, forward

    def _flops(self, counts: dict[str, Any]) -> float:
        return estimate_flops(self.n_parameters, counts["forward_tokens"])

    @property
    def hidden_size(self) -> int:
        """Length of ``Decision.hidden``."""
        cfg = self.model.config
        if self.is_seq2seq and hasattr(cfg, "d_model"):
            return int(cfg.d_model)
        return int(cfg.get_text_config().hidden_size if hasattr(cfg, "get_text_config") else cfg.hidden_size)

    def fingerprint(self) -> dict[str, Any]:
        """The checkpoint's weights and settings (:func:`~londi.agents.checkpoints.checkpoint_digest`), hashed once."""
        if self._digest is None:
            self._digest = checkpoint_digest(self.path)
        return {"kind": "hf", "name": self.name, "sha256": self._digest}

    def __repr__(self) -> str:
        kind = "seq2seq" if self.is_seq2seq else "causal"
        return (
            f"HFPolicy(name={self.name!r}, path={str(self.path)!r}, {kind}, params={self.n_parameters}, "
            f"device={self.device!r}, history_length={self.history_length}, "
            f"{'sample' if self.sample else 'greedy'}, temperature={self.temperature})"
        )


__all__ = ["HFPolicy", "ScoringPolicy"]
