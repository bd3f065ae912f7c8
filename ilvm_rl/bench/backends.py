"""Where the runs of a grid execute: a local process pool, or a Ray cluster.

Both backends take the same jobs and report each finished one through a callback as soon as it is
done, so the caller can record it before anything else can go wrong. A worker process that dies
(killed, out of memory) fails the run it was executing and no other; the run is started again at
most ``retries`` times, and the rest of the grid goes on. A run that raises is not retried: it would
raise again. Local workers exit when the grid's process does, however it ends (SIGKILL included), so
no run goes on unrecorded; a grid started again runs only what is missing.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from ilvm_rl.config import ConfigError

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>: the signal a process gets when its parent dies
Recorder = Callable[["Job", dict[str, Any]], None]


@dataclass(frozen=True)
class Job:
    """One run: ``function(*args)`` in a worker; ``args[1]`` is the run folder."""

    name: str
    function: Callable[..., dict[str, Any]]
    args: tuple[Any, ...]


def _start(job: Job) -> dict[str, Any]:
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
    """One process per run, at most ``workers`` at a time: a process that dies takes only its own run
    with it (a process pool would break, and with it every run in flight)."""
    failed: dict[str, str] = {}
    deaths: dict[str, int] = {}
    queue = deque(jobs)
    context = multiprocessing.get_context("spawn")  # no forked torch or env state
    running: dict[Connection, tuple[Job, Any]] = {}  # a spawn context's Process
    try:
        while queue or running:
            while queue and len(running) < workers:
                job = queue.popleft()
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(target=_work, args=(job, sender, os.getpid()), name=job.name)
                process.start()
                sender.close()  # the child holds the other end: end of file here means it has gone
                running[receiver] = (job, process)
            for ready in wait(list(running)):
                assert isinstance(ready, Connection)
                job, process = running.pop(ready)
                receiver = ready
                try:
                    outcome: tuple[str, Any] | None = receiver.recv()
                except EOFError:  # the process died before it could answer
                    outcome = None
                receiver.close()
                process.join()
                if outcome is None:
                    deaths[job.name] = deaths.get(job.name, 0) + 1
                    if deaths[job.name] > retries:
                        failed[job.name] = f"its worker process died {deaths[job.name]} times"
                        log.error("run %s failed: %s", job.name, failed[job.name])
                    else:
                        log.warning(
                            "the worker of %s died (exit code %s); starting it again", job.name, process.exitcode
                        )
                        queue.appendleft(job)
                elif outcome[0] == "error":  # the run itself raised: report it, keep the grid going
                    failed[job.name] = outcome[1]
                    log.error("run %s failed: %s", job.name, failed[job.name])
                else:
                    record(job, outcome[1])
    finally:  # interrupted (Ctrl-C, an error in record): no run goes on without its parent
        for _, process in running.values():
            process.kill()
            process.join()
    return failed


def _work(job: Job, sender: Connection, parent: int) -> None:
    """A worker process: run ``job`` and send ``("ok", result)`` or ``("error", reason)``."""
    exit_with_parent(parent)
    try:
        outcome: tuple[str, Any] = ("ok", _start(job))
    except Exception as error:
        outcome = ("error", f"{type(error).__name__}: {error}")
    sender.send(outcome)
    sender.close()


def exit_with_parent(parent: int, period_s: float = 0.5) -> None:
    """Make this process exit when its parent ``parent`` does, even by SIGKILL (which gives the parent
    no chance to stop its workers): on Linux the kernel is asked to kill it then (``PR_SET_PDEATHSIG``);
    everywhere a daemon thread also polls the parent id, which changes when the parent is gone."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no prctl in this libc: the thread below still watches
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


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
