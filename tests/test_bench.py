"""Benchmark grids: suites, backends, resumption, reports and plots at toy scale."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from fast import FAST
from toy_envs import CRASH_MARKER_VARIABLE

from ilvm_rl.bench import Suite, Task, load_suite, run_grid
from ilvm_rl.bench.plots import trailing_curve
from ilvm_rl.bench.report import TIMING_COLUMNS, steps_quartiles
from ilvm_rl.cli import main
from ilvm_rl.config import ConfigError

# CartPole's random policy lasts about 22 steps, so some seeds cross this threshold within the budget
TINY_SUITE = Suite((Task("CartPole-v1", 320, threshold=21.0),))
AGENTS = ["ppo", "ppo_rnd"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_grid(tmp_path: Path, name: str, **kwargs):
    return run_grid(name, AGENTS, TINY_SUITE, [0, 1], tmp_path, overrides=FAST, command="test", **kwargs)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as file:
        return list(csv.DictReader(file))


def without_timing(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def report_rows(report: str) -> list[list[str]]:
    """Table rows of the Markdown report, cells stripped, without the throughput column."""
    rows = [line.split("|")[1:-1] for line in report.splitlines() if line.startswith("| ppo")]
    return [[cell.strip() for cell in row[:-1]] for row in rows]


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return root, tiny_grid(root, "tiny", workers=2)


def test_local_grid_writes_a_csv_report_and_plots_that_agree(local_grid) -> None:
    _, result = local_grid
    bench = result.bench_dir
    rows = read_csv(bench / "results.csv")
    assert [(r["agent"], r["seed"]) for r in rows] == [("ppo", "0"), ("ppo", "1"), ("ppo_rnd", "0"), ("ppo_rnd", "1")]
    assert not result.failed
    report = (bench / "results.md").read_text()
    for agent in AGENTS:
        runs = [r for r in rows if r["agent"] == agent]
        solved = sum(r["solved"] == "True" for r in runs)
        iqm = scipy.stats.trim_mean([float(r["final_eval_return"]) for r in runs], 0.25)
        (line,) = [line for line in report.splitlines() if line.startswith(f"| {agent} |")]
        assert f"| {solved}/2 |" in line and f"| {iqm:.1f} [" in line
    assert "P(better than ppo)" in report and "wall time / ideal" in report
    for plot in ("curves_CartPole-v1.png", "intervals.png"):
        assert (bench / plot).read_bytes()[:8] == PNG_MAGIC, plot


def test_a_finished_grid_is_not_run_again(local_grid) -> None:
    root, first = local_grid
    stamps = {p: p.stat().st_mtime_ns for p in first.bench_dir.glob("runs/*/results.json")}
    assert len(stamps) == 4
    again = tiny_grid(root, "tiny", workers=2)
    assert {p: p.stat().st_mtime_ns for p in first.bench_dir.glob("runs/*/results.json")} == stamps
    assert again.rows == first.rows and again.report == first.report


def test_an_interrupted_grid_runs_only_what_is_missing(local_grid, tmp_path: Path) -> None:
    _, first = local_grid
    # a kill after three runs finished: the fourth left no cell record behind
    copy = tmp_path / "bench" / "tiny"
    copy.mkdir(parents=True)
    (copy / "grid.json").write_text((first.bench_dir / "grid.json").read_text())
    (copy / "cells").mkdir()
    cells = sorted((first.bench_dir / "cells").glob("*.json"))
    for cell in cells[:3]:
        (copy / "cells" / cell.name).write_text(cell.read_text())
    result = tiny_grid(tmp_path, "tiny", workers=1)
    assert sorted(p.name for p in (copy / "runs").iterdir()) == [cells[3].stem]
    assert without_timing(read_csv(copy / "results.csv")) == without_timing(read_csv(first.bench_dir / "results.csv"))
    assert len(result.rows) == 4


def test_the_ray_backend_gives_the_same_rows_and_intervals(local_grid, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed")  # installed by .ci/run
    _, local = local_grid
    result = tiny_grid(tmp_path, "tiny", workers=2, backend="ray")
    assert not result.failed
    local_rows = read_csv(local.bench_dir / "results.csv")
    assert without_timing(read_csv(result.bench_dir / "results.csv")) == without_timing(local_rows)
    assert report_rows(result.report) == report_rows(local.report)
    assert (result.bench_dir / "intervals.png").read_bytes()[:8] == PNG_MAGIC


def test_a_dead_worker_is_retried_and_the_rest_of_the_grid_survives(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(CRASH_MARKER_VARIABLE, str(tmp_path / "crashed"))
    suite = Suite((Task("toy_envs:CrashOnce-v0", 64, threshold=-10.0), Task("CartPole-v1", 64, threshold=21.0)))
    result = run_grid("crash", ["ppo"], suite, [0], tmp_path, workers=1, retries=1, overrides=FAST)
    assert (tmp_path / "crashed").exists() and not result.failed
    assert [r["env_id"] for r in result.rows] == ["toy_envs:CrashOnce-v0", "CartPole-v1"]
    assert result.rows[0]["solved"]  # CounterEnv pays -5 an episode


def test_a_run_whose_worker_keeps_dying_fails_alone(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(CRASH_MARKER_VARIABLE, str(tmp_path / "crashed"))
    suite = Suite((Task("toy_envs:CrashOnce-v0", 64, threshold=-10.0), Task("CartPole-v1", 64, threshold=21.0)))
    # two workers: the CartPole run is in flight when the other worker dies, and must not go down with it
    result = run_grid("crash", ["ppo"], suite, [0], tmp_path, workers=2, retries=0, overrides=FAST)
    assert list(result.failed) == ["toy_envs-CrashOnce-v0__ppo__0"]
    assert [r["env_id"] for r in result.rows] == ["CartPole-v1"]
    assert "toy_envs-CrashOnce-v0__ppo__0: its worker process died" in (result.bench_dir / "results.md").read_text()


def test_bad_grids_are_refused_before_anything_runs(local_grid, tmp_path: Path) -> None:
    root, _ = local_grid
    with pytest.raises(ConfigError, match="seed list is empty"):
        run_grid("x", AGENTS, TINY_SUITE, [], tmp_path)
    with pytest.raises(ConfigError, match="unknown agent 'nope'"):
        run_grid("x", ["nope"], TINY_SUITE, [0], tmp_path)
    with pytest.raises(ConfigError, match="baseline 'sac'"):
        run_grid("x", AGENTS, TINY_SUITE, [0], tmp_path, baseline="sac")
    other_budget = Suite((Task("CartPole-v1", 256, threshold=21.0),))
    with pytest.raises(ConfigError, match="holds a grid of other tasks"):
        run_grid("tiny", AGENTS, other_budget, [0], root)
    edited = tmp_path / "ppo.yaml"
    edited.write_text("extends: ppo\ndefault:\n  algo_kwargs:\n    gamma: 0.9\n")
    with pytest.raises(ConfigError, match="recipe ppo changed"):
        run_grid("tiny", [str(edited)], TINY_SUITE, [0], root, overrides=FAST)
    assert not (tmp_path / "bench" / "x").exists()


def test_suite_files_are_checked_by_key_and_env_id(tmp_path: Path) -> None:
    assert [task.env_id for task in load_suite("exploration").tasks] == ["MountainCar-v0"]
    bad_env = tmp_path / "bad_env.yaml"
    bad_env.write_text("tasks:\n  - env_id: MountainCar-v9\n    steps: 10\n")
    with pytest.raises(ConfigError, match=r"bad_env.yaml: unknown environment id 'MountainCar-v9'"):
        load_suite(str(bad_env))
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text("tasks:\n  - env_id: MountainCar-v0\n    budget: 10\n")
    with pytest.raises(ConfigError, match=r"bad_key.yaml.tasks\[0\]: unknown key 'budget'"):
        load_suite(str(bad_key))
    with pytest.raises(ConfigError, match="unknown suite 'exploratoin' \\(did you mean exploration"):
        load_suite("exploratoin")


def test_trailing_curve_by_hand() -> None:
    episodes = [(10, 1.0), (20, 3.0), (30, 5.0)]
    curve = trailing_curve(episodes, np.array([5.0, 10.0, 25.0, 30.0]), window=2)
    np.testing.assert_allclose(curve, [np.nan, 1.0, 2.0, 4.0])


def test_steps_quartiles_count_unsolved_seeds_as_never() -> None:
    rows = [{"solved": True, "steps_to_threshold": s} for s in (100, 200, 300)] + [
        {"solved": False, "steps_to_threshold": None}
    ]
    assert steps_quartiles(rows) == (100.0, 200.0, 300.0)
    assert steps_quartiles(rows[2:] + rows[3:] * 2)[1] == np.inf


def test_plot_command_draws_run_folders_and_names_a_bad_one(local_grid, tmp_path: Path, capsys) -> None:
    _, result = local_grid
    out = tmp_path / "curves.png"
    assert main(["plot", *map(str, sorted(result.bench_dir.glob("runs/*"))), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert main(["plot", str(tmp_path), "--out", str(out)]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_bench_command_writes_tables_into_the_readme(local_grid, tmp_path: Path) -> None:
    root, result = local_grid
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:tiny -->\nSTALE TABLE\n<!-- /bench:tiny -->\noutro\n")
    suite = tmp_path / "tiny.yaml"
    suite.write_text(json.dumps({"tasks": [{"env_id": "CartPole-v1", "steps": 320, "threshold": 21.0}]}))
    fast = ["--set", "n_envs=2", "--set", "algo_kwargs.n_steps=32", "--set", "algo_kwargs.batch_size=32"]
    args = ["bench", "--agents", *AGENTS, "--suite", str(suite), "--seeds", "2", "--runs-dir", str(root)]
    assert main([*args, *fast, "--set", "eval_episodes=1", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n<!-- bench:tiny -->\n**CartPole-v1**")
    assert text.endswith("<!-- /bench:tiny -->\noutro\n")
    assert "STALE TABLE" not in text and result.report in text


def test_bench_refuses_a_readme_without_its_section_before_running_anything(tmp_path: Path, capsys) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:other -->\n<!-- /bench:other -->\n")
    args = ["bench", "--agents", "ppo", "--env", "CartPole-v1", "--steps", "64", "--runs-dir", str(tmp_path / "runs")]
    assert main([*args, "--name", "tiny", "--readme", str(readme)]) == 2
    assert "no section <!-- bench:tiny -->" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    assert main([*args, "--name", "tiny", "--readme", str(tmp_path / "missing.md")]) == 2
    assert "missing.md: cannot read it" in capsys.readouterr().err
