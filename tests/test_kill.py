"""Runs killed with SIGKILL at several points and resumed lose no row, hold each step once and keep
model and module together."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fast import FAST_FLAGS
from test_resume import event_steps, progress_steps

from ilvm_rl.cli import main
from ilvm_rl.exploration.checkpoint import read_checkpoint_steps
from ilvm_rl.run_state import zip_steps

DRIVER = Path(__file__).with_name("kill_driver.py")
BUDGET, ROLLOUT = 512, 64  # FAST: 2 envs × 32 steps


def killed_run(tmp_path: Path, point: str) -> Path:
    """Start a run of 512 steps with checkpoints every 128 in a child process and SIGKILL it at ``point``."""
    marker, runs = tmp_path / "stopped", tmp_path / "runs"
    command = [sys.executable, str(DRIVER), point, str(marker), "--", "train", "--agent", "ppo_ilvm"]
    command += ["--env", "CartPole-v1", "--steps", str(BUDGET), "--runs-dir", str(runs), *FAST_FLAGS]
    command += ["--set", "checkpoint_every=128"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(DRIVER.parent), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        assert time.monotonic() < deadline, "the run never reached the kill point"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    if child.stderr:
        child.stderr.close()
    (run_dir,) = runs.iterdir()
    return run_dir


@pytest.mark.parametrize("point", ["rollout", "save", "between"])
def test_a_killed_run_resumes_to_a_whole_record(tmp_path: Path, point: str) -> None:
    run_dir = killed_run(tmp_path, point)
    assert not (run_dir / "results.json").exists()
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0

    assert zip_steps(run_dir / "model.zip") == read_checkpoint_steps(run_dir / "exploration") == BUDGET
    assert progress_steps(run_dir) == list(range(ROLLOUT, BUDGET + 1, ROLLOUT))  # one continuous file
    for tag, steps in event_steps(run_dir).items():
        assert sorted(steps) == sorted(set(steps)), f"{tag} holds a step twice"
    assert event_steps(run_dir)["ilvm/int_coef"] == list(range(ROLLOUT, BUDGET + 1, ROLLOUT))
    with (run_dir / "episodes.csv").open() as file:
        episodes = list(csv.DictReader(file))
    steps = [int(row["step"]) for row in episodes]
    assert steps == sorted(steps) and steps[-1] <= BUDGET
    # every episode's steps are its own: episodes recorded twice would add up to more than were played
    assert sum(int(row["length"]) for row in episodes) <= BUDGET
    assert not (run_dir / "checkpoint.partial").exists()


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process has gone meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_a_killed_bench_leaves_no_process_and_its_rerun_finishes_only_what_is_missing(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    bench = ["bench", "--agents", "ppo", "--env", "CartPole-v1", "--steps", "2048", "--seeds", "2", "--workers", "1"]
    bench += ["--runs-dir", str(runs), *FAST_FLAGS[:-1]]
    parent = subprocess.Popen([sys.executable, "-m", "ilvm_rl.cli", *bench], stderr=subprocess.DEVNULL)
    cells = runs / "bench" / "CartPole-v1" / "cells"
    second = runs / "bench" / "CartPole-v1" / "runs" / "CartPole-v1__ppo__1" / "episodes.csv"
    deadline = time.monotonic() + 180
    while not (second.exists() and list(cells.glob("*.json"))):  # one run done, the other training
        assert parent.poll() is None and time.monotonic() < deadline, "the grid ended before the kill"
        time.sleep(0.05)
    workers = descendants(parent.pid)
    assert workers
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if alive(pid)], "worker processes outlived the bench"

    (finished,) = cells.glob("*.json")
    finished_before = finished.read_text()
    assert main(bench) == 0
    assert sorted(path.name for path in cells.glob("*.json")) == [
        "CartPole-v1__ppo__0.json",
        "CartPole-v1__ppo__1.json",
    ]
    assert finished.read_text() == finished_before  # not run again
