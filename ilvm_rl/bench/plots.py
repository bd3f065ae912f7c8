"""Pictures of benchmark evidence: learning curves and goal rates with confidence bands, and interval plots.

A learning curve is the extrinsic training return (the trailing mean of the last 10 episodes, as
for steps-to-threshold) against environment steps, on a common grid of steps so that seeds can be
averaged; the band is a 95% bootstrap interval of the mean over seeds. A goal-rate curve is the share
of training episodes per window of steps whose return reaches the threshold: a run that found the
goal and lost it again rises and falls back, where a trailing mean that once touched the threshold
says only "found".
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np
from rliable import plot_utils

from ilvm_rl.bench.report import GOAL_RATE_WINDOW, bootstrap
from ilvm_rl.config import ConfigError
from ilvm_rl.run import THRESHOLD_WINDOW

CURVE_POINTS = 100
GOAL_RATE_COLUMNS = [
    "env_id", "agent", "window_start", "window_end", "seeds", "episodes", "goal_rate", "ci_low", "ci_high", "per_seed",
]  # fmt: skip


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


def mean_with_band(
    grid: np.ndarray, curves: dict[str, np.ndarray]
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per agent: the grid points where every seed has a value, the mean over seeds there and the
    bounds of its 95% bootstrap interval (each of shape (points,)); agents with no such point are left out."""
    complete = {agent: ~np.isnan(matrix).any(axis=0) for agent, matrix in curves.items()}
    points, intervals = bootstrap(
        {agent: matrix[:, complete[agent]] for agent, matrix in curves.items() if complete[agent].any()},
        lambda x: x.mean(axis=0),
    )
    return {agent: (grid[complete[agent]], points[agent], *intervals[agent]) for agent in points}


def draw_curves(
    axis: Any,
    grid: np.ndarray,
    curves: dict[str, np.ndarray],
    threshold: float | None,
    ylabel: str = f"training return (mean of last {THRESHOLD_WINDOW} episodes)",
    marker: str | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Mean curve and 95% band per agent on ``axis``; points where some seed has no value are left out.

    Returns:
        What was drawn: :func:`mean_with_band` of ``grid`` and ``curves``.
    """
    bands = mean_with_band(grid, curves)
    for agent, (shown, mean, low, high) in bands.items():
        line = axis.plot(shown, mean, marker=marker, label=f"{agent} ({len(curves[agent])} seeds)")[0]
        axis.fill_between(shown, low, high, color=line.get_color(), alpha=0.2)
    if threshold is not None:
        axis.axhline(threshold, color="grey", linestyle="--", linewidth=1, label="threshold")
    axis.set_xlabel("environment steps")
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    if bands or threshold is not None:  # a legend of nothing only warns
        axis.legend(loc="best", fontsize="small")
    return bands


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


def goal_rates(
    episodes: Sequence[Sequence[float]], threshold: float, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Share of the episodes ending in each window whose return reaches ``threshold``.

    Args:
        episodes: ``(step, return)`` of each training episode, in the order they ended.
        threshold: the return that counts as reaching the goal.
        edges: ``(windows + 1,)`` increasing environment steps; window i holds the episodes that
            ended after step ``edges[i]`` and at or before ``edges[i + 1]``.

    Returns:
        ``(windows,)`` shares (NaN where no episode ended) and ``(windows,)`` episode counts.
    """
    steps = np.array([step for step, _ in episodes], dtype=float)
    reached = np.array([value >= threshold for _, value in episodes], dtype=float)
    window = np.searchsorted(edges, steps, side="left") - 1
    inside = (window >= 0) & (window < len(edges) - 1)
    counts = np.bincount(window[inside], minlength=len(edges) - 1)
    hits = np.bincount(window[inside], weights=reached[inside], minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / counts, counts


def window_edges(budget: int, last_step: int, window: int) -> np.ndarray:
    """Edges 0, window, 2·window, ... up to the budget, the last window stretched to the last
    episode's step where the run went past its budget (SB3 finishes the rollout it is in)."""
    end = max(budget, last_step)
    return np.append(np.arange(0, budget, window), end).astype(float)


def plot_run_dirs(path: Path, run_dirs: Sequence[Path]) -> Path:
    """Learning curves of ad-hoc run folders (``ilvm-rl plot``): one panel per task, one line per agent."""
    tasks = runs_by_task(run_dirs)
    figure, axes = plt.subplots(1, len(tasks), figsize=(7 * len(tasks), 4.5), squeeze=False)
    for axis, (env_id, of_task) in zip(axes[0], tasks.items(), strict=True):
        budget = max(run["steps"] for run in of_task)
        grid, curves = curves_by_agent([(run["agent"], run["episodes"]) for run in of_task], budget)
        if curves:
            draw_curves(axis, grid, curves, of_task[0]["threshold"])
        axis.set_title(env_id)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_goal_rates(
    path: Path, tasks: dict[str, list[dict[str, Any]]], window: int = GOAL_RATE_WINDOW
) -> tuple[Path, Path]:
    """Goal rate per window of steps (``ilvm-rl plot --goal-rate``, and a grid's report): one panel per
    task, one line per agent (mean over seeds with a 95% bootstrap band), and the numbers in a CSV
    beside the PNG.

    Args:
        path: the PNG to write.
        tasks: env id to its runs, each a dict with ``agent``, ``steps`` (budget), ``threshold``,
            ``episodes`` (``(step, return)`` pairs) and ``run_dir`` (named in errors), as
            :func:`runs_by_task` gives them.
        window: environment steps per window.

    Returns:
        The PNG and the CSV written (``path`` with the suffix ``.csv``).

    Raises:
        ConfigError: ``window`` is not positive, or a run has no threshold to count goals by.
    """
    if window < 1:
        raise ConfigError(f"--window must be >= 1 environment step, got {window}")
    table: list[dict[str, Any]] = []
    figure, axes = plt.subplots(1, len(tasks), figsize=(7 * len(tasks), 4.5), squeeze=False)
    for axis, (env_id, of_task) in zip(axes[0], tasks.items(), strict=True):
        threshold = of_task[0]["threshold"]
        if threshold is None:
            raise ConfigError(f"{of_task[0]['run_dir']}: {env_id} has no threshold to count goals by")
        edges, curves, counts = goal_rates_by_agent(of_task, threshold, window)
        centres = (edges[:-1] + edges[1:]) / 2
        label = f"share of training episodes with return ≥ {threshold:g}\n(per {window:,} steps)"
        bands = draw_curves(axis, centres, curves, None, ylabel=label, marker="o")
        axis.set_ylim(-0.03, 1.03)
        axis.set_title(f"{env_id}: goal rate")
        for agent, matrix in curves.items():
            shown, _, low, high = bands.get(agent, (centres[:0],) * 4)
            for index in range(len(centres)):
                values = matrix[:, index]
                banded = np.flatnonzero(shown == centres[index])  # every seed has episodes in this window
                table.append(
                    {
                        "env_id": env_id,
                        "agent": agent,
                        "window_start": int(edges[index]),
                        "window_end": int(edges[index + 1]),
                        "seeds": int((~np.isnan(values)).sum()),
                        "episodes": int(counts[agent][:, index].sum()),
                        "goal_rate": float(np.nanmean(values)) if not np.isnan(values).all() else "",
                        "ci_low": float(low[banded[0]]) if banded.size else "",
                        "ci_high": float(high[banded[0]]) if banded.size else "",
                        "per_seed": " ".join("" if np.isnan(value) else f"{value:.4f}" for value in values),
                    }
                )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    csv_path = path.with_suffix(".csv")
    with csv_path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=GOAL_RATE_COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    return path, csv_path


def goal_rates_by_agent(
    runs: Sequence[dict[str, Any]], threshold: float, window: int
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The window edges and, per agent, ``(n_seeds, windows)`` goal rates and episode counts of ``runs``
    (each with ``agent``, ``steps`` and ``episodes``) of one task."""
    last_step = max((int(run["episodes"][-1][0]) for run in runs if run["episodes"]), default=0)
    edges = window_edges(max(run["steps"] for run in runs), last_step, window)
    rates: dict[str, list[np.ndarray]] = {}
    counts: dict[str, list[np.ndarray]] = {}
    for run in runs:
        rate, count = goal_rates(run["episodes"], threshold, edges)
        rates.setdefault(run["agent"], []).append(rate)
        counts.setdefault(run["agent"], []).append(count)
    return edges, {a: np.stack(r) for a, r in rates.items()}, {a: np.stack(c) for a, c in counts.items()}


def runs_by_task(run_dirs: Sequence[Path]) -> dict[str, list[dict[str, Any]]]:
    """What :func:`ilvm_rl.run.read_run` reads of each run folder (plus its ``run_dir``), grouped by
    env id in the order the tasks first appear."""
    from ilvm_rl.run import read_run

    tasks: dict[str, list[dict[str, Any]]] = {}
    for run_dir in run_dirs:
        run = {**read_run(run_dir), "run_dir": run_dir}
        tasks.setdefault(run["env_id"], []).append(run)
    return tasks
