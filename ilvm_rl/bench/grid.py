"""Benchmark grids: agents × tasks × seeds, run by a backend, recorded so that a grid resumes.

Everything lands in ``runs/bench/<name>/``::

    grid.json          the suite and recipes the grid was made with (a guard against mixing), the
                       seeds run into the folder so far, and the package version and git commit of
                       every call that added runs
    cells/<cell>.json  one finished run: its results and its training episodes; the record of what is done
    runs/<cell>/       the run folder itself (TensorBoard, model, module checkpoint, ...)
    results.csv        one row per run of the grid
    results.md         aggregate per task and agent (see :mod:`ilvm_rl.bench.report`)
    curves_<task>.png  learning curves; intervals.png: aggregate interval plot
    goal_rate_<task>.png/.csv  share of training episodes reaching the threshold per tenth of the budget

A cell is written only once its run has finished, atomically, so a grid killed at any moment and
started again repeats no finished run and loses none.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ilvm_rl.bench.backends import Job, run_jobs
from ilvm_rl.bench.report import write_reports
from ilvm_rl.bench.suite import Suite
from ilvm_rl.config import ConfigError, make_folder
from ilvm_rl.provenance import provenance
from ilvm_rl.recipes import file_stem, load_recipe
from ilvm_rl.run import RunSpec, read_episodes, train, upgraded_results

log = logging.getLogger(__name__)


@dataclass
class GridResult:
    """What a call of :func:`run_grid` produced.

    Attributes:
        rows: one dict per finished run of the grid (results plus ``episodes``), in grid order.
        failed: cell name to the reason, for runs that failed in this call.
        report: the Markdown report.
        bench_dir: the results folder.
    """

    rows: list[dict[str, Any]]
    failed: dict[str, str]
    report: str
    bench_dir: Path


def cell_name(spec: RunSpec) -> str:
    """The fixed name of one grid cell, so a restarted grid finds its finished runs."""
    return f"{file_stem(spec.env_id)}__{Path(spec.agent).stem}__{spec.seed}"


def run_cell(spec: RunSpec, run_dir: str, command: str) -> dict[str, Any]:
    """Train one cell into ``run_dir`` and return its results with its ``(step, return)`` episodes.

    Runs in a worker process (local pool or Ray), so it takes and returns plain data, and sets that
    process's torch to one thread: the grid runs one cell per core.
    """
    torch.set_num_threads(1)
    start = time.perf_counter()
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    results = train(spec, folder, progress_bar=False, command=command)
    return {**results, "episodes": read_episodes(folder), "cell_time_s": time.perf_counter() - start}


def run_grid(
    name: str,
    agents: Sequence[str],
    suite: Suite,
    seeds: Sequence[int],
    root: Path = Path("runs"),
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
    retries: int = 2,
    baseline: str | None = None,
    overrides: dict[str, Any] | None = None,
    command: str = "",
) -> GridResult:
    """Run every (agent, task, seed) not finished before and write the reports.

    Args:
        name: results folder under ``root/bench/``.
        agents: recipe names or paths.
        suite: the tasks.
        seeds: one run per seed of every agent and task; the report covers these seeds only, even
            where the folder holds runs of other seeds (tuning seeds beside reporting seeds).
        root: the runs folder.
        workers: parallel runs (local processes, or Ray CPUs of a local cluster started here).
        backend: ``local`` (a process pool) or ``ray``.
        address: with ``ray``, the cluster to join; None starts a local one.
        retries: times a run whose worker died is started again before it counts as failed.
        baseline: the agent others are compared with (probability of improvement); default the first.
        overrides: recipe settings applied to every agent (as ``--set`` does for one run).
        command: the command line, recorded in the report and in every run folder.

    Raises:
        ConfigError: an unknown agent, an empty seed list, a baseline not in the grid or a results
            folder made for another grid, before anything runs.
    """
    if not seeds:
        raise ConfigError("the seed list is empty")
    if not agents:
        raise ConfigError("no agents given")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds are repeated: {list(seeds)}")
    names = [Path(agent).stem for agent in agents]
    if len(set(names)) != len(names):
        raise ConfigError(f"two agents share a name: {names}")
    baseline = baseline or names[0]
    if baseline not in names:
        raise ConfigError(f"baseline {baseline!r} is not one of the agents {names}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if retries < 0:
        raise ConfigError(f"retries must be >= 0, got {retries}")
    # a bad recipe fails before any run starts; keyed like the cells
    recipes = {
        agent_name: {task.env_id: load_recipe(agent, task.env_id, overrides)[1] for task in suite.tasks}
        for agent_name, agent in zip(names, agents, strict=True)
    }
    bench_dir = make_folder(root / "bench" / name, f"--runs-dir {root}")
    check_same_grid(bench_dir, suite, recipes, seeds)

    grid = [
        RunSpec(agent, task.env_id, seed, task.steps, overrides, task.threshold)
        for task in suite.tasks
        for agent in agents
        for seed in seeds
    ]
    cells = bench_dir / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    jobs = [
        Job(cell_name(spec), run_cell, (spec, str((bench_dir / "runs" / cell_name(spec)).resolve()), command))
        for spec in grid
        if not (cells / f"{cell_name(spec)}.json").is_file()
    ]
    log.info("%d of %d runs finished before; %d to run on %s", len(grid) - len(jobs), len(grid), len(jobs), backend)

    cells_time = 0.0

    def record(job: Job, result: dict[str, Any]) -> None:
        nonlocal cells_time
        cells_time += result["cell_time_s"]
        write_atomically(cells / f"{job.name}.json", json.dumps(result))
        log.info(
            "finished %s: kept=%s found=%s steps_to_threshold=%s final_eval_return=%.4g",
            job.name,
            result["kept"],
            result["found"],
            result["steps_to_threshold"],
            result["final_eval_return"],
        )

    start = time.perf_counter()
    failed = run_jobs(jobs, backend, workers, retries, record, address) if jobs else {}
    timing = None
    if jobs:
        wall = time.perf_counter() - start
        timing = {"grid_wall_s": wall, "cells_s": cells_time, "workers": workers, "runs": len(jobs) - len(failed)}
    rows = [
        read_cell(cells / f"{cell_name(spec)}.json") for spec in grid if (cells / f"{cell_name(spec)}.json").is_file()
    ]
    report = write_reports(bench_dir, rows, suite, names, baseline, failed, command, timing)
    return GridResult(rows, failed, report, bench_dir)


def read_cell(path: Path) -> dict[str, Any]:
    """One finished run of a grid, in today's terms (cells of older grids say ``solved``, not ``found``).

    Raises:
        ConfigError: the file is not a cell record.
    """
    try:
        return upgraded_results(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ConfigError(
            f"{path}: not the record of a finished run ({error!r}); delete it to run that cell again"
        ) from error


def check_same_grid(bench_dir: Path, suite: Suite, recipes: dict[str, dict[str, Any]], seeds: Sequence[int]) -> None:
    """Refuse to mix results of other tasks, budgets, thresholds or recipe versions into an existing
    results folder; agents and seeds may be added to it, and ``grid.json`` lists every seed run into
    it so far (runs of tuning seeds and of reporting seeds stay told apart by their cells' seeds).
    Record the code of this call beside the code of earlier ones (``provenance``, each distinct one
    once)."""
    marker = bench_dir / "grid.json"
    made_with = provenance()
    grid: dict[str, Any] = {
        "tasks": [asdict(task) for task in suite.tasks],
        "recipes": recipes,
        "seeds": sorted(seeds),
        "provenance": [made_with],
    }
    if marker.is_file():
        previous = json.loads(marker.read_text())
        if previous.get("tasks") != grid["tasks"]:
            raise ConfigError(
                f"{bench_dir} holds a grid of other tasks, budgets or thresholds ({previous.get('tasks')}); "
                f"choose another --name"
            )
        for agent, recipe in recipes.items():
            if previous["recipes"].get(agent, recipe) != recipe:
                raise ConfigError(
                    f"{bench_dir}: recipe {agent} changed since its runs were made; choose another --name"
                )
        grid["recipes"] = {**previous["recipes"], **recipes}
        earlier = previous.get("provenance", [])
        grid["provenance"] = earlier if made_with in earlier else [*earlier, made_with]
        grid["seeds"] = sorted({*previous.get("seeds", []), *seeds})
    bench_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(marker, json.dumps(grid, indent=2))


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` so that a kill leaves either the old file or the new one, never half of one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)
