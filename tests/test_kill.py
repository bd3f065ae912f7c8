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

from ilvm_rl.checkpoint import read_checkpoint_steps
from ilvm_rl.cli import main
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
    assert event_steps(run_dir)["ilvm/coef"] == list(range(ROLLOUT, BUDGET + 1, ROLLOUT))
    with (run_dir / "episodes.csv").open() as file:
        episodes = list(csv.DictReader(file))
    steps = [int(row["step"]) for row in episodes]
    assert steps == sorted(steps) and steps[-1] <= BUDGET
    # every episode's steps are its own: episodes recorded twice would add up to more than were played
    assert sum(int(row["length"]) for row in episodes) <= BUDGET
    assert not (run_dir / "checkpoint.partial").exists()
