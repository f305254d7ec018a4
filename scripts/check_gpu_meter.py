"""Check, on a CUDA machine, that LONDI meters device-seconds correctly.

What it measures, per call of an LM policy on the GPU:

* ``events``: the CallRecord's device_seconds (CUDA events around the call, synchronised);
* ``wall_sync``: wall time with ``torch.cuda.synchronize()`` before and after (an upper bound:
  it adds launch and Python overhead);
and, for a raw GPU workload of known size:
* ``nosync``: what a naive wall-clock timer without synchronisation reports (kernels still
  running are missed), against ``device_timer`` on the same work.

Usage::

    python scripts/check_gpu_meter.py --out gpu_meter.json [--model deepthink] [--calls 50]
    python scripts/check_gpu_meter.py --ensemble 3 --n-layer 2 --n-embd 128 --out ensemble.json

With ``--ensemble K`` the policy is an :class:`~londi.agents.lm_ensemble.LMEnsemblePolicy` of K
random checkpoints of that size, and each call is also timed member by member (each member's own
metered ``act``): the ensemble's one CallRecord should cover the K forwards, about their sum.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _random_checkpoint(folder: Path, n_layer: int, n_embd: int) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["goal", "of", "the", "agent", "go", "to", "pick", "up", "put", "next", "a", "an", "the", "red", "green", "blue", "purple", "yellow", "grey", "ball", "box", "key", "door", "wall", "you", "see", "carry", "step", "steps", "left", "right", "forward", "turn", "drop", "toggle", "observation", "action", "possible", "actions", "open", "closed", "locked", "and", "1", "2", "3", "4", "5", "6", "7", ":", ",", "."]
    vocab = {w: i for i, w in enumerate(["[UNK]", "[PAD]", "[EOS]", *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    cfg = GPT2Config(vocab_size=len(vocab), n_positions=512, n_layer=n_layer, n_embd=n_embd, n_head=max(1, n_embd // 64),
                     pad_token_id=vocab["[PAD]"], eos_token_id=vocab["[EOS]"], bos_token_id=vocab["[EOS]"])
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def main() -> int:
    import torch

    from londi.agents.lm import load_policy
    from londi.core.meter import device_timer
    from londi.envs.base import TextObservation

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="shipped name or checkpoint (default: a random GPT-2 made here)")
    p.add_argument("--n-layer", type=int, default=12)
    p.add_argument("--n-embd", type=int, default=768)
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--ensemble", type=int, default=0, help="K >= 2: an ensemble of K random checkpoints")
    p.add_argument("--out", default="gpu_meter.json")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here; this check needs a GPU", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp())
    if args.ensemble >= 2:
        from londi.agents.lm_ensemble import write_ensemble

        members = []
        for i in range(args.ensemble):
            torch.manual_seed(i)  # different random weights per member
            members.append(_random_checkpoint(tmp / f"member-{i}", args.n_layer, args.n_embd))
        write_ensemble(tmp / "ensemble", members)
        model = str(tmp / "ensemble")
    else:
        model = args.model or str(_random_checkpoint(tmp / "model", args.n_layer, args.n_embd))
    policy = load_policy(model, device="cuda")
    obs = TextObservation(
        goal="go to the red ball",
        text="You see a wall 2 steps forward\nYou see a red ball 1 step left and 2 steps forward",
        admissible_actions=("turn left", "turn right", "go forward", "pick up", "drop", "toggle"),
        history=(("You see a wall 3 steps forward", "go forward"), ("You see a wall 2 steps left", "turn right")),
    )
    for _ in range(5):  # warm-up: CUDA context, kernels, caches
        policy.act(obs)
    rows = []
    for _ in range(args.calls):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        d = policy.act(obs)
        torch.cuda.synchronize()
        wall_sync = time.perf_counter() - t0
        members_sum = None
        if args.ensemble >= 2:  # the same work, metered member by member
            members_sum = sum(m.act(obs).record.device_seconds for m in policy.members)
        rows.append({"events": d.record.device_seconds, "wall_sync": wall_sync, "members_sum": members_sum,
                     "record_wall": d.record.wall_seconds, "peak_memory_bytes": d.record.peak_memory_bytes,
                     "device": d.record.device, "flops": d.record.flops})
    ev = [r["events"] for r in rows]
    ws = [r["wall_sync"] for r in rows]
    # A raw workload: the naive timer returns before the kernels finish.
    a = torch.randn(4096, 4096, device="cuda")
    torch.cuda.synchronize()
    naive = []
    metered = []
    for _ in range(10):
        t0 = time.perf_counter()
        for _ in range(20):
            a = (a @ a).tanh_()
        naive.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
        with device_timer("cuda") as t:
            for _ in range(20):
                a = (a @ a).tanh_()
        metered.append(t.device_seconds)
    result = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "model": model if args.model else f"random GPT-2 n_layer={args.n_layer} n_embd={args.n_embd}",
        "ensemble_members": args.ensemble if args.ensemble >= 2 else None,
        "members_sum_median_s": statistics.median(r["members_sum"] for r in rows) if args.ensemble >= 2 else None,
        "parameters": getattr(policy, "n_parameters", None),
        "calls": args.calls,
        "events_median_s": statistics.median(ev),
        "wall_sync_median_s": statistics.median(ws),
        "events_le_wall_sync_fraction": sum(e <= w + 1e-4 for e, w in zip(ev, ws)) / len(rows),
        "events_over_wall_sync_median": statistics.median(e / w for e, w in zip(ev, ws)),
        "peak_memory_bytes_max": max(r["peak_memory_bytes"] for r in rows),
        "record_device": rows[0]["device"],
        "raw_matmul_20x4096_naive_nosync_median_s": statistics.median(naive),
        "raw_matmul_20x4096_device_timer_median_s": statistics.median(metered),
        "expected_matmul_seconds_at_50_tflops": 20 * 2 * 4096**3 / 50e12,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
