"""Pictures of benchmark evidence: learning curves with confidence bands, and interval plots.

A learning curve is the extrinsic training return (the trailing mean of the last 10 episodes, as
for steps-to-threshold) against environment steps, on a common grid of steps so that seeds can be
averaged; the band is a 95% bootstrap interval of the mean over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np
from rliable import plot_utils

from ilvm_rl.bench.report import bootstrap
from ilvm_rl.run import THRESHOLD_WINDOW

CURVE_POINTS = 100


def trailing_curve(episodes: Sequence[Sequence[float]], grid: np.ndarray, window: int = THRESHOLD_WINDOW) -> np.ndarray:
    """Trailing mean of the last ``window`` returns finished by each step of ``grid``.

    Args:
        episodes: ``(step, return)`` of each training episode, in the order they ended.
        grid: ``(n,)`` environment steps.

    Returns:
        ``(n,)`` values; NaN before the first episode ends.
    """
    steps = np.array([step for step, _ in episodes], dtype=float)
    returns = np.array([value for _, value in episodes], dtype=float)
    cumulative = np.concatenate([[0.0], np.cumsum(returns)])
    finished = np.searchsorted(steps, grid, side="right")  # episodes ended by each grid step
    first = np.maximum(finished - window, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (cumulative[finished] - cumulative[first]) / (finished - first)


def curves_by_agent(
    runs: Sequence[tuple[str, Sequence[Sequence[float]]]], budget: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The step grid and, per agent, a ``(n_seeds, n_points)`` matrix of trailing curves."""
    grid = np.linspace(0, budget, CURVE_POINTS + 1)[1:]
    curves: dict[str, list[np.ndarray]] = {}
    for agent, episodes in runs:
        if episodes:
            curves.setdefault(agent, []).append(trailing_curve(episodes, grid))
    return grid, {agent: np.stack(rows) for agent, rows in curves.items()}


def draw_curves(axis: Any, grid: np.ndarray, curves: dict[str, np.ndarray], threshold: float | None) -> None:
    """Mean curve and 95% band per agent on ``axis``; points where some seed has no episode yet are left out."""
    complete = {agent: matrix[:, ~np.isnan(matrix).any(axis=0)] for agent, matrix in curves.items()}
    shown = {agent: grid[~np.isnan(matrix).any(axis=0)] for agent, matrix in curves.items()}
    points, intervals = bootstrap({a: m for a, m in complete.items() if m.size}, lambda x: x.mean(axis=0))
    for agent in points:
        line = axis.plot(shown[agent], points[agent], label=f"{agent} ({len(curves[agent])} seeds)")[0]
        axis.fill_between(shown[agent], intervals[agent][0], intervals[agent][1], color=line.get_color(), alpha=0.2)
    if threshold is not None:
        axis.axhline(threshold, color="grey", linestyle="--", linewidth=1, label="threshold")
    axis.set_xlabel("environment steps")
    axis.set_ylabel(f"training return (mean of last {THRESHOLD_WINDOW} episodes)")
    axis.grid(alpha=0.3)
    axis.legend(loc="best", fontsize="small")


def plot_task_curves(
    path: Path, env_id: str, rows: Sequence[dict[str, Any]], agents: Sequence[str], budget: int
) -> None:
    """Learning curves of every agent on one task of a grid (rows carry ``episodes``)."""
    runs = [
        (agent, row["episodes"]) for agent in agents for row in rows if (row["env_id"], row["agent"]) == (env_id, agent)
    ]
    threshold = next((row["reward_threshold"] for row in rows if row["env_id"] == env_id), None)
    grid, curves = curves_by_agent(runs, budget)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    if curves:
        draw_curves(axis, grid, curves, threshold)
    axis.set_title(env_id)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_intervals(path: Path, table: Sequence[dict[str, Any]], agents: Sequence[str]) -> None:
    """IQM of the final evaluation return with its 95% interval, one panel per task (rliable's style)."""
    tasks = list(dict.fromkeys(entry["env_id"] for entry in table))
    present = {(entry["agent"], entry["env_id"]) for entry in table}
    shown = [agent for agent in agents if all((agent, task) in present for task in tasks)]
    if not shown:
        return
    points = {agent: np.array([_entry(table, agent, task)["iqm"][0] for task in tasks]) for agent in shown}
    intervals = {
        agent: np.array([[_entry(table, agent, task)["iqm"][i] for task in tasks] for i in (1, 2)]) for agent in shown
    }
    # rliable sizes the figure by rows and places the label in figure units: keep it clear of the ticks
    row_height = max(0.6, 1.8 / len(shown))
    figure, _ = plot_utils.plot_interval_estimates(
        points,
        intervals,
        metric_names=tasks,
        algorithms=shown,
        xlabel="IQM of final evaluation return",
        row_height=row_height,
        subfigure_width=4.0,
        xlabel_y_coordinate=-0.6 / (row_height * len(shown)),
    )
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def _entry(table: Sequence[dict[str, Any]], agent: str, env_id: str) -> dict[str, Any]:
    return next(e for e in table if e["agent"] == agent and e["env_id"] == env_id)


def plot_run_dirs(path: Path, run_dirs: Sequence[Path]) -> Path:
    """Learning curves of ad-hoc run folders (``ilvm-rl plot``): one panel per task, one line per agent."""
    from ilvm_rl.run import read_run

    runs = [read_run(run_dir) for run_dir in run_dirs]
    tasks = list(dict.fromkeys(run["env_id"] for run in runs))
    figure, axes = plt.subplots(1, len(tasks), figsize=(7 * len(tasks), 4.5), squeeze=False)
    for axis, env_id in zip(axes[0], tasks, strict=True):
        of_task = [run for run in runs if run["env_id"] == env_id]
        budget = max(run["steps"] for run in of_task)
        grid, curves = curves_by_agent([(run["agent"], run["episodes"]) for run in of_task], budget)
        if curves:
            draw_curves(axis, grid, curves, of_task[0]["threshold"])
        axis.set_title(env_id)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
