"""Benchmark suites: which tasks a grid runs, with their step budgets and solve thresholds.

A suite is a YAML file in ``envs/suites/`` (or any path)::

    description: hard-exploration tasks
    tasks:
      - env_id: MountainCar-v0
        steps: 300000        # environment steps per run
        threshold: -110      # optional: the env's reward_threshold when left out
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ilvm_rl.config import (
    ConfigError,
    checked_threshold,
    from_dict,
    read_yaml_mapping,
    shipped_names,
    shipped_or_path,
)
from ilvm_rl.recipes import env_spec


@dataclass(frozen=True)
class Task:
    """One task of a suite.

    Attributes:
        env_id: a Gymnasium id.
        steps: environment steps per run (all parallel environments together).
        threshold: the return a run must reach: a trailing mean of 10 training episodes at it
            counts as found, a final evaluation at it as kept (solved); None takes the env's
            ``reward_threshold``.
    """

    env_id: str
    steps: int
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        checked_threshold("threshold", self.threshold)


@dataclass(frozen=True)
class Suite:
    """A named list of tasks.

    Attributes:
        tasks: the tasks, in report order.
        description: one line for reports.
    """

    tasks: tuple[Task, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("tasks: a suite needs at least one task")
        ids = [task.env_id for task in self.tasks]
        for env_id in ids:
            if ids.count(env_id) > 1:
                raise ValueError(f"tasks: {env_id} is listed twice")


def suite_names() -> list[str]:
    """Names of the suites shipped in ``envs/suites/``."""
    return shipped_names(resources.files("ilvm_rl.envs") / "suites")


def suite_path(suite: str) -> Path:
    """The file of a suite given by name (``exploration``) or path (``my/suite.yaml``)."""
    return shipped_or_path(suite, resources.files("ilvm_rl.envs") / "suites", "suite")


def load_suite(suite: str, steps: int | None = None) -> Suite:
    """Read and check a suite: every env id registered, every task with a threshold.

    Args:
        steps: if given, every task's budget instead of the file's (``bench --suite S --steps N``).

    Raises:
        ConfigError: naming the file and the key or task at fault.
    """
    path = suite_path(suite)
    data = read_yaml_mapping(path, "a suite: a mapping with 'tasks' (and optionally 'description')")
    loaded = from_dict(Suite, data, str(path))
    tasks = loaded.tasks
    if steps is not None:
        try:
            tasks = tuple(Task(task.env_id, steps, task.threshold) for task in tasks)
        except ValueError as error:
            raise ConfigError(f"--steps: {error}") from error
    return Suite(tuple(checked_task(task, str(path)) for task in tasks), loaded.description)


def single_task_suite(env_id: str, steps: int, threshold: float | None = None) -> Suite:
    """A suite of one task (``bench --env ID --steps N [--threshold T]``); without ``threshold``, with
    the env's own."""
    try:
        task = Task(env_id, steps, threshold)
    except ValueError as error:
        raise ConfigError(f"--steps: {error}") from error
    return Suite((checked_task(task, "--env"),))


def checked_task(task: Task, where: str) -> Task:
    """``task`` with its threshold filled in from the env's spec; raises if it has none."""
    try:
        spec = env_spec(task.env_id)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from error
    if task.threshold is not None:
        return task
    threshold = spec.reward_threshold
    if threshold is None:
        hint = "give one with --threshold T" if where == "--env" else "give the task a 'threshold'"
        raise ConfigError(f"{where}: {task.env_id} has no reward_threshold; {hint}")
    return Task(task.env_id, task.steps, float(threshold))
