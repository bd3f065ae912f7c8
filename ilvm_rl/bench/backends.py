"""Where the runs of a grid execute: a local process pool, or a Ray cluster.

Both backends take the same jobs and report each finished one through a callback as soon as it is
done, so the caller can record it before anything else can go wrong. A worker process that dies
(killed, out of memory) fails the run it was executing; the run is started again at most
``retries`` times, and the rest of the grid goes on. A run that raises is not retried: it would
raise again.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ilvm_rl.config import ConfigError

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")
Recorder = Callable[["Job", dict[str, Any]], None]


@dataclass(frozen=True)
class Job:
    """One run: ``function(*args)`` in a worker; ``args[1]`` is the run folder."""

    name: str
    function: Callable[..., dict[str, Any]]
    args: tuple[Any, ...]

    @property
    def started_marker(self) -> Path:
        """A file the worker writes when it starts the job (tells in-flight jobs from queued ones)."""
        return Path(self.args[1]) / ".started"


def _start(job: Job) -> dict[str, Any]:
    job.started_marker.parent.mkdir(parents=True, exist_ok=True)
    job.started_marker.touch()
    return job.function(*job.args)


def run_jobs(
    jobs: Sequence[Job],
    backend: str,
    workers: int,
    retries: int,
    record: Recorder,
    address: str | None = None,
) -> dict[str, str]:
    """Run ``jobs`` on ``backend`` and call ``record(job, result)`` for each that finishes.

    Returns:
        Job name to the reason, for every job that failed.
    """
    if backend == "local":
        if address is not None:
            raise ConfigError("--address is for the ray backend")
        return _run_local(jobs, workers, retries, record)
    if backend == "ray":
        return _run_ray(jobs, workers, retries, record, address)
    raise ConfigError(f"unknown backend {backend!r}; accepted: {', '.join(BACKENDS)}")


def _run_local(jobs: Sequence[Job], workers: int, retries: int, record: Recorder) -> dict[str, str]:
    failed: dict[str, str] = {}
    deaths: dict[str, int] = {}
    queue = list(jobs)
    context = multiprocessing.get_context("spawn")  # no forked torch or env state
    while queue:
        for job in queue:
            job.started_marker.unlink(missing_ok=True)
        # a dead worker breaks the whole pool: what was not finished goes round again in a new one
        requeue: list[Job] = []
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(_start, job): job for job in queue}
            for future in as_completed(futures):
                job = futures[future]
                try:
                    result = future.result()
                except BrokenProcessPool:
                    if not job.started_marker.exists():  # queued behind the run that died
                        requeue.append(job)
                        continue
                    deaths[job.name] = deaths.get(job.name, 0) + 1
                    if deaths[job.name] > retries:
                        failed[job.name] = f"its worker process died {deaths[job.name]} times"
                        log.error("run %s failed: %s", job.name, failed[job.name])
                    else:
                        log.warning("the worker of %s died; starting it again", job.name)
                        requeue.append(job)
                except Exception as error:  # the run itself raised: report it, keep the grid going
                    failed[job.name] = f"{type(error).__name__}: {error}"
                    log.error("run %s failed: %s", job.name, failed[job.name])
                else:
                    record(job, result)
        queue = requeue
    return failed


def _run_ray(jobs: Sequence[Job], workers: int, retries: int, record: Recorder, address: str | None) -> dict[str, str]:
    try:
        import ray
    except ImportError as error:
        raise ConfigError("the ray backend needs Ray: pip install 'ilvm-rl[ray]'") from error
    started_here = not ray.is_initialized()
    if started_here:
        # a local cluster gets `workers` CPUs; an existing one keeps its own
        ray.init(
            address=address,
            num_cpus=None if address else workers,
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
    try:
        # max_retries: Ray starts a task again when its worker process dies (not when it raises)
        remote = ray.remote(num_cpus=1, max_retries=retries)(_start)
        pending = {remote.remote(job): job for job in jobs}
        failed: dict[str, str] = {}
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as error:
                failed[job.name] = f"{type(error).__name__}: {error}".splitlines()[0]
                log.error("run %s failed: %s", job.name, failed[job.name])
            else:
                record(job, result)
        return failed
    finally:
        if started_here:
            ray.shutdown()
