#!/usr/bin/env python
"""Make an LM ensemble folder from trained checkpoints, ready to ship or to pass as ``--deepthink``.

Each member checkpoint (a folder written by ``scripts/train_lms.py``, or any Hugging Face
checkpoint) is copied to ``OUT/NAME-1``, ``OUT/NAME-2``, ... with fresh ``SHA256SUMS``; then
``OUT/NAME`` gets the ``londi_ensemble.json`` manifest that points at them (see
:mod:`londi.agents.lm_ensemble`), a model card and its own checksums. Folders stay flat, as the
package data (``models/*/*``) needs. With ``--eval-episodes N`` (the default 200) the ensemble
plays N held-out episodes (the seeds ``scripts/bench_lms.py`` uses, never used in training) and
the card records what was measured.

Example (DEEPTHINK as three behaviour-cloned checkpoints, see docs/benchmarks.md)::

    python scripts/make_ensemble.py --name deepthink --out runs/ens \\
        --members runs/lms_big/deepthink runs/dt_ep5/deepthink runs/dt_d3000/deepthink \\
        --temperature 0.5 --sample
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from londi.agents.training.evaluation import (
    agreement_table,
    evaluate_policy,
    expert_state_agreement,
    markdown_table,
)
from londi.agents.training.specs import HELDOUT_SEED_START


def _first_line(card: Path, prefix: str) -> str:
    """The first line of a member's model card that starts with ``prefix`` (or '-')."""
    if card.is_file():
        for line in card.read_text().splitlines():
            if line.startswith(prefix):
                return line[len(prefix):].strip()
    return "-"


def copy_members(members: list[Path], out: Path, name: str) -> list[Path]:
    """Copy each member checkpoint to ``out/name-i`` (replacing what is there) with fresh checksums."""
    from londi.agents.checkpoints import CHECKSUM_FILE, verify_checksums, write_checksums

    copies = []
    for i, member in enumerate(members, start=1):
        if not (member / "config.json").is_file():
            raise SystemExit(f"error: {member} is not a Hugging Face checkpoint (no config.json)")
        verify_checksums(member)  # a corrupt member must not be shipped
        target = out / f"{name}-{i}"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(member, target, ignore=shutil.ignore_patterns(CHECKSUM_FILE, "*.tmp"))
        if any(p.is_dir() for p in target.iterdir()):
            raise SystemExit(f"error: {member} has sub-folders; shipped checkpoint folders must be flat")
        write_checksums(target)
        copies.append(target)
    return copies


def ensemble_card(name: str, members: list[Path], sources: list[Path], policy, results, command: str,
                  episodes: int, threads: int) -> str:
    rows = "\n".join(
        f"| `{m.name}` | `{src}` | {policy.members[i].n_parameters:,} | "
        f"{_first_line(m / 'MODEL_CARD.md', 'Training command:')} |"
        for i, (m, src) in enumerate(zip(members, sources))
    )
    measured = "Not measured (`--eval-episodes 0`)."
    if results:
        measured = (
            f"{episodes} held-out episodes (seeds {HELDOUT_SEED_START:,} to {HELDOUT_SEED_START + episodes - 1:,}, never "
            "used in training), the ensemble in control at every step, through "
            f"`londi.agents.lm_ensemble.LMEnsemblePolicy` on the CPU with {threads} torch thread(s) (device-seconds = process "
            f"CPU time of all members' forwards per call). Measured {time.strftime('%Y-%m-%d')}:\n\n"
            + markdown_table(results) + "\n" + agreement_table(results)
        )
    return f"""# {name.upper()}: an ensemble of {len(members)} behaviour-cloned checkpoints

{len(members)} causal language models (each a Hugging Face checkpoint in a sibling folder, loaded
through transformers' Auto classes) score every admissible action on LONDI's prompt; the ensemble
chooses from `softmax(mean log-likelihood / {policy.temperature})`
({'sampled, seeded per episode' if policy.sample else 'greedy'}). Load it with
`londi.agents.lm.load_policy("{name}")` or `load_policy(<this folder>)`; the manifest is
`londi_ensemble.json`. A call is metered as one call of the whole ensemble (device-seconds over
all members' forwards, tokens and FLOPs summed).

## Members

| folder | copied from | parameters | training command |
|---|---|---|---|
{rows}

Each member's own card (training data, procedure, its own held-out success) is in its folder.
Their labels come from Minigrid's BabyAIBot, **an oracle** that reads the full game state.

## Evaluation

{measured}
Made with: `{command}`
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", nargs="+", required=True, help="member checkpoint folders")
    parser.add_argument("--name", required=True, help="the ensemble's name (folder name and call-record name)")
    parser.add_argument("--out", required=True, help="parent folder of the ensemble and member folders")
    parser.add_argument("--temperature", type=float, default=None, help="default: the first member's")
    parser.add_argument("--sample", action=argparse.BooleanOptionalAction, default=None,
                        help="sample the action (default: the first member's setting)")
    parser.add_argument("--eval-episodes", type=int, default=200, help="held-out episodes to measure (0: skip)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads while measuring")
    args = parser.parse_args(argv)
    if args.eval_episodes < 0:
        parser.error("--eval-episodes must be >= 0")
    if args.temperature is not None and not args.temperature > 0:
        parser.error("--temperature must be positive")
    sources = [Path(m).expanduser().resolve() for m in args.members]
    for m in sources:
        if not m.is_dir():
            parser.error(f"member {m} is not a folder")

    import torch

    from londi.agents.checkpoints import write_checksums
    from londi.agents.lm import load_policy
    from londi.agents.lm_ensemble import write_ensemble

    torch.set_num_threads(args.threads)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    members = copy_members(sources, out, args.name)
    folder = out / args.name
    if folder.exists():
        shutil.rmtree(folder)
    write_ensemble(folder, members, temperature=args.temperature, sample=args.sample)
    policy = load_policy(folder, device="cpu", name=args.name)
    results = []
    if args.eval_episodes:
        seeds = range(HELDOUT_SEED_START, HELDOUT_SEED_START + args.eval_episodes)
        result = evaluate_policy(policy, seeds, desc=f"eval {args.name}")
        result.expert_agreement = expert_state_agreement(policy, seeds)
        results.append(result)
    command = "python " + " ".join([os.path.relpath(sys.argv[0])] + (argv if argv is not None else sys.argv[1:]))
    card = ensemble_card(args.name, members, sources, policy, results, command, args.eval_episodes, args.threads)
    (folder / "MODEL_CARD.md").write_text(card)
    write_checksums(folder)
    print(f"wrote {folder} ({len(members)} members)")
    if results:
        print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
