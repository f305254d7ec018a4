"""Every command README.md shows runs as written, with tiny settings: few episodes and steps, a
short-lived server on a free port, a shrunk copy of a sweep config. A README command cannot
break silently.

The commands run in README order in one scratch folder (later ones read what earlier ones
wrote, as for a user), except the two set-up scripts, which run from the repository root.
``bash scripts/test.sh`` is the command that runs this very suite (CI runs it), so it is the one
command not run here.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LONDI = Path(sys.executable).with_name("londi")
#: The README's command that runs this suite itself.
SELF = "bash scripts/test.sh"
TINY_EPISODES = "2"
TINY_STEPS = "300"

pytestmark = pytest.mark.slow


def readme_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def readme_commands() -> list[str]:
    """The shell commands of the README's ``bash`` blocks, comments stripped."""
    commands = []
    for block in readme_blocks("bash"):
        for line in block.splitlines():
            command = line.split("  #")[0].split(" # ")[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def _set_option(argv: list[str], option: str, value: str) -> list[str]:
    if option in argv:
        argv = list(argv)
        argv[argv.index(option) + 1] = value
        return argv
    return [*argv, option, value]


def shrink(argv: list[str]) -> list[str]:
    """The same command with tiny settings."""
    sub = argv[1] if len(argv) > 1 else ""
    if sub in ("eval", "train", "sweep"):
        argv = [*argv, "--no-progress"]
    if sub == "eval":
        argv = _set_option(argv, "--episodes", TINY_EPISODES)
        argv = _set_option(argv, "--calibration-episodes", "4")
    if sub == "train":
        argv = _set_option(argv, "--steps", TINY_STEPS)
    return argv


def shrink_sweep_config(source: Path, target: Path) -> None:
    """The config with one seed, two episodes, short training and each grid list cut to one value."""
    config = json.loads(source.read_text())
    config.update(episodes=int(TINY_EPISODES), seeds=config["seeds"][:1], calibration_episodes=4)
    config.setdefault("train", {})["steps"] = int(TINY_STEPS)
    for entry in config["grid"]:
        for key, value in entry.items():
            if isinstance(value, list):
                entry[key] = value[:1]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(config))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the server was not ready at {url} after {timeout:.0f} s")


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    shown = " ".join(shlex.quote(a) for a in argv)
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"`{shown}` exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def test_the_readme_shows_the_two_newcomer_commands():
    commands = readme_commands()
    assert commands[:2] == ["bash scripts/demo.sh", SELF]
    assert sum(c.startswith("londi ") for c in commands) >= 10


def test_every_readme_command_runs(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    work = tmp_path / "work"
    work.mkdir()
    (work / "agents").symlink_to(ROOT / "agents")  # `londi serve --model agents/models/...`
    port = str(_free_port())
    servers: list[subprocess.Popen] = []
    ran = []
    try:
        for command in readme_commands():
            if command == SELF:
                continue
            command = command.replace("8000", port)  # the server's port: a free one
            argv = shlex.split(command)
            if argv[:2] == ["bash", "scripts/demo.sh"]:
                _run([*argv, "--out", str(tmp_path / "demo_out"), "--steps", TINY_STEPS, "--episodes",
                      TINY_EPISODES, "--calibration-episodes", "6", "--no-progress"], ROOT, env)
                demo = json.loads((tmp_path / "demo_out" / "results.json").read_text())
                assert demo["demo_rate"] == 0.25 and demo["calibration"]["target_rate"] == 0.25
            elif argv[0] == "londi" and argv[1] == "serve":
                log = (tmp_path / "serve.log").open("w")
                servers.append(subprocess.Popen([str(LONDI), *argv[1:]], cwd=work, env=env, stdout=log,
                                                stderr=subprocess.STDOUT))
                _wait_ready(f"http://127.0.0.1:{port}/v1/models", servers[-1])
            elif argv[0] == "londi":
                if argv[1] == "sweep":
                    shrink_sweep_config(ROOT / argv[2], work / argv[2])
                _run([str(LONDI), *shrink(argv)[1:]], work, env)
            else:
                raise AssertionError(f"the README shows a command this test does not know how to run: {command}")
            ran.append(command)
    finally:
        for proc in servers:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert len(ran) == len(readme_commands()) - 1
    # what the commands wrote reads back as results
    for name in ("results.json", "l2.json"):
        data = json.loads((work / name).read_text())
        assert data["valid"] is True and data["methods"]
    assert (work / "runs" / "baselines" / "report.md").is_file()


def test_every_readme_python_block_runs(tmp_path):
    blocks = readme_blocks("python")
    assert blocks and any("LondiDQN" in b for b in blocks)
    for i, block in enumerate(blocks):
        script = tmp_path / f"readme_{i}.py"
        script.write_text(re.sub(r"\b8000\b", TINY_STEPS, block))  # steps of training: a tiny run
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert proc.returncode == 0, f"README python block {i} failed:\n{block}\n{proc.stderr[-3000:]}"
