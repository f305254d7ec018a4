"""Metering of model calls: device-seconds, wall seconds, tokens and a FLOPs estimate.

Every model call in LONDI (QUICK, DEEPTHINK, the switch's own feature encoder) produces a
:class:`CallRecord`. Device-seconds are measured as follows:

* on a CUDA device, with CUDA events recorded around the call and a synchronisation before the
  elapsed time is read, so that asynchronous kernels are counted in full;
* on the CPU, as the CPU time of the whole process (``time.process_time``) over the call. The
  process clock, rather than the calling thread's, is used because PyTorch runs its intra-op
  work on a pool of worker threads that a thread clock would miss.

The switch does not take a policy's word for its cost: it times every call itself
(:func:`call_clock`: wall time, thread and process CPU time) and books :func:`bill`'s figure,
which keeps the policy's own device-seconds only where the policy measured them on the device
(``CallRecord.device_measured``: CUDA events, a server's reported compute).
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass
class CallRecord:
    """The accounting of one model call.

    Attributes:
        model: the model's name.
        device: where it ran ("cpu", "cuda:0", "http", "oracle").
        device_seconds: compute time on the device (CUDA events, or process CPU time).
        wall_seconds: elapsed wall-clock time.
        input_tokens: tokens fed to the model.
        output_tokens: tokens produced or scored by the model.
        flops: estimated floating-point operations, 2 x parameters x tokens.
        cache_hit: the answer came from the call cache (no device time spent).
        error: the error message if the call failed, else ``None``.
        retries: how many times the call was retried (HTTP backends).
        peak_memory_bytes: peak device memory during the call, where measured (CUDA).
        device_measured: the policy measured ``device_seconds`` on the device itself (CUDA
            events, or the compute time a server reports). Only then does the switch keep the
            policy's figure; otherwise it bills its own measurement of the call
            (:func:`call_clock`).
        cpu_seconds: CPU time of the calling thread over the call, as the switch measured it.
    """

    model: str
    device: str = "cpu"
    device_seconds: float = 0.0
    wall_seconds: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    flops: float = 0.0
    cache_hit: bool = False
    error: str | None = None
    retries: int = 0
    peak_memory_bytes: int = 0
    device_measured: bool = False
    cpu_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_flops(n_parameters: int, n_tokens: int) -> float:
    """The usual forward-pass estimate: 2 x parameters x tokens."""
    return 2.0 * float(n_parameters) * float(n_tokens)


@dataclass
class Timing:
    """Filled in by :func:`device_timer` when its block ends."""

    device_seconds: float = 0.0
    wall_seconds: float = 0.0
    peak_memory_bytes: int = 0


@contextmanager
def device_timer(device: str = "cpu") -> Iterator[Timing]:
    """Measure the device time of the enclosed block.

    On ``cuda*`` devices, CUDA events with a synchronisation (and the peak memory allocated);
    elsewhere, the process CPU time.
    """
    timing = Timing()
    wall0 = time.perf_counter()
    if device.startswith("cuda"):
        import torch

        dev = torch.device(device)
        torch.cuda.reset_peak_memory_stats(dev)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record(torch.cuda.current_stream(dev))
        try:
            yield timing
        finally:
            end.record(torch.cuda.current_stream(dev))
            end.synchronize()
            timing.device_seconds = start.elapsed_time(end) / 1000.0
            timing.peak_memory_bytes = int(torch.cuda.max_memory_allocated(dev))
            timing.wall_seconds = time.perf_counter() - wall0
    else:
        cpu0 = time.process_time()
        try:
            yield timing
        finally:
            timing.device_seconds = time.process_time() - cpu0
            timing.wall_seconds = time.perf_counter() - wall0


@dataclass
class CallTiming:
    """What :func:`call_clock` measured around one call: wall time, the calling thread's CPU
    time and the process's CPU time (which also counts PyTorch's intra-op worker threads)."""

    wall_seconds: float = 0.0
    thread_cpu_seconds: float = 0.0
    process_cpu_seconds: float = 0.0


@contextmanager
def call_clock() -> Iterator[CallTiming]:
    """Time the enclosed call from the outside, whatever it reports about itself (filled in
    when the block ends, also when it raises)."""
    timing = CallTiming()
    wall0, thread0, proc0 = time.perf_counter(), time.thread_time(), time.process_time()
    try:
        yield timing
    finally:
        timing.wall_seconds = time.perf_counter() - wall0
        timing.thread_cpu_seconds = time.thread_time() - thread0
        timing.process_cpu_seconds = time.process_time() - proc0


def bill(record: CallRecord, timing: CallTiming) -> CallRecord:
    """The record the switch books for a call it timed itself.

    The policy's ``device_seconds`` are kept only where it measured them on the device
    (``record.device_measured``). Otherwise a CPU call is billed the process CPU time the switch
    measured (PyTorch's worker threads included; at least the calling thread's), and a call
    on any other device (a server that reports no compute, a remote or asynchronous device) its
    wall time, the most it can have used. Wall and thread CPU time are always the switch's own.
    """
    if record.device_measured:
        device_seconds = record.device_seconds
    elif record.device == "cpu":
        device_seconds = max(timing.process_cpu_seconds, timing.thread_cpu_seconds)
    else:
        device_seconds = timing.wall_seconds
    return replace(record, device_seconds=device_seconds, wall_seconds=timing.wall_seconds,
                   cpu_seconds=timing.thread_cpu_seconds)
