"""Off-policy recipes through the CLI and the runner: run folders, ilvm/ tags, resume with buffer and module."""

import json
from pathlib import Path

import numpy as np
import pytest
from fast import FAST_OFF_POLICY, FAST_OFF_POLICY_FLAGS
from safetensors.numpy import load_file

from ilvm_rl.cli import main
from ilvm_rl.config import ConfigError
from ilvm_rl.recipes import load_recipe
from ilvm_rl.run import EpisodeRecorder, RunSpec, train


def only_run(runs_dir: Path) -> Path:
    (run_dir,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return run_dir


@pytest.mark.parametrize(
    "agent, env_id, steps",
    [("dqn_ilvm", "MountainCar-v0", 1024), ("dqn_rnd", "MountainCar-v0", 256), ("sac_ilvm", "Pendulum-v1", 256)],
)
def test_off_policy_recipes_train_through_the_cli_into_run_folders(
    tmp_path: Path, agent: str, env_id: str, steps: int
) -> None:
    argv = ["train", "--agent", agent, "--env", env_id, "--steps", str(steps), "--runs-dir", str(tmp_path)]
    assert main([*argv, *FAST_OFF_POLICY_FLAGS]) == 0
    run_dir = only_run(tmp_path)
    for name in ("model.zip", "replay.npz", "eval.json", "results.json", "exploration/weights.safetensors"):
        assert (run_dir / name).is_file(), name
    settings = json.loads((run_dir / "exploration" / "settings.json").read_text())
    assert settings["own_replay"] is False  # the module learned from the agent's buffer, it kept no copy
    weights = load_file(str(run_dir / "exploration" / "weights.safetensors"))
    # no copy of the transitions, and no V_int: a Q-learner's bonus is centred, not a stream of its own
    assert not any(name.startswith(("store.", "int_value.")) for name in weights)
    assert any(name.startswith("model.") for name in weights)
    with np.load(run_dir / "replay.npz", allow_pickle=False) as replay:
        assert int(replay["pos"]) == (steps // 2) % 500  # two envs share a step (a row); a ring of 500 rows
    if steps >= 1024:  # SB3's off-policy loop writes its logs every 4 episodes (MountainCar's last 200 steps)
        header = (run_dir / "tb" / "progress.csv").read_text().splitlines()[0]
        for tag in ("ilvm/int_reward_mean", "ilvm/int_reward_raw_centre", "ilvm/score_time_ms", "ilvm/loss/total"):
            assert tag in header, tag


class Killed(Exception):
    """Stands for the process dying in the middle of a run."""


@pytest.mark.parametrize("agent, env_id", [("dqn_ilvm", "MountainCar-v0"), ("sac_ilvm", "Pendulum-v1")])
def test_an_interrupted_run_resumes_with_its_replay_buffer_and_module(
    tmp_path: Path, monkeypatch, agent: str, env_id: str
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    record_step = EpisodeRecorder._on_step

    def dies_after_600_steps(recorder: EpisodeRecorder) -> bool:
        if recorder.num_timesteps > 600:
            raise Killed
        return record_step(recorder)

    monkeypatch.setattr(EpisodeRecorder, "_on_step", dies_after_600_steps)
    spec = RunSpec(agent, env_id, seed=0, steps=1024, overrides={**FAST_OFF_POLICY, "checkpoint_every": 256})
    with pytest.raises(Killed):
        train(spec, run_dir, command="first")
    monkeypatch.undo()
    with np.load(run_dir / "replay.npz", allow_pickle=False) as replay:
        assert int(replay["pos"]) == 256 and not bool(replay["full"])  # the checkpoint at 512 steps of 2 envs

    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    assert json.loads((run_dir / "results.json").read_text())["steps"] == 1024
    with np.load(run_dir / "replay.npz", allow_pickle=False) as replay:
        # 512 rows per env went through a ring of 500 rows: only a restored buffer has wrapped
        assert bool(replay["full"]) and int(replay["pos"]) == 12
    weights = load_file(str(run_dir / "exploration" / "weights.safetensors"))
    # the scale's statistics count every transition scored, before and after the resume
    assert float(weights["scaler.stats.count"].reshape(-1)[0]) > 900


def test_off_policy_recipes_are_checked_before_anything_trains() -> None:
    with pytest.raises(ConfigError, match="buffer_size=16 holds fewer transitions than one batch"):
        load_recipe("dqn", "MountainCar-v0", {"algo_kwargs": {"buffer_size": 16}})
    with pytest.raises(ConfigError, match="optimize_memory_usage=true cannot carry the exploration bonus"):
        load_recipe(
            "dqn_ilvm",
            "MountainCar-v0",
            {
                "algo_kwargs": {
                    "optimize_memory_usage": True,
                    "replay_buffer_kwargs": {"handle_timeout_termination": False},
                }
            },
        )
    with pytest.raises(ConfigError, match="replay_buffer_class is chosen by the runner"):
        load_recipe("dqn", "MountainCar-v0", {"algo_kwargs": {"replay_buffer_class": "HerReplayBuffer"}})
    with pytest.raises(ConfigError, match="'n_epochs' is not an argument of sac"):
        load_recipe("sac", "Pendulum-v1", {"algo_kwargs": {"n_epochs": 4}})
