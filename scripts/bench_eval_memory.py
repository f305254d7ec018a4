"""Load benchmark: ``londi eval`` over many BabyAI-Text episodes, with its resident memory sampled.

Runs ``londi eval`` as a child process and samples the child's resident set size (RSS) every
``--interval`` seconds; writes the samples and a summary (RSS shortly after start, at the end,
peak, growth) to a JSON file.

    python scripts/bench_eval_memory.py --method expert --episodes 10000 --out docs/results/eval_memory_expert.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="expert")
    p.add_argument("--episodes", type=int, default=10_000)
    p.add_argument("--env", default=None)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    londi = shutil.which("londi") or str(Path(sys.executable).with_name("londi"))
    tmp = Path(tempfile.mkdtemp())
    cmd = [londi, "eval", "--method", args.method, "--episodes", str(args.episodes), "--no-progress",
           "--out", str(tmp / "results.json")]
    if args.env:
        cmd += ["--env", args.env]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    child = psutil.Process(proc.pid)
    samples = []
    while proc.poll() is None:
        try:
            samples.append((round(time.perf_counter() - t0, 2), child.memory_info().rss))
        except psutil.NoSuchProcess:
            break
        time.sleep(args.interval)
    err = proc.stderr.read()
    if proc.returncode != 0:
        print(err, file=sys.stderr)
        return proc.returncode
    wall = time.perf_counter() - t0
    # "start" is taken once imports and model loading are done: the first sample after 10% of the run
    settled = [s for s in samples if s[0] >= 0.1 * wall] or samples
    rss = [r for _, r in samples]
    results = json.loads((tmp / "results.json").read_text())
    summary = {
        "command": " ".join(["londi", *cmd[1:-2]]),
        "episodes": args.episodes,
        "wall_seconds": round(wall, 1),
        "rss_first_sample_mib": round(rss[0] / 2**20, 1),
        "rss_after_10pct_mib": round(settled[0][1] / 2**20, 1),
        "rss_end_mib": round(rss[-1] / 2**20, 1),
        "rss_peak_mib": round(max(rss) / 2**20, 1),
        "growth_after_10pct_mib": round((rss[-1] - settled[0][1]) / 2**20, 1),
        "success": results["methods"][args.method]["success"],
        "samples": samples,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
