"""A threshold of one's own: found and kept for a task registered without a ``reward_threshold``."""

import json
from pathlib import Path

import pytest
from fast import FAST_FLAGS

from ilvm_rl.bench.suite import single_task_suite
from ilvm_rl.cli import main
from ilvm_rl.config import ConfigError
from ilvm_rl.recipes import load_recipe
from ilvm_rl.run import RunSpec

# Pendulum-v1 has no reward_threshold; its returns over 200 steps lie in [-3300, 0]
PENDULUM_TRAIN = ["train", "--agent", "ppo", "--env", "Pendulum-v1", "--steps", "64", *FAST_FLAGS]


def trained_run(runs_dir: Path, *flags: str) -> Path:
    assert main([*PENDULUM_TRAIN, "--runs-dir", str(runs_dir), *flags]) == 0
    (run_dir,) = runs_dir.iterdir()
    return run_dir


def test_a_recipe_threshold_judges_a_task_without_one_and_the_flag_overrides_it(tmp_path: Path, capsys) -> None:
    by_recipe = trained_run(tmp_path / "recipe", "--set", "threshold=-5000")
    results = json.loads((by_recipe / "results.json").read_text())
    assert results["reward_threshold"] == -5000 and results["kept"] is True
    assert results["found"] is False  # no training episode finished within 64 steps
    capsys.readouterr()
    assert main(["evaluate", str(by_recipe), "--episodes", "1"]) == 0  # judged by the run's own threshold
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["kept"] is True

    by_flag = trained_run(tmp_path / "flag", "--set", "threshold=-5000", "--threshold", "0")
    results = json.loads((by_flag / "results.json").read_text())
    assert results["reward_threshold"] == 0 and results["kept"] is False


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_threshold_no_return_can_be_judged_by_is_refused(tmp_path: Path, value: str, capsys) -> None:
    assert main([*PENDULUM_TRAIN, "--runs-dir", str(tmp_path), f"--threshold={value}"]) == 2
    assert f"--threshold must be a finite return, got {float(value)}" in capsys.readouterr().err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="overrides: threshold must be a finite return"):
        load_recipe("ppo", "Pendulum-v1", {"threshold": float(value)})
    with pytest.raises(ConfigError, match="threshold must be a finite return"):
        RunSpec("ppo", "Pendulum-v1", 0, 64, threshold=float(value))


def test_bench_takes_a_threshold_for_its_env_task_only(tmp_path: Path, capsys) -> None:
    bench = ["bench", "--agents", "ppo", "--runs-dir", str(tmp_path), "--threshold", "-200"]
    assert main([*bench, "--suite", "exploration"]) == 2
    assert "--threshold sets the threshold of the --env task" in capsys.readouterr().err
    assert main([*bench[:-1], "nan", "--env", "Pendulum-v1"]) == 2
    assert "--threshold must be a finite return, got nan" in capsys.readouterr().err
    (task,) = single_task_suite("Pendulum-v1", 64, -200.0).tasks
    assert task.threshold == -200.0
    with pytest.raises(ConfigError, match="Pendulum-v1 has no reward_threshold; give one with --threshold T"):
        single_task_suite("Pendulum-v1", 64)


def test_resume_keeps_the_threshold_the_run_started_with(tmp_path: Path, capsys) -> None:
    assert main(["train", "--resume", str(tmp_path), "--threshold", "1"]) == 2
    assert "drop --threshold" in capsys.readouterr().err
