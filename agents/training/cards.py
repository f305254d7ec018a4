"""The model cards (``MODEL_CARD.md``) of the LMs trained here: what data, what size, the
training command, and what was measured on held-out episodes."""
from __future__ import annotations

import time

from londi.agents.training.evaluation import EvalResult, agreement_table, markdown_table, results_table
from londi.agents.training.specs import HELDOUT_SEED_START, TRAIN_SEED_START, ModelSpec
from londi.agents.training.textgames import (
    SW_EVAL_MAX_STEPS,
    SW_EXCLUDED_HELDOUT,
    TW_CHALLENGE,
    TW_ENV_ID,
    TW_TRAIN_GAME_SEEDS,
    GameSetup,
)


def babyai_card(spec: ModelSpec, log: dict, results: list[EvalResult], command: str, eval_threads: int) -> str:
    """The model card of a BabyAI model trained with ``spec`` (``log``: its training log) and
    measured in ``results``."""
    mine = next(r for r in results if r.model == spec.name)
    phases = "\n".join(
        f"| {p['phase']} | {p.get('beta', 1.0):.2f} | {p['episodes']} | {p['states']} | "
        f"{p.get('rollin_success', p.get('expert_success', float('nan'))):.3f} | {p['loss']:.3f} | {p['elapsed_s']:.0f} |"
        for p in log["phases"]
    )
    env_name = spec.env.split("BabyAIText-", 1)[-1].rsplit("-v", 1)[0]
    origin = (f"fine-tuned in this project from the shipped `{log['init_from'].rstrip('/').rsplit('/', 1)[-1]}`"
              if log.get("init_from") else "trained from scratch in this project")
    levels = sorted({r.level for r in results if r.level})
    knows = (f"the levels of its mix ({', '.join(levels)})" if levels else f"one level ({env_name})")
    return f"""# {spec.name.upper()}: a behaviour-cloned text policy for BabyAI-Text {env_name}

A causal language model (Llama architecture, {origin}) that writes the
next action after LONDI's shared prompt (`londi.agents.prompt.build_prompt`). It is one half of
LONDI's shipped QUICK/DEEPTHINK pair and is loaded like any Hugging Face checkpoint:
`londi.agents.lm.load_policy("{spec.name}")`, or `AutoModelForCausalLM.from_pretrained(<this folder>)`.

## Model

| | |
|---|---|
| architecture | LlamaForCausalLM, {spec.num_layers} layer(s), d_model {spec.hidden_size}, {spec.num_heads} heads, SwiGLU {spec.intermediate_size}, tied embeddings |
| parameters | {log['parameters']:,} |
| tokenizer | word level ({int(log.get("vocab_size", 0))} tokens), each action one token; `PreTrainedTokenizerFast` |
| prompt | `build_prompt(obs, history_length={spec.history_length}, list_actions={spec.list_actions})` (saved in `londi_policy.json`) |
| action choice | {_choice_text(spec)} |

## Training data and procedure

Env `{spec.env}`. Labels come from Minigrid's BabyAIBot, **an oracle** that
reads the full game state. First {spec.demo_episodes} expert episodes, then {spec.dagger_rounds} DAgger
round(s) of {spec.dagger_episodes} episodes each, rolled in by the model itself (the expert acts
with probability beta per step) and labelled by the expert; training continues on the aggregate
({log['train_states']:,} states in all). Loss: next-token cross-entropy on the action token.
AdamW, peak learning rate {spec.lr}, batch {spec.batch_size}, {spec.epochs_demo} epoch(s) after the
demos and {spec.epochs_round} after each round. Training seeds >= {TRAIN_SEED_START:,}; seed {log['seed']},
{log['threads']} torch thread(s); {log['train_seconds']:.0f} s on {_trained_on(log)}.

| phase | beta | episodes | states | success of the roll-in (demos: expert) | loss | elapsed s |
|---|---|---|---|---|---|---|
{phases}

Training command: `{command}`

## Evaluation

{mine.episodes} held-out episodes{" per level" if levels else ""} (seeds {HELDOUT_SEED_START:,} to {HELDOUT_SEED_START + mine.episodes - 1:,}, never used in
training), the model in control at every step, through `londi.agents.lm.HFPolicy` on the CPU with
{eval_threads} torch thread(s) (device-seconds = process CPU time per call). Measured {time.strftime("%Y-%m-%d")} on a
2-core CPU container, {"the models measured in this run in the same process" if len(results) > 1 else "alone"}:

{markdown_table(results)}
Per-step agreement with the expert (oracle) on the states each model visits, by where the goal
object is ("ahead": in view straight ahead, the easy case; "side": in view off to the side;
"unseen": not in view):

{agreement_table(results)}
## Intended use and limits

Built for LONDI's demo and tests: a cheap/strong pair whose gap depends on the state, on 2 CPU
cores, with nothing downloaded. It knows {knows} and the BabyAI-Text renderer's
words; anything else maps to `<unk>`. It is not a general language model.
"""


def _choice_text(spec: ModelSpec) -> str:
    how = f"sampled from softmax(log-likelihood / {spec.temperature})" if spec.sample else "the most likely one"
    return f"log-likelihood of each admissible action given the prompt (GLAM style); the action is {how}"


def _trained_on(log: dict) -> str:
    if str(log.get("device", "cpu")).startswith("cuda"):
        return f"a GPU ({log.get('device_name', log['device'])})"
    return "a 2-core CPU container"


def text_game_card(game: str, spec: ModelSpec, log: dict, setup: GameSetup, results: list[dict], command: str,
                   episodes: int) -> str:
    """The model card of a TextWorld/ScienceWorld model trained with ``spec`` on ``setup``."""
    phases = "\n".join(
        f"| {p['phase']} | {p['beta']:.2f} | {p['episodes']} | {p['states']} | {p['rollin_success']:.3f} | "
        f"{p['loss']:.3f} | {p['elapsed_s']:.0f} |" for p in log["phases"])
    if game == "textworld":
        data = (f"TextWorld `tw-make {TW_CHALLENGE}` games (`tw-simple --rewards dense --goal detailed`) made from "
                f"seeds {TW_TRAIN_GAME_SEEDS.start}-{TW_TRAIN_GAME_SEEDS.start + len(setup.train_env_kwargs[0]['game_files']) - 1}. "
                "Labels: TextWorld's `policy_commands`, **an oracle** that replans from the game state. "
                f"Held-out: `{TW_ENV_ID}` (its games are tw-make seeds 1-5, never trained on), episode seeds "
                f"{HELDOUT_SEED_START:,}+i.")
        cand = "none (TextWorld lists 8-30 commands per step; every one is scored)"
    else:
        tasks = ", ".join(f"`{k['id']}`" for k in setup.train_env_kwargs)
        data = (f"ScienceWorld {tasks}, `easy` simplifications, `train`-split variations, minus the variations that "
                f"`londi eval` draws in its first {SW_EXCLUDED_HELDOUT} held-out episodes of run seed 0. Labels: "
                "the package's gold path, **an oracle** (open-loop plan; gold commands missing from the valid-action "
                "list are played but not learned). Held-out: `dev`-split variations, episode seeds "
                f"{HELDOUT_SEED_START:,}+i, at most {SW_EVAL_MAX_STEPS} steps.")
        cand = (f"`londi.agents.candidates.CandidateFilter` saved in `londi_policy.json` (`load_policy` returns a "
                f"`CandidatePolicy`): verbs {', '.join(log['candidates']['verbs'])}; at most "
                f"{log['candidates']['max_candidates']} candidates, ranked by word overlap with goal, observation, "
                "inventory and the last 3 steps")
    return f"""# {game}-{spec.name}: a behaviour-cloned text policy for {'TextWorld' if game == 'textworld' else 'ScienceWorld'}

The {spec.name.upper()} half of LONDI's {game} pair: a causal LM (Llama architecture, trained from
scratch in this project) that scores each admissible command after LONDI's shared prompt
(`londi.agents.prompt.build_prompt`) by the sum of its tokens' log-probabilities. Load it with
`londi.agents.lm.load_policy("{game}-{spec.name}")` or `AutoModelForCausalLM.from_pretrained(<this folder>)`.

## Model

| | |
|---|---|
| architecture | LlamaForCausalLM, {spec.num_layers} layer(s), d_model {spec.hidden_size}, {spec.num_heads} heads, SwiGLU {spec.intermediate_size}, tied embeddings |
| parameters | {log['parameters']:,} |
| tokenizer | lower-cased word level ({log['vocab_size']} tokens, built from the training prompts and admissible commands; other words map to `<unk>`) |
| prompt | `build_prompt(obs, history_length={spec.history_length}, list_actions={spec.list_actions})` (saved in `londi_policy.json`) |
| decoding | sampled from softmax(log-likelihood / {spec.temperature}) (`sample={spec.sample}`), seeded per episode |
| candidate list | {cand} |

## Training data and procedure

{data}

Loss: cross-entropy of every command token after the prompt. AdamW, peak learning rate {spec.lr},
batch {spec.batch_size}, {spec.epochs_demo} epoch(s) on the demonstrations, {spec.epochs_round} after each
DAgger round ({spec.dagger_rounds} round(s) of {spec.dagger_episodes} episodes, the oracle acting with
probability beta). {log['train_states']:,} labelled states in all; seed {log['seed']}, 1 torch thread,
{log['train_seconds']:.0f} s on a 2-core CPU container.

| phase | beta | episodes | states | success of the roll-in (demos: oracle) | loss | elapsed s |
|---|---|---|---|---|---|---|
{phases}

Training command: `{command}`

## Held-out evaluation

{episodes} episodes per env with each model in control, through the class `load_policy` returns
(the same code path as `londi eval`), 1 torch thread, device-ms = process CPU time per call.
Measured {time.strftime("%Y-%m-%d")} on a 2-core CPU container (shared with other jobs):

{results_table(results)}
## Intended use and limits

Built for LONDI's TextWorld/ScienceWorld experiments: a cheap/strong pair trained in minutes on
one CPU core, with nothing downloaded. It knows only the games above and their words; it is not
a general language model.
"""
