"""Benchmark grids: agents × seeds on one task, in parallel local worker processes, with a table.

Results land in ``runs/bench/<name>/``: one run folder per (agent, seed) under ``runs/``,
``results.csv`` with one row per run and ``results.md`` with the aggregate per agent. A run whose
folder already holds ``results.json`` is not run again, so an interrupted grid resumes.
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from ilvm_rl.config import ConfigError
from ilvm_rl.recipes import load_recipe
from ilvm_rl.run import RESULTS_FILE, RunSpec, train

log = logging.getLogger(__name__)

CSV_COLUMNS = [
    "agent", "env_id", "seed", "steps", "steps_to_threshold", "solved",
    "final_eval_return", "steps_per_second", "wall_time_s",
]  # fmt: skip


def run_folder(bench_dir: Path, spec: RunSpec) -> Path:
    """The fixed folder of one grid cell, so a restarted grid finds its finished runs."""
    return bench_dir / "runs" / f"{spec.env_id.replace('/', '-')}__{Path(spec.agent).stem}__{spec.seed}"


def _run_cell(spec: RunSpec, run_dir: Path, command: str) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    return train(spec, run_dir, progress_bar=False, command=command)


def run_grid(
    name: str,
    agents: Sequence[str],
    env_id: str,
    seeds: Sequence[int],
    steps: int,
    root: Path = Path("runs"),
    workers: int = 1,
    command: str = "",
    overrides: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run every (agent, seed) on ``env_id`` and write the CSV and Markdown report.

    ``overrides`` are recipe settings applied to every agent (as ``--set`` does for one run).

    Raises:
        ConfigError: an unknown agent or env id, or an empty seed list, before anything runs.
    """
    if not seeds:
        raise ConfigError("the seed list is empty")
    if not agents:
        raise ConfigError("no agents given")
    # keyed like the run folders; a bad recipe fails before any run starts
    recipes = {Path(agent).stem: load_recipe(agent, env_id, overrides)[1] for agent in agents}
    bench_dir = root / "bench" / name
    bench_dir.mkdir(parents=True, exist_ok=True)
    grid = [RunSpec(agent, env_id, seed, steps, overrides) for agent in agents for seed in seeds]
    _check_same_grid(bench_dir, env_id, steps, recipes)
    results: dict[int, dict[str, Any]] = {}  # by position in the grid
    pending = []
    for index, spec in enumerate(grid):
        done = run_folder(bench_dir, spec) / RESULTS_FILE
        if done.is_file():
            results[index] = json.loads(done.read_text())
        else:
            pending.append(index)
    log.info("%d runs finished before, %d to run on %d workers", len(results), len(pending), workers)
    if pending:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {
                pool.submit(_run_cell, grid[i], run_folder(bench_dir, grid[i]), f"{command}  # seed {grid[i].seed}"): i
                for i in pending
            }
            for future in as_completed(futures):
                index = futures[future]
                results[index] = future.result()
                log.info("finished %s seed %d: %s", grid[index].agent, grid[index].seed, results[index])
    rows = [results[index] for index in range(len(grid))]
    write_reports(bench_dir, rows, command)
    return rows


def _check_same_grid(bench_dir: Path, env_id: str, steps: int, recipes: dict[str, Any]) -> None:
    """Refuse to mix results of another task, budget or recipe version into an existing results
    folder; agents may be added to it."""
    marker = bench_dir / "grid.json"
    grid = {"env_id": env_id, "steps": steps, "recipes": recipes}
    if marker.is_file():
        previous = json.loads(marker.read_text())
        if (previous["env_id"], previous["steps"]) != (env_id, steps):
            raise ConfigError(
                f"{bench_dir} holds a grid of {previous['env_id']} at {previous['steps']} steps, not "
                f"{env_id} at {steps}; choose another --name"
            )
        for agent, recipe in recipes.items():
            if previous["recipes"].get(agent, recipe) != recipe:
                raise ConfigError(
                    f"{bench_dir}: recipe {agent} changed since its runs were made; choose another --name"
                )
        grid["recipes"] = {**previous["recipes"], **recipes}
    marker.write_text(json.dumps(grid, indent=2))


def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per agent: seeds solved, median steps to threshold (unsolved seeds count as never), final
    evaluation return mean ± std, and mean steps per second."""
    table = []
    for agent in dict.fromkeys(row["agent"] for row in rows):
        runs = [row for row in rows if row["agent"] == agent]
        reached = [row["steps_to_threshold"] if row["solved"] else np.inf for row in runs]
        median = float(np.median(reached))
        finals = np.array([row["final_eval_return"] for row in runs])
        table.append(
            {
                "agent": agent,
                "solved": f"{sum(row['solved'] for row in runs)}/{len(runs)}",
                "median_steps_to_threshold": None if np.isinf(median) else int(median),
                "final_eval_return": f"{finals.mean():.1f} ± {finals.std():.1f}",
                "steps_per_second": round(float(np.mean([row["steps_per_second"] for row in runs]))),
            }
        )
    return table


def markdown_table(table: Sequence[dict[str, Any]], budget: int) -> str:
    lines = [
        "| agent | seeds solved | median steps to threshold | final eval return | steps/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in table:
        median = row["median_steps_to_threshold"]
        shown = f"{median:,}" if median is not None else f"> {budget:,}"
        lines.append(
            f"| {row['agent']} | {row['solved']} | {shown} | {row['final_eval_return']} | {row['steps_per_second']:,} |"
        )
    return "\n".join(lines)


def write_reports(bench_dir: Path, rows: Sequence[dict[str, Any]], command: str) -> str:
    with (bench_dir / "results.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    env_ids = sorted({row["env_id"] for row in rows})
    budget = max(row["steps"] for row in rows)
    table = markdown_table(aggregate(rows), budget)
    report = (
        f"# Benchmark {bench_dir.name}\n\nTask: {', '.join(env_ids)}; budget {budget:,} steps per run; "
        f"steps to threshold = first step at which the mean of the last 10 training episodes reaches "
        f"the env's reward threshold (median over seeds, unsolved seeds count as never).\n\n{table}\n\n"
        f"Command: `{command}`\n"
    )
    (bench_dir / "results.md").write_text(report)
    return table
