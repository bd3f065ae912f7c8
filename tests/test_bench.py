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
from ilvm_rl.bench.plots import goal_rates, trailing_curve, window_edges
from ilvm_rl.bench.report import (
    TIMING_COLUMNS,
    aggregate,
    improvement_with_ci,
    markdown_tables,
    seed_ranges,
    steps_quartiles,
)
from ilvm_rl.cli import main
from ilvm_rl.config import ConfigError
from ilvm_rl.provenance import provenance

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
        kept = sum(float(r["final_eval_return"]) >= float(r["threshold"]) for r in runs)
        assert [r["kept"] == "True" for r in runs] == [float(r["final_eval_return"]) >= 21.0 for r in runs]
        found = sum(r["found"] == "True" for r in runs)
        iqm = scipy.stats.trim_mean([float(r["final_eval_return"]) for r in runs], 0.25)
        (line,) = [line for line in report.splitlines() if line.startswith(f"| {agent} |")]
        assert line.startswith(f"| {agent} | {kept}/2 | {found}/2 | ") and f"| {iqm:.1f} [" in line
    assert "| agent | seeds kept | seeds found | median steps to first threshold |" in report
    assert "Seeds: 0–1." in report
    assert "P(better than ppo)" in report and "wall time / ideal" in report
    for plot in ("curves_CartPole-v1.png", "intervals.png", "goal_rate_CartPole-v1.png"):
        assert (bench / plot).read_bytes()[:8] == PNG_MAGIC, plot
    rates = read_csv(bench / "goal_rate_CartPole-v1.csv")
    assert [(r["agent"], r["window_start"]) for r in rates] == [(a, str(32 * i)) for a in AGENTS for i in range(10)]


def test_the_grid_and_every_run_record_the_code_that_made_them(local_grid) -> None:
    _, result = local_grid
    made_with = provenance()
    grid = json.loads((result.bench_dir / "grid.json").read_text())
    assert grid["provenance"] == [made_with]
    for cell in result.bench_dir.glob("cells/*.json"):
        assert json.loads(cell.read_text())["provenance"] == made_with
    for results in result.bench_dir.glob("runs/*/results.json"):
        assert json.loads(results.read_text())["provenance"] == made_with
    assert len(list(result.bench_dir.glob("runs/*/results.json"))) == 4


def test_a_grid_called_by_other_code_records_each_version_once(tmp_path: Path, monkeypatch) -> None:
    def call() -> None:
        run_grid("calls", ["ppo"], TINY_SUITE, [0], tmp_path, overrides=FAST, command="test")

    call()
    newer = {"package_version": "9.9.9", "git_commit": "f" * 40, "git_dirty": True}
    monkeypatch.setattr("ilvm_rl.bench.grid.provenance", lambda: newer)
    call()  # nothing left to run: the record still names this call's code
    call()
    assert json.loads((tmp_path / "bench" / "calls" / "grid.json").read_text())["provenance"] == [provenance(), newer]


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
    assert result.rows[0]["found"]  # CounterEnv pays -5 an episode


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


def test_dense_suite_takes_gymnasiums_thresholds() -> None:
    tasks = load_suite("dense").tasks
    assert [(task.env_id, task.threshold) for task in tasks] == [("CartPole-v1", 475.0), ("Acrobot-v1", -100.0)]


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


def test_steps_given_with_a_suite_replace_every_tasks_budget() -> None:
    shipped = load_suite("noisy_tv")
    short = load_suite("noisy_tv", steps=2_000)
    assert [task.steps for task in short.tasks] == [2_000] * len(shipped.tasks)
    assert [(t.env_id, t.threshold) for t in short.tasks] == [(t.env_id, t.threshold) for t in shipped.tasks]
    with pytest.raises(ConfigError, match="--steps: steps must be >= 1"):
        load_suite("noisy_tv", steps=0)


def test_trailing_curve_by_hand() -> None:
    episodes = [(10, 1.0), (20, 3.0), (30, 5.0)]
    curve = trailing_curve(episodes, np.array([5.0, 10.0, 25.0, 30.0]), window=2)
    np.testing.assert_allclose(curve, [np.nan, 1.0, 2.0, 4.0])


def test_steps_quartiles_count_seeds_that_never_found_the_threshold_as_never() -> None:
    rows = [{"found": True, "steps_to_threshold": s} for s in (100, 200, 300)] + [
        {"found": False, "steps_to_threshold": None}
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


def test_bench_command_writes_tables_into_a_page(local_grid, tmp_path: Path) -> None:
    root, result = local_grid
    page = tmp_path / "docs" / "tiny.md"
    page.parent.mkdir()
    page.write_text("intro\n<!-- bench:tiny -->\nSTALE TABLE\n<!-- /bench:tiny -->\noutro\n")
    suite = tmp_path / "tiny.yaml"
    suite.write_text(json.dumps({"tasks": [{"env_id": "CartPole-v1", "steps": 320, "threshold": 21.0}]}))
    fast = ["--set", "n_envs=2", "--set", "algo_kwargs.n_steps=32", "--set", "algo_kwargs.batch_size=32"]
    args = ["bench", "--agents", *AGENTS, "--suite", str(suite), "--seeds", "2", "--runs-dir", str(root)]
    assert main([*args, *fast, "--set", "eval_episodes=1", "--page", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("intro\n<!-- bench:tiny -->\n**CartPole-v1**")
    assert text.endswith("<!-- /bench:tiny -->\noutro\n")
    assert "STALE TABLE" not in text and result.report in text


def test_bench_refuses_a_page_without_its_section_before_running_anything(tmp_path: Path, capsys) -> None:
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- bench:other -->\n<!-- /bench:other -->\n")
    args = ["bench", "--agents", "ppo", "--env", "CartPole-v1", "--steps", "64", "--runs-dir", str(tmp_path / "runs")]
    assert main([*args, "--name", "tiny", "--page", str(page)]) == 2
    assert "no section <!-- bench:tiny -->" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    assert main([*args, "--name", "tiny", "--page", str(tmp_path / "missing.md")]) == 2
    assert "missing.md: cannot read it" in capsys.readouterr().err


def test_kept_counts_final_evaluations_at_the_threshold_not_trailing_means_that_touched_it() -> None:
    base = {"env_id": "CartPole-v1", "agent": "ppo", "steps_per_second": 100.0, "tv_share": None}
    rows = [
        {**base, "seed": 0, "found": True, "steps_to_threshold": 100, "kept": True, "final_eval_return": 25.0},
        {**base, "seed": 1, "found": True, "steps_to_threshold": 300, "kept": False, "final_eval_return": 9.0},
        {**base, "seed": 2, "found": False, "steps_to_threshold": None, "kept": False, "final_eval_return": 8.0},
    ]
    (entry,) = aggregate(rows, TINY_SUITE, ["ppo"], "ppo")
    assert (entry["kept"], entry["found"], entry["seeds"]) == (1, 2, 3)
    (line,) = [line for line in markdown_tables([entry], "ppo").splitlines() if line.startswith("| ppo |")]
    # kept first, then found and the median steps to the first threshold (the seed that never found it: never)
    assert line.startswith("| ppo | 1/3 | 2/3 | 300 | 100 – > 320 |")


def test_the_tables_show_the_deepest_cell_only_for_tasks_that_report_it() -> None:
    base = {"env_id": "CartPole-v1", "agent": "ppo", "steps_per_second": 100.0, "tv_share": None, "found": False}
    runs = [
        {**base, "seed": seed, "steps_to_threshold": None, "kept": False, "final_eval_return": 0.0} for seed in range(3)
    ]
    (entry,) = aggregate(runs, TINY_SUITE, ["ppo"], "ppo")
    assert "deepest" not in markdown_tables([entry], "ppo")
    (entry,) = aggregate(
        [{**run, "deepest": depth} for run, depth in zip(runs, (40, 52, 47), strict=True)], TINY_SUITE, ["ppo"], "ppo"
    )
    table = markdown_tables([entry], "ppo").splitlines()
    assert table[2].endswith("| deepest cell reached (median) | steps/s |")
    assert table[3].count("---") == 9
    assert table[4].endswith("| 47 | 100 |")


def test_cells_of_older_grids_that_say_solved_are_read_as_found(local_grid, tmp_path: Path) -> None:
    _, first = local_grid
    copy = tmp_path / "bench" / "tiny"
    (copy / "cells").mkdir(parents=True)
    (copy / "grid.json").write_text((first.bench_dir / "grid.json").read_text())
    for cell in (first.bench_dir / "cells").glob("*.json"):
        record = json.loads(cell.read_text())
        record["solved"] = record.pop("found")
        del record["kept"]
        (copy / "cells" / cell.name).write_text(json.dumps(record))
    again = tiny_grid(tmp_path, "tiny", workers=1)
    assert not (copy / "runs").exists()  # nothing ran again
    assert report_rows(again.report) == report_rows(first.report)
    assert without_timing(read_csv(copy / "results.csv")) == without_timing(read_csv(first.bench_dir / "results.csv"))
    (copy / "cells" / next(iter(first.bench_dir.glob("cells/*.json"))).name).write_text("{}")
    with pytest.raises(ConfigError, match="not the record of a finished run"):
        tiny_grid(tmp_path, "tiny", workers=1)


def test_seed_start_runs_later_seeds_and_the_folder_keeps_count_of_all(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    args = ["bench", "--agents", "ppo", "--env", "CartPole-v1", "--steps", "64", "--runs-dir", str(runs)]
    fast = ["--set", "n_envs=2", "--set", "algo_kwargs.n_steps=32", "--set", "eval_episodes=1", "--workers", "1"]
    assert main([*args, *fast, "--seeds", "1", "--seed-start", "-1"]) == 2
    assert "--seed-start must be >= 0" in capsys.readouterr().err
    assert main([*args, *fast, "--seeds", "2", "--seed-start", "3"]) == 0
    bench = runs / "bench" / "CartPole-v1"
    assert sorted(p.stem for p in (bench / "cells").glob("*.json")) == ["CartPole-v1__ppo__3", "CartPole-v1__ppo__4"]
    for seed in (3, 4):
        config = (bench / "runs" / f"CartPole-v1__ppo__{seed}" / "config.yaml").read_text()
        assert f"seed: {seed}\n" in config
    assert [row["seed"] for row in read_csv(bench / "results.csv")] == ["3", "4"]
    assert json.loads((bench / "grid.json").read_text())["seeds"] == [3, 4]
    assert "Seeds: 3–4." in (bench / "results.md").read_text()
    # other seeds join the folder; the report covers the seeds asked for, grid.json all of them
    assert main([*args, *fast, "--seeds", "1", "--seed-start", "0"]) == 0
    assert json.loads((bench / "grid.json").read_text())["seeds"] == [0, 3, 4]
    assert [row["seed"] for row in read_csv(bench / "results.csv")] == ["0"]
    assert "Seeds: 0." in (bench / "results.md").read_text()


def test_seed_ranges_read_as_runs_of_consecutive_seeds() -> None:
    assert seed_ranges([{"seed": s} for s in (101, 0, 1, 2, 100, 5, 102)]) == "0–2, 5, 100–102"
    assert seed_ranges([]) == "none"


def fake_run(folder: Path, agent: str, seed: int, episodes: list[tuple[int, float]]) -> Path:
    """A run folder of the open room with the given ``(step, return)`` training episodes."""
    folder.mkdir(parents=True)
    config = {"agent": agent, "env_id": "ilvm/OpenRoomAction-v0", "seed": seed, "steps": 400, "threshold": None}
    (folder / "config.yaml").write_text(json.dumps(config))  # YAML reads JSON
    lines = ["step,return,length,on_tv_steps", *(f"{step},{value},50,0" for step, value in episodes)]
    (folder / "episodes.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_goal_rates_by_hand() -> None:
    episodes = [(50, 0.8), (100, 0.2), (150, 0.75), (210, 0.0), (390, 0.7), (420, 0.9)]
    rates, counts = goal_rates(episodes, 0.7, window_edges(400, 420, 200))
    # windows (0, 200], (200, 420]: the last one stretched to the episode that ended past the budget
    np.testing.assert_allclose(rates, [2 / 3, 2 / 3])
    assert counts.tolist() == [3, 3]
    rates, counts = goal_rates(episodes[:3], 0.7, window_edges(400, 150, 100))
    # an episode that ends on a window's last step belongs to that window; empty windows are NaN
    np.testing.assert_allclose(rates, [0.5, 1.0, np.nan, np.nan])
    assert counts.tolist() == [2, 1, 0, 0]


def test_plot_goal_rate_shows_found_then_lost_and_writes_the_numbers(tmp_path: Path, capsys) -> None:
    # "keeps": the goal from step 100 on; "loses": the goal between 100 and 200, never after
    runs = []
    for seed in range(3):
        steps = range(10 + seed, 400, 10)
        runs.append(fake_run(tmp_path / f"keeps{seed}", "keeps", seed, [(s, 0.8 * (s > 100)) for s in steps]))
        runs.append(fake_run(tmp_path / f"loses{seed}", "loses", seed, [(s, 0.8 * (100 < s <= 200)) for s in steps]))
    out = tmp_path / "rate.png"
    assert main(["plot", *map(str, runs), "--goal-rate", "--window", "100", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert f"wrote {out} and {out.with_suffix('.csv')}" in capsys.readouterr().out
    table = read_csv(out.with_suffix(".csv"))
    rates = {(row["agent"], int(row["window_end"])): float(row["goal_rate"]) for row in table}
    assert rates == {
        ("keeps", 100): 0.0, ("keeps", 200): 1.0, ("keeps", 300): 1.0, ("keeps", 400): 1.0,
        ("loses", 100): 0.0, ("loses", 200): 1.0, ("loses", 300): 0.0, ("loses", 400): 0.0,
    }  # fmt: skip
    assert all(
        row["seeds"] == "3" and float(row["ci_low"]) <= float(row["goal_rate"]) <= float(row["ci_high"])
        for row in table
    )
    assert sum(int(row["episodes"]) for row in table) == 6 * 39
    assert main(["plot", str(runs[0]), "--goal-rate", "--window", "0", "--out", str(out)]) == 2
    assert "--window must be >= 1" in capsys.readouterr().err
    assert main(["plot", str(runs[0]), "--window", "100", "--out", str(out)]) == 2
    assert "add --goal-rate" in capsys.readouterr().err


def test_improvement_interval_is_the_same_on_every_call_and_leaves_numpys_generator_alone() -> None:
    # rliable resamples from NumPy's global generator: unseeded, two calls gave [0.20, 1.00] and [0.24, 1.00]
    scores = np.array([-111.2, -131.0, -109.6, -103.1, -102.9])
    baseline = np.array([-130.6, -105.8, -147.9, -99.7, -122.8])
    np.random.seed(7)
    expected_draw = np.random.rand()
    np.random.seed(7)
    intervals = {improvement_with_ci(scores, baseline) for _ in range(3)}
    assert len(intervals) == 1
    assert np.random.rand() == expected_draw
