"""Benchmark evidence: the CSV of runs, the aggregate Markdown report and the plots.

Per task and agent the report gives the seeds that kept the goal (their final evaluation reaches the
threshold), the seeds that found it (the trailing mean of training returns reached the threshold at
some point), the median and interquartile range of steps to that first threshold (a seed that never
found it counts as never, shown as "> budget"), the interquartile mean
(IQM) of the final evaluation return with a 95% stratified bootstrap confidence interval, the
probability of improvement over a baseline agent with its interval (both from ``rliable``), and
throughput. Bootstraps use a fixed random state, so the same runs give the same intervals.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ilvm_rl.bench.suite import Suite
from ilvm_rl.recipes import file_stem

CSV_COLUMNS = [
    "agent", "env_id", "seed", "steps", "threshold", "kept", "found", "steps_to_threshold",
    "final_eval_return", "tv_share", "deepest", "steps_per_second", "wall_time_s",
]  # fmt: skip
# columns that measure the machine rather than the agent: they differ between two runs of a grid
TIMING_COLUMNS = ("steps_per_second", "wall_time_s")
BOOTSTRAP_REPS = 5000
BOOTSTRAP_SEED = 0
GOAL_RATE_WINDOW = 50_000
"""Environment steps per window of ``ilvm-rl plot --goal-rate`` by default."""


def bootstrap(scores: dict[str, np.ndarray | list[np.ndarray]], func: Any) -> tuple[dict, dict]:
    """rliable's stratified bootstrap with a fresh fixed random state, so every call is reproducible.

    rliable 1.2 draws its resampling indices from NumPy's global generator, whatever ``random_state``
    says, so that generator is seeded here too, and put back afterwards.
    """
    from rliable import library as rly  # imported here: it takes seconds, which every CLI command would pay

    global_state = np.random.get_state()
    np.random.seed(BOOTSTRAP_SEED)
    try:
        with warnings.catch_warnings():
            # rliable hands arch a RandomState, which arch deprecates; the intervals are the same
            warnings.filterwarnings("ignore", category=FutureWarning, module="arch")
            return rly.get_interval_estimates(
                scores, func, reps=BOOTSTRAP_REPS, random_state=np.random.RandomState(BOOTSTRAP_SEED)
            )
    finally:
        np.random.set_state(global_state)


def iqm_with_ci(final_returns: np.ndarray) -> tuple[float, float, float]:
    """IQM of ``(n_seeds,)`` final returns and the bounds of its 95% bootstrap interval."""
    from rliable import metrics

    point, interval = bootstrap({"x": final_returns.reshape(-1, 1)}, lambda x: np.array([metrics.aggregate_iqm(x)]))
    return float(point["x"][0]), float(interval["x"][0, 0]), float(interval["x"][1, 0])


def improvement_with_ci(scores: np.ndarray, baseline: np.ndarray) -> tuple[float, float, float]:
    """P(a run of ``scores`` beats a run of ``baseline``) and the bounds of its 95% bootstrap interval."""
    from rliable import metrics

    point, interval = bootstrap(
        {"x": [scores.reshape(-1, 1), baseline.reshape(-1, 1)]},
        lambda x, y: np.array([metrics.probability_of_improvement(x, y)]),
    )
    return float(point["x"][0]), float(interval["x"][0, 0]), float(interval["x"][1, 0])


def steps_quartiles(rows: Sequence[dict[str, Any]]) -> tuple[float, float, float]:
    """25th, 50th and 75th percentiles of steps-to-threshold, ``inf`` standing for seeds that never found it.

    ``inverted_cdf`` picks observed values instead of interpolating, which stays defined with inf.
    """
    reached = np.array([row["steps_to_threshold"] if row["found"] else np.inf for row in rows], dtype=float)
    q1, median, q3 = np.percentile(reached, [25, 50, 75], method="inverted_cdf")
    return float(q1), float(median), float(q3)


def aggregate(
    rows: Sequence[dict[str, Any]], suite: Suite, agents: Sequence[str], baseline: str
) -> list[dict[str, Any]]:
    """One dict per (task, agent) that has finished runs, in suite and agent order."""
    table = []
    for task in suite.tasks:
        of_task = [row for row in rows if row["env_id"] == task.env_id]
        baseline_returns = np.array([row["final_eval_return"] for row in of_task if row["agent"] == baseline])
        for agent in agents:
            runs = [row for row in of_task if row["agent"] == agent]
            if not runs:
                continue
            finals = np.array([row["final_eval_return"] for row in runs])
            entry: dict[str, Any] = {
                "env_id": task.env_id,
                "agent": agent,
                "seeds": len(runs),
                "kept": sum(bool(row["kept"]) for row in runs),
                "found": sum(bool(row["found"]) for row in runs),
                "steps_quartiles": steps_quartiles(runs),
                "iqm": iqm_with_ci(finals),
                "steps_per_second": float(np.mean([row["steps_per_second"] for row in runs])),
                "tv_share": mean_tv_share(runs),
                "deepest": median_deepest(runs),
                "budget": task.steps,
            }
            if agent != baseline and len(baseline_returns):
                entry["improvement"] = improvement_with_ci(finals, baseline_returns)
            table.append(entry)
    return table


def mean_tv_share(runs: Sequence[dict[str, Any]]) -> float | None:
    """Mean over seeds of the share of training steps spent on a noisy TV (None: the task has none)."""
    shares = [row["tv_share"] for row in runs if row.get("tv_share") is not None]
    return float(np.mean(shares)) if shares else None


def median_deepest(runs: Sequence[dict[str, Any]]) -> float | None:
    """Median over seeds of the deepest cell a run's episodes reached (None: the task reports no depth)."""
    depths = [row["deepest"] for row in runs if row.get("deepest") is not None]
    return float(np.median(depths)) if depths else None


# columns only for tasks whose runs report them: (header, entry key, format)
OPTIONAL_COLUMNS = (
    ("share of steps on the TV", "tv_share", "{:.2f}"),
    ("deepest cell reached (median)", "deepest", "{:g}"),
)


def _steps(value: float, budget: int) -> str:
    return f"> {budget:,}" if np.isinf(value) else f"{int(value):,}"


def markdown_tables(table: Sequence[dict[str, Any]], baseline: str) -> str:
    """One Markdown table per task."""
    parts = []
    for env_id in dict.fromkeys(entry["env_id"] for entry in table):
        entries = [e for e in table if e["env_id"] == env_id]
        optional = [column for column in OPTIONAL_COLUMNS if any(e.get(column[1]) is not None for e in entries)]
        lines = [
            f"**{env_id}**",
            "",
            f"| agent | seeds kept | seeds found | median steps to first threshold | IQR of steps "
            f"| IQM final eval return [95% CI] "
            f"| P(better than {baseline}) [95% CI] |{''.join(f' {header} |' for header, _, _ in optional)} steps/s |",
            "| --- " * (8 + len(optional)) + "|",
        ]
        for entry in entries:
            q1, median, q3 = entry["steps_quartiles"]
            budget = entry["budget"]
            iqm, low, high = entry["iqm"]
            improvement = "—"
            if "improvement" in entry:
                p, p_low, p_high = entry["improvement"]
                improvement = f"{p:.2f} [{p_low:.2f}, {p_high:.2f}]"
            extra = "".join(
                f" {form.format(entry[key]) if entry.get(key) is not None else '—'} |" for _, key, form in optional
            )
            lines.append(
                f"| {entry['agent']} | {entry['kept']}/{entry['seeds']} | {entry['found']}/{entry['seeds']} "
                f"| {_steps(median, budget)} "
                f"| {_steps(q1, budget)} – {_steps(q3, budget)} | {iqm:.1f} [{low:.1f}, {high:.1f}] "
                f"| {improvement} |{extra} {entry['steps_per_second']:,.0f} |"
            )
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "threshold": row.get("reward_threshold")})


def write_reports(
    bench_dir: Path,
    rows: Sequence[dict[str, Any]],
    suite: Suite,
    agents: Sequence[str],
    baseline: str,
    failed: dict[str, str],
    command: str,
    timing: dict[str, Any] | None,
) -> str:
    """Write ``results.csv``, ``results.md`` and the plots; return the report's tables."""
    from ilvm_rl.bench.plots import plot_goal_rates, plot_intervals, plot_task_curves  # matplotlib only when reporting

    write_csv(bench_dir / "results.csv", rows)
    table = aggregate(rows, suite, agents, baseline)
    tables = markdown_tables(table, baseline)
    lines = [
        f"# Benchmark {bench_dir.name}",
        "",
        f"Seeds: {seed_ranges(rows)}. Kept: the final evaluation return reaches the task's threshold (a "
        f"run counts as solved only then). Found, and steps to first threshold: the first environment step at "
        f"which the mean extrinsic return of the last 10 training episodes reaches the threshold; a run can "
        f"find the goal and lose it again (goal_rate_<task>.png and .csv: the share of training episodes "
        f"reaching the threshold per tenth of the budget). Final eval return: the policy after the budget on a "
        f"separate environment, arg-max or sampled as the recipe's eval_deterministic says (arg-max by "
        f"default). IQM and probability of improvement: rliable, 95% "
        f"stratified bootstrap ({BOOTSTRAP_REPS} resamples, fixed random state).",
        "",
        tables,
        "",
    ]
    if failed:
        lines += ["Failed runs (not in the tables):", ""] + [f"- {name}: {why}" for name, why in failed.items()] + [""]
    if timing and timing["runs"]:
        lines += [grid_timing_line(timing), ""]
    lines += [f"Command: `{command}`", ""]
    for task in suite.tasks:
        plot_task_curves(bench_dir / f"curves_{file_stem(task.env_id)}.png", task.env_id, rows, agents, task.steps)
        runs = [
            {**row, "steps": task.steps, "threshold": task.threshold, "run_dir": f"{row['agent']} seed {row['seed']}"}
            for agent in agents
            for row in rows
            if (row["env_id"], row["agent"]) == (task.env_id, agent)
        ]
        if runs and task.threshold is not None:  # ten windows a run: found-then-lost shows as a rise and a fall
            plot_goal_rates(
                bench_dir / f"goal_rate_{file_stem(task.env_id)}.png", {task.env_id: runs}, max(task.steps // 10, 1)
            )
    if table:
        plot_intervals(bench_dir / "intervals.png", table, agents)
    (bench_dir / "results.md").write_text("\n".join(lines))
    return tables


def seed_ranges(rows: Sequence[dict[str, Any]]) -> str:
    """The seeds of ``rows`` as runs of consecutive numbers: ``0–4, 100–104``."""
    seeds = sorted({int(row["seed"]) for row in rows})
    ranges: list[list[int]] = []
    for seed in seeds:
        if ranges and seed == ranges[-1][1] + 1:
            ranges[-1][1] = seed
        else:
            ranges.append([seed, seed])
    return ", ".join(f"{low}–{high}" if high > low else f"{low}" for low, high in ranges) or "none"


def grid_timing_line(timing: dict[str, Any]) -> str:
    """How close the grid came to perfect parallelism: its wall time over the runs' summed time / workers."""
    ideal = timing["cells_s"] / timing["workers"]
    runs = f"{timing['runs']} run{'s' * (timing['runs'] != 1)}"
    workers = f"{timing['workers']} worker{'s' * (timing['workers'] != 1)}"
    return (
        f"This call ran {runs} on {workers} in {timing['grid_wall_s']:.0f} s; "
        f"the runs took {timing['cells_s']:.0f} s together (set-up, training, evaluation), "
        f"{timing['cells_s'] / timing['workers']:.0f} s per worker: wall time / ideal = "
        f"{timing['grid_wall_s'] / ideal:.2f}."
    )
