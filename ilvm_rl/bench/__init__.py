"""Benchmarks: suites of tasks, grids of agents × tasks × seeds on local processes or Ray, and reports."""

from ilvm_rl.bench.grid import GridResult, run_grid
from ilvm_rl.bench.suite import Suite, Task, load_suite, single_task_suite

__all__ = ["GridResult", "Suite", "Task", "load_suite", "run_grid", "single_task_suite"]
