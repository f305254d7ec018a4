"""``londi report``: tables and plots from a hand-made sweep directory (londi.evaluation.report)."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from PIL import Image

from londi.cli import build_parser
from londi.core.errors import LondiError, UnknownChoiceError
from londi.evaluation.metrics import EpisodeStats, bootstrap_ci, summarize
from londi.evaluation.report import write_report

ENV = "londi/BabyAIText-GoToLocal-v0"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _cell(
    root: Path, name: str, method: str, entry: dict, config: dict, *, seed: int, episodes: int
) -> None:
    cell = root / "cells" / name
    results = {"env": ENV, "episodes": episodes, "seed": seed, "methods": {method: entry}}
    _write(cell / "results.json", results)
    _write(cell / "config.json", {"method": method, "seed": seed, "budget": None, **config})


def _eps(successes, *, steps, deep, seconds) -> list[EpisodeStats]:
    return [
        EpisodeStats(success=bool(s), episode_return=float(s), steps=steps, quick_calls=steps,
                     deepthink_calls=deep, device_seconds=seconds)
        for s in successes
    ]


def _plain(success: float, *, calls: float, frac: float, seconds: dict, episodes: int = 4) -> dict:
    """An aggregated entry without per-episode records."""
    total = sum(seconds.values())
    return {
        "success": success, "success_ci": [0.0, 1.0], "return": success, "return_ci": [0.0, 1.0],
        "steps": 10.0, "quick_calls_per_episode": 10.0, "deepthink_call_frac": frac,
        "deepthink_calls_per_episode": calls, "max_deepthink_calls": int(calls),
        "device_seconds": {**seconds, "total": total}, "episodes": episodes,
    }


LONDI_01 = {0: [1, 1, 1, 0], 1: [1, 1, 0, 0]}  # cost 0.1: 5/8 solved, 5 of 10 steps on DEEPTHINK
LONDI_05 = {0: [1, 1, 0, 0], 1: [1, 0, 1, 0]}  # cost 0.5: 4/8 solved, 2 of 8 steps on DEEPTHINK
S01 = {"quick": 1.0, "deepthink": 4.0, "switch": 0.5}
S05 = {"quick": 1.0, "deepthink": 2.0, "switch": 0.5}


def make_sweep(parent: Path) -> Path:
    """A sweep folder with hand-made cells; every number below is computed by hand in the tests."""
    root = parent / "sweep"
    # References: always-QUICK 1/4 solved, always-DEEPTHINK 3/4 (PGR gap 0.5), oracle 3/4 with 2 calls.
    _cell(root, "always_quick__seed0", "always_quick",
          _plain(0.25, calls=0.0, frac=0.0, seconds={"quick": 1.0}), {}, seed=0, episodes=4)
    _cell(root, "always_deepthink__seed0", "always_deepthink",
          _plain(0.75, calls=10.0, frac=1.0, seconds={"quick": 1.0, "deepthink": 8.0}), {},
          seed=0, episodes=4)
    _cell(root, "oracle__seed0", "oracle",
          _plain(0.75, calls=2.0, frac=0.2, seconds={"quick": 1.0, "deepthink": 1.6}), {},
          seed=0, episodes=4)
    londi = ((0.1, LONDI_01, 10, 5, S01), (0.5, LONDI_05, 8, 2, S05))
    for cost, outcomes, steps, deep, seconds in londi:
        for seed, succ in outcomes.items():
            episodes = _eps(succ, steps=steps, deep=deep, seconds=seconds)
            entry = summarize(episodes, seed=seed, include_episodes=True)
            _cell(root, f"londi__cost{cost}__seed{seed}", "londi", entry, {"cost": cost},
                  seed=seed, episodes=4)
    # A baseline written without per-episode records, two seeds at one rate.
    for seed, success in ((0, 0.5), (1, 0.75)):
        _cell(root, f"random__rate0.5__seed{seed}", "random",
              _plain(success, calls=5.0, frac=0.5, seconds={"quick": 1.0, "deepthink": 4.0}),
              {"rate": 0.5, "cost": 0.0}, seed=seed, episodes=4)
    return root


@pytest.fixture()
def sweep(tmp_path: Path) -> Path:
    return make_sweep(tmp_path)


def _table(md: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the markdown table whose header row starts with ``first_header``."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def _row(rows, method, param="-"):
    return next(r for r in rows if r["method"] == method and r["param"] == param)


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.size[0] > 100 and img.size[1] > 100


def test_sweep_table_numbers(sweep: Path, tmp_path: Path):
    out = tmp_path / "out"
    path = write_report(sweep, out, n_resamples=2000)
    assert path == out / "report.md"
    md = path.read_text()
    assert f"## {ENV}" in md
    rows = _table(md, "method")
    assert [r["method"] for r in rows] == [
        "always_quick", "always_deepthink", "oracle", "londi", "londi", "random"]

    q, d = _row(rows, "always_quick"), _row(rows, "always_deepthink")
    assert q["success [95% CI]"].startswith("0.250") and q["PGR (success)"] == "0.000"
    assert d["DEEPTHINK call frac"] == "1.000" and d["compute saving"] == "0.000"
    assert d["PGR (success)"] == "1.000"
    assert q["compute saving"] == f"{1 - 1.0 / 9.0:.3f}"

    # cost=0.1: two seeds pooled -> 5/8 solved; PGR (0.625 - 0.25) / 0.5; saving 1 - 5.5 / 9;
    # the oracle needs 2 * (0.625 - 0.25) / 0.5 = 1.5 calls for that success -> ratio 5 / 1.5.
    r = _row(rows, "londi", "cost=0.1")
    pooled = [s for seed in (0, 1) for s in LONDI_01[seed]]
    lo, hi = bootstrap_ci(pooled, seed=0, n_resamples=2000)
    assert r["success [95% CI]"] == f"0.625 [{lo:.3f}, {hi:.3f}]"
    assert r["seeds"] == "2" and r["episodes"] == "8"
    assert r["DEEPTHINK call frac"] == "0.500" and r["DEEPTHINK calls/episode"] == "5.00"
    assert r["device-s/episode"] == "5.5"
    assert r["compute saving"] == f"{1 - 5.5 / 9:.3f}"
    assert r["PGR (success)"] == "0.750"
    assert r["oracle ratio"] == "3.33"

    r = _row(rows, "londi", "cost=0.5")
    assert r["success [95% CI]"].startswith("0.500 [")
    assert r["DEEPTHINK call frac"] == "0.250" and r["PGR (success)"] == "0.500"
    assert r["compute saving"] == f"{1 - 3.5 / 9:.3f}" and r["oracle ratio"] == "2.00"

    # random: no per-episode records -> means weighted by episodes, success CI from the 5/8
    # successes, no return CI; with one parameter value, every set parameter is in the label.
    r = _row(rows, "random", "cost=0, rate=0.5")
    lo, hi = bootstrap_ci([1, 1, 0, 0, 1, 1, 1, 0], seed=0, n_resamples=2000)
    assert r["success [95% CI]"] == f"0.625 [{lo:.3f}, {hi:.3f}]"
    assert r["return [95% CI]"] == "0.625"
    assert r["DEEPTHINK call frac"] == "0.500"

    by_model = _table(md, "method | param | quick")
    assert _row(by_model, "londi", "cost=0.1")["switch"] == "0.5"

    # APGR and CPT of londi by hand: PGR curve (0, 0), (0.25, 0.5), (0.5, 0.75), (1, 1).
    curves = {c["method"]: c for c in _table(md, "method | points")}
    assert curves["londi"]["points"] == "2"
    assert curves["londi"]["APGR"] == "0.656"  # 0.65625
    assert (curves["londi"]["CPT(50%)"], curves["londi"]["CPT(80%)"], curves["londi"]["CPT(95%)"]) == (
        "0.250", "0.600", "0.900")
    # random: one point on the straight line (0.5, PGR 0.75)
    assert curves["random"]["APGR"] == f"{0.5 * 0.375 + 0.5 * 0.875:.3f}"
    assert "always_quick" not in curves and "always_deepthink" not in curves

    data = json.loads((out / "report.json").read_text())
    section = data["envs"][0]
    londi = next(c for c in section["curves"] if c["method"] == "londi")
    assert londi["apgr"] == pytest.approx(0.65625)
    assert londi["cpt_80"] == pytest.approx(0.6)
    assert section["reference"]["quick_success"] == 0.25
    for name in section["plots"]:
        _assert_png(out / name)
    assert section["plots"] == ["success_vs_call_frac.png", "success_vs_device_seconds.png"]
    assert "![success vs DEEPTHINK call fraction](success_vs_call_frac.png)" in md
    # atomic writes leave no temporary files behind, and the sweep itself is untouched
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["report.md", "report.json", "success_vs_call_frac.png", "success_vs_device_seconds.png"])
    assert not list(sweep.rglob("report.md"))


def test_capped_reference_cells_are_points_of_their_own(sweep: Path, tmp_path: Path):
    # The oracle under a hard budget (as the budget sweep runs it) is a point per budget; the
    # reference used for the oracle ratio stays the uncapped oracle cell.
    for budget, success, calls in ((1, 0.5, 1.0), (3, 0.75, 1.5)):
        _cell(sweep, f"oracle__budget{budget}__seed0", "oracle",
              _plain(success, calls=calls, frac=calls / 10, seconds={"quick": 1.0, "deepthink": 0.8 * calls}),
              {"budget": budget}, seed=0, episodes=4)
    md = write_report(sweep, tmp_path / "out", n_resamples=200).read_text()
    rows = _table(md, "method")
    assert [r["param"] for r in rows if r["method"] == "oracle"] == ["-", "budget=1", "budget=3"]
    assert _row(rows, "oracle")["DEEPTHINK calls/episode"] == "2.00"  # not pooled with the capped ones
    capped = _row(rows, "oracle", "budget=1")
    assert capped["success [95% CI]"].startswith("0.500") and capped["PGR (success)"] == "0.500"
    assert _row(rows, "londi", "cost=0.1")["oracle ratio"] == "3.33"  # as without the capped cells
    curves = {c["method"]: c for c in _table(md, "method | points")}
    assert curves["oracle"]["points"] == "3"

    # Only capped oracle cells: there is no reference oracle, so no oracle ratio.
    (sweep / "cells" / "oracle__seed0" / "results.json").unlink()
    rows = _table(write_report(sweep, tmp_path / "out2", n_resamples=200).read_text(), "method")
    assert [r["param"] for r in rows if r["method"] == "oracle"] == ["budget=1", "budget=3"]
    assert _row(rows, "londi", "cost=0.1")["oracle ratio"] == "n/a"


def test_demo_layout_without_references(tmp_path: Path):
    run = tmp_path / "demo"
    methods = {
        "londi": _plain(0.5, calls=2.0, frac=0.2,
                        seconds={"quick": 1.0, "deepthink": 2.0, "switch": 0.25}),
        "swiftsage": _plain(0.75, calls=4.0, frac=0.4, seconds={"quick": 1.0, "deepthink": 4.0}),
    }
    _write(run / "results.json", {"env": ENV, "episodes": 4, "seed": 3, "methods": methods})
    _write(run / "config.json", {"method": "londi", "cost": 0.2, "seed": 3})
    path = write_report(run)
    assert path == run / "report.md"
    md = path.read_text()
    rows = _table(md, "method")
    londi = _row(rows, "londi", "cost=0.2")
    # a shared config naming another method gives swiftsage no parameter
    swift = _row(rows, "swiftsage", "-")
    assert londi["device-s/episode"] == "3.25" and swift["device-s/episode"] == "5"
    assert londi["PGR (success)"] == "n/a" and londi["compute saving"] == "n/a"
    assert londi["oracle ratio"] == "n/a"
    assert londi["success [95% CI]"] == "0.500 [0.000, 1.000]"  # the entry's own CI, unchanged
    assert "no always_quick or always_deepthink run" in md
    _assert_png(run / "success_vs_call_frac.png")
    _assert_png(run / "success_vs_device_seconds.png")


def test_custom_reference_names_metric_and_several_envs(tmp_path: Path):
    run = tmp_path / "multi"
    for env, shift in (("envA", 0.0), ("envB", 0.25)):
        methods = {
            "Always-Quick": _plain(0.25 + shift, calls=0.0, frac=0.0, seconds={"quick": 1.0}),
            "Always-Deepthink": _plain(0.5 + shift, calls=10.0, frac=1.0,
                                       seconds={"quick": 1.0, "deepthink": 7.0}),
            "hindsight": _plain(0.5 + shift, calls=1.0, frac=0.1,
                                seconds={"quick": 1.0, "deepthink": 0.7}),
        }
        _write(run / env / "results.json", {"env": env, "episodes": 4, "seed": 0, "methods": methods})
    write_report(run, metric="return", quick_method="always_quick", deepthink_method="always-deepthink",
                 oracle_method="hindsight")
    md = (run / "report.md").read_text()
    assert "## envA" in md and "## envB" in md
    rows = _table(md, "method")  # the first section: envA
    assert _row(rows, "hindsight (oracle)")["PGR (return)"] == "1.000"
    assert _row(rows, "hindsight (oracle)")["oracle ratio"] == "1.00"
    assert _row(rows, "Always-Deepthink")["compute saving"] == "0.000"
    for env in ("envA", "envB"):
        _assert_png(run / f"return_vs_call_frac__{env}.png")
        _assert_png(run / f"return_vs_device_seconds__{env}.png")


def test_entries_as_the_evaluation_loop_writes_them(tmp_path: Path):
    """Names with dashes, "budget" on the entry itself, and the oracle flagged by "oracle": true."""
    run = tmp_path / "loop"
    for budget, success in ((2, 0.5), (4, 0.75)):
        londi_b = _plain(success, calls=budget, frac=budget / 10,
                         seconds={"quick": 1.0, "deepthink": float(budget)})
        londi_b["budget"] = budget
        methods = {
            "always-quick": _plain(0.25, calls=0.0, frac=0.0, seconds={"quick": 1.0}),
            "always-deepthink": _plain(1.0, calls=10.0, frac=1.0,
                                       seconds={"quick": 1.0, "deepthink": 10.0}),
            "hindsight": {**_plain(1.0, calls=3.0, frac=0.3, seconds={"quick": 1.0, "deepthink": 3.0}),
                          "oracle": True},
            "londi-b": londi_b,
        }
        results = {"env": ENV, "episodes": 4, "seed": 0, "methods": methods}
        _write(run / f"b{budget}" / "results.json", results)
    md = write_report(run).read_text()
    rows = _table(md, "method")
    assert [(r["method"], r["param"]) for r in rows] == [
        ("always-quick", "-"), ("always-deepthink", "-"), ("hindsight (oracle)", "-"),
        ("londi-b", "budget=2"), ("londi-b", "budget=4")]
    # the references' two copies are pooled; PGR (0.75 - 0.25) / 0.75
    assert _row(rows, "always-quick")["episodes"] == "8"
    assert _row(rows, "londi-b", "budget=4")["PGR (success)"] == f"{0.5 / 0.75:.3f}"
    # the oracle needs 3 * 0.5 / 0.75 = 2 calls for success 0.75 -> ratio 4 / 2
    assert _row(rows, "londi-b", "budget=4")["oracle ratio"] == "2.00"
    curves = {c["method"]: c for c in _table(md, "method | points")}
    assert curves["londi-b"]["points"] == "2" and "hindsight (oracle)" in curves


def test_zero_gap_is_reported_not_raised(tmp_path: Path):
    run = tmp_path / "flat"
    methods = {
        "always_quick": _plain(0.5, calls=0.0, frac=0.0, seconds={"quick": 1.0}),
        "always_deepthink": _plain(0.5, calls=10.0, frac=1.0, seconds={"quick": 1.0, "deepthink": 7.0}),
        "londi": _plain(0.5, calls=1.0, frac=0.1, seconds={"quick": 1.0, "deepthink": 0.7}),
    }
    _write(run / "results.json", {"env": ENV, "episodes": 4, "seed": 0, "methods": methods})
    md = write_report(run).read_text()
    assert "there is no gap to recover" in md
    curves = {c["method"]: c for c in _table(md, "method | points")}
    assert curves["londi"]["APGR"] == "n/a" and curves["londi"]["CPT(50%)"] == "n/a"


def test_bad_files_are_skipped_with_a_warning(sweep: Path, tmp_path: Path, caplog):
    (sweep / "cells" / "broken").mkdir()
    (sweep / "cells" / "broken" / "results.json").write_text("{not json")
    _write(sweep / "cells" / "other" / "results.json", {"hello": 1})
    _write(sweep / "cells" / "partial" / "results.json",
           {"env": ENV, "episodes": 1, "seed": 0, "methods": {"x": {"success": 1.0}}})
    with caplog.at_level(logging.WARNING, logger="londi.evaluation.report"):
        md = write_report(sweep, tmp_path / "o", n_resamples=200).read_text()
    assert "broken" in caplog.text and "missing key" in caplog.text and "'methods'" in caplog.text
    assert "| x |" not in md and "| londi | cost=0.1 |" in md


def test_errors(tmp_path: Path):
    with pytest.raises(LondiError, match="does not exist"):
        write_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LondiError, match="no readable results.json"):
        write_report(tmp_path / "empty")
    with pytest.raises(UnknownChoiceError, match="valid choices: return, success"):
        write_report(tmp_path / "empty", metric="accuracy")


def test_cli_report_subcommand(sweep: Path, tmp_path: Path, capsys):
    parser = build_parser()
    out = tmp_path / "cli_out"
    args = parser.parse_args(["report", str(sweep), "--out", str(out), "--metric", "success"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.md")
    rows = _table((out / "report.md").read_text(), "method")
    assert _row(rows, "londi", "cost=0.1")["PGR (success)"] == "0.750"
    _assert_png(out / "success_vs_call_frac.png")
    with pytest.raises(SystemExit):
        parser.parse_args(["report", str(sweep), "--metric", "accuracy"])


def test_rewriting_a_report_replaces_it(sweep: Path):
    first = write_report(sweep, n_resamples=200).read_text()
    second = write_report(sweep, n_resamples=200).read_text()
    assert first == second  # seeded: the same numbers every time
    assert not [p for p in sweep.iterdir() if p.name.endswith(".tmp")]
    rows = json.loads((sweep / "report.json").read_text())["envs"][0]["rows"]
    assert rows[0]["success"] == 0.25 and not math.isnan(rows[0]["success"])


def _seed_table(md: str) -> list[dict[str, str]]:
    return _table(md.split("Seed by seed", 1)[1], "method")


def test_seed_by_seed_table_compares_each_seed_with_always_deepthinks_same_seed(sweep: Path, tmp_path: Path):
    md = write_report(sweep, tmp_path / "out").read_text()
    rows = _seed_table(md)
    londi = {r["seed"]: r for r in rows if r["method"] == "londi" and r["param"] == "cost=0.1"}
    # seed 0: 3/4 solved against always-DEEPTHINK's 3/4; 5.5 device-s against its 9
    assert londi["0"]["success"] == "0.750" and londi["0"]["÷ always-DEEPTHINK"] == "1.000"
    assert londi["0"]["device ÷ always-DEEPTHINK"] == "0.61" and londi["0"]["DEEPTHINK call frac"] == "0.500"
    # seed 1 has no always-DEEPTHINK cell: no ratio rather than one against another seed
    assert londi["1"]["success"] == "0.500" and londi["1"]["÷ always-DEEPTHINK"] == "n/a"
    random = {r["seed"]: r for r in rows if r["method"] == "random"}
    assert random["0"]["÷ always-DEEPTHINK"] == "0.667" and set(random) == {"0", "1"}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    row = next(r for r in report["envs"][0]["rows"] if r["method"] == "londi" and r["param"] == "cost=0.1")
    assert [s["seed"] for s in row["per_seed"]] == [0, 1]


def test_seed_by_seed_table_lists_the_levels_of_a_mixed_env(tmp_path: Path):
    root = tmp_path / "mix"
    levels = {"GoToLocal": {"episodes": 2, "success": 1.0, "deepthink_call_frac": 0.25},
              "PutNextLocal": {"episodes": 2, "success": 0.5, "deepthink_call_frac": 0.125}}
    entry = {**_plain(0.75, calls=2.0, frac=0.2, seconds={"quick": 1.0, "deepthink": 2.0}), "per_level": levels}
    _cell(root, "londi__seed0", "londi", entry, {"cost": 0.05}, seed=0, episodes=4)
    _cell(root, "always_deepthink__seed0", "always_deepthink",
          _plain(1.0, calls=10.0, frac=1.0, seconds={"quick": 1.0, "deepthink": 8.0}), {}, seed=0, episodes=4)
    rows = _seed_table(write_report(root).read_text())
    londi = _row(rows, "londi", "cost=0.05")
    assert londi["GoToLocal success (call frac)"] == "1.000 (0.25)"
    assert londi["PutNextLocal success (call frac)"] == "0.500 (0.12)"
    assert londi["÷ always-DEEPTHINK"] == "0.750" and londi["device ÷ always-DEEPTHINK"] == "0.33"
    assert _row(rows, "always_deepthink")["GoToLocal success (call frac)"] == "n/a"
