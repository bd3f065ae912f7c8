"""CLI, run folders, checkpoints and reproducibility at toy scale."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from fast import FAST, FAST_FLAGS
from safetensors.numpy import load_file

from ilvm_rl.checkpoint import CheckpointError
from ilvm_rl.cli import main
from ilvm_rl.config import ConfigError
from ilvm_rl.exploration.checkpoint import load_explorer
from ilvm_rl.run import RunProgressBar, RunSpec, steps_to_threshold, train


def only_run(runs_dir: Path) -> Path:
    (run_dir,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return run_dir


def test_cli_train_writes_a_complete_run_folder(tmp_path: Path) -> None:
    code = main(
        [
            "train",
            "--agent",
            "ppo_ilvm",
            "--env",
            "MountainCar-v0",
            "--steps",
            "256",
            "--runs-dir",
            str(tmp_path),
            *FAST_FLAGS,
        ]
    )
    assert code == 0
    run_dir = only_run(tmp_path)
    for name in (
        "command.txt",
        "config.yaml",
        "model.zip",
        "eval.json",
        "results.json",
        "episodes.csv",
        "exploration/weights.safetensors",
        "exploration/settings.json",
    ):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert list((run_dir / "monitor").glob("*.monitor.csv"))
    assert "ilvm-rl train --agent ppo_ilvm" in (run_dir / "command.txt").read_text()
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert evaluation["deterministic"] and evaluation["mean_return"] == -200.0
    progress = (run_dir / "tb" / "progress.csv").read_text().splitlines()[0]
    for tag in (
        "ilvm/int_reward_mean",
        "ilvm/int_reward_raw_max",
        "ilvm/loss/total",
        "ilvm/update_time_ms",
        "ilvm/int_coef",
        "ilvm/int_advantage_std",
        "ilvm/loss/int_value",
    ):
        assert tag in progress


def test_cli_evaluates_a_finished_run_again_with_either_policy(tmp_path: Path, capsys) -> None:
    assert (
        main(
            [
                "train",
                "--agent",
                "ppo",
                "--env",
                "MountainCar-v0",
                "--steps",
                "64",
                "--runs-dir",
                str(tmp_path),
                *FAST_FLAGS,
            ]
        )
        == 0
    )
    run_dir = only_run(tmp_path)
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--policy", "argmax", "--episodes", "1"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # the arg-max policy again, on the same evaluation env: the return the run's eval.json holds
    assert (
        row["policy"] == "argmax"
        and row["mean_return"] == json.loads((run_dir / "eval.json").read_text())["returns"][0]
    )
    assert row["kept"] is (row["mean_return"] >= -110)
    assert main(["evaluate", str(run_dir), "--episodes", "1"]) == 0  # the recipe's policy: arg-max on MountainCar
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["policy"] == "argmax"
    assert main(["evaluate", str(run_dir), "--episodes", "0"]) == 2
    assert "--episodes must be >= 1" in capsys.readouterr().err


def test_cli_rejects_bad_input_before_writing_anything(tmp_path: Path, capsys) -> None:
    assert main(["train", "--agent", "nope", "--env", "MountainCar-v0", "--runs-dir", str(tmp_path)]) == 2
    assert "unknown agent 'nope'" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--agent",
                "ppo_ilvm",
                "--env",
                "MountainCar-v0",
                "--set",
                "exploration.bogus=1",
                "--runs-dir",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "unknown key 'bogus'" in capsys.readouterr().err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def run_once(tmp_path: Path, name: str) -> Path:
    run_dir = tmp_path / name
    run_dir.mkdir()
    train(RunSpec("ppo_ilvm", "MountainCar-v0", seed=3, steps=256, overrides=FAST), run_dir, command="test")
    return run_dir


def test_same_seed_twice_gives_identical_results(tmp_path: Path) -> None:
    first, second = run_once(tmp_path, "a"), run_once(tmp_path, "b")
    weights_a = load_file(str(first / "exploration" / "weights.safetensors"))
    weights_b = load_file(str(second / "exploration" / "weights.safetensors"))
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        np.testing.assert_array_equal(weights_a[key], weights_b[key], err_msg=key)
    assert (first / "episodes.csv").read_text() == (second / "episodes.csv").read_text()


RELOAD_SCRIPT = """
import sys, numpy as np, gymnasium as gym
from gymnasium.wrappers import RescaleObservation
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from ilvm_rl.exploration.checkpoint import load_explorer, save_explorer
from ilvm_rl.sb3 import with_exploration
from safetensors.numpy import load_file, save_file
run = sys.argv[1]
env = make_vec_env("MountainCar-v0", n_envs=2, seed=1, wrapper_class=lambda e: RescaleObservation(e, -1.0, 1.0))
explorer = load_explorer(run + "/exploration", env.observation_space, env.action_space)
state = {k: v.detach().numpy() for k, v in explorer.bonus_model.state_dict().items()}
save_file(state, run + "/reloaded.safetensors")
save_explorer(explorer, run + "/resaved")
model = PPO.load(run + "/model.zip", env=env, device="cpu")
callback = with_exploration(model, checkpoint=run + "/exploration")
# 256 + 768 steps: β falls to 0 for good at step 768, after which the module stores and trains no more
model.learn(768, callback=callback, reset_num_timesteps=False)
stored = callback.explorer.store.size - explorer.store.size
assert stored == 768 - 256 - 2, stored  # every step before the one that reaches 768, of 2 envs
assert callback.explorer.retired(1.0)
trained = callback.explorer.bonus_model.state_dict()
assert any(not np.array_equal(trained[k].numpy(), state[k]) for k in state), "the model did not train"
print("continued", callback.explorer.store.size)
"""


def test_checkpoint_round_trip_in_a_new_process_and_training_continues(tmp_path: Path) -> None:
    run_dir = run_once(tmp_path, "run")
    result = subprocess.run([sys.executable, "-c", RELOAD_SCRIPT, str(run_dir)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "continued" in result.stdout
    saved = load_file(str(run_dir / "exploration" / "weights.safetensors"))
    reloaded = load_file(str(run_dir / "reloaded.safetensors"))
    for key, value in reloaded.items():
        np.testing.assert_array_equal(value, saved[f"model.{key}"])
    # everything the module holds survives (optimiser, statistics, scaler, replay), not only weights
    resaved = load_file(str(run_dir / "resaved" / "weights.safetensors"))
    assert resaved.keys() == saved.keys()
    for key, value in saved.items():
        np.testing.assert_array_equal(resaved[key], value, err_msg=key)
    settings = json.loads((run_dir / "exploration" / "settings.json").read_text())
    assert settings["steps"] == 256  # the run records the agent's step count with the module
    resaved_settings = json.loads((run_dir / "resaved" / "settings.json").read_text())
    assert resaved_settings == {**settings, "steps": None}


def test_checkpoint_for_other_spaces_is_refused(tmp_path: Path) -> None:
    run_dir = run_once(tmp_path, "run")
    cartpole = gym.make("CartPole-v1")
    with pytest.raises(CheckpointError, match="observation_space of the checkpoint"):
        load_explorer(run_dir / "exploration", cartpole.observation_space, cartpole.action_space)
    with pytest.raises(CheckpointError, match="missing"):
        load_explorer(tmp_path, cartpole.observation_space, cartpole.action_space)


def test_steps_to_threshold_uses_a_trailing_window() -> None:
    episodes = [(i * 100, -200.0) for i in range(10)] + [(1000 + i * 100, -100.0) for i in range(10)]
    # the 10-episode mean first reaches -110 once 9 of the last 10 are at -100
    assert steps_to_threshold(episodes, -110.0) == 1800
    assert steps_to_threshold(episodes[:12], -110.0) is None


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    overrides = {**FAST, "checkpoint_every": 128}
    train(RunSpec("ppo_ilvm", "CartPole-v1", seed=0, steps=256, overrides=overrides), run_dir, command="first")
    # pretend the budget was 512 and the process died after the checkpoint at 256 steps
    for name in ("results.json", "eval.json"):
        (run_dir / name).unlink()
    config = (run_dir / "config.yaml").read_text().replace("steps: 256", "steps: 512")
    (run_dir / "config.yaml").write_text(config)
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["steps"] == 512
    steps = [int(line.split(",")[0]) for line in (run_dir / "episodes.csv").read_text().splitlines()[1:]]
    assert len(steps) > 5 and steps == sorted(steps) and steps[-1] <= 512 and max(steps) > 256
    assert json.loads((run_dir / "exploration" / "settings.json").read_text())["n_envs"] == 2
    assert main(["train", "--resume", str(run_dir)]) == 2  # finished runs are not resumed


def test_the_share_of_steps_on_a_noisy_tv_is_recorded(tmp_path: Path) -> None:
    import ilvm_rl.envs  # noqa: F401  (registers the ilvm/ ids)

    results = {}
    for env_id in ("ilvm/NoisyTVAction-v0", "CartPole-v1"):
        run_dir = tmp_path / env_id.replace("/", "-")
        run_dir.mkdir()
        results[env_id] = train(RunSpec("ppo", env_id, seed=0, steps=512, overrides=FAST), run_dir)
    # an untrained policy picks the TV action about one step in five
    assert 0.1 < results["ilvm/NoisyTVAction-v0"]["tv_share"] < 0.3
    assert results["CartPole-v1"]["tv_share"] is None


def test_the_deepest_cell_of_a_maze_run_is_recorded(tmp_path: Path) -> None:
    import ilvm_rl.envs  # noqa: F401  (registers the ilvm/ ids)

    results = train(RunSpec("ppo", "ilvm/Maze-v0", seed=0, steps=2048, overrides=FAST), tmp_path)
    with (tmp_path / "episodes.csv").open() as file:
        episodes = list(csv.DictReader(file))
    depths = [int(row["deepest"]) for row in episodes]
    # an untrained policy wanders some cells from the start and never reaches the goal (108 deep)
    assert len(depths) >= 4 and all(0 < depth < 108 for depth in depths)
    assert results["deepest"] == max(depths)
    with (tmp_path / "tb" / "progress.csv").open() as file:
        progress = list(csv.DictReader(file))
    logged = [int(float(row["rollout/deepest"])) for row in progress if row.get("rollout/deepest")]
    assert logged and max(logged) == max(depths)


@pytest.mark.parametrize("deterministic", [True, False])
def test_final_evaluation_uses_the_policy_the_recipe_asks_for(deterministic: bool) -> None:
    from ilvm_rl.recipes import Recipe
    from ilvm_rl.run import evaluate

    class RecordingPolicy:
        def __init__(self) -> None:
            self.flags: set[bool] = set()

        def predict(self, observation, state=None, episode_start=None, deterministic=False):
            self.flags.add(deterministic)
            return np.zeros(len(observation), dtype=np.int64), state

    policy = RecordingPolicy()
    recipe = Recipe(eval_episodes=1, eval_deterministic=deterministic)
    evaluation = evaluate(policy, "MountainCar-v0", seed=0, recipe=recipe)
    assert policy.flags == {deterministic} and evaluation["deterministic"] is deterministic


def test_the_progress_bar_counts_the_whole_rollouts_a_run_plays() -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2), n_steps=32, batch_size=32, n_epochs=1)
    bar = RunProgressBar()
    model.learn(100, callback=bar)  # two rollouts of 64 steps: PPO ends at 128, past the budget of 100
    assert model.num_timesteps == bar.pbar.total == bar.pbar.n == 128


@pytest.mark.parametrize(
    ("train_freq", "bar_total"),
    [(3, 102), ((1, "episode"), 100)],  # 34 calls of 3 steps; whole episodes of a length not known ahead
)
def test_an_off_policy_progress_bar_ends_at_100_percent(train_freq: object, bar_total: int) -> None:
    from stable_baselines3 import DQN

    # Seeded: unseeded, an episode could end on step 100 exactly and the last call not go past the budget.
    model = DQN("MlpPolicy", "CartPole-v1", train_freq=train_freq, learning_starts=1000, buffer_size=1000, seed=0)
    bar = RunProgressBar()
    model.learn(100, callback=bar)
    assert model.num_timesteps > 100  # the last call went past the budget
    assert bar.pbar.n == bar.pbar.total == bar_total
    assert train_freq != 3 or model.num_timesteps == bar_total


def test_a_run_with_a_negative_seed_is_refused_before_it_starts() -> None:
    with pytest.raises(ConfigError, match="seed must be >= 0"):  # not Gymnasium's error from inside reset
        RunSpec("ppo", "CartPole-v1", seed=-1, steps=64)


def test_a_run_records_the_code_it_started_with(tmp_path: Path, monkeypatch) -> None:
    """Read when training starts: a tree edited while a long run trains is not that run's code."""
    episodes = tmp_path / "episodes.csv"

    def episodes_so_far() -> dict[str, int]:
        return {"episodes_when_read": len(episodes.read_text().splitlines()) - 1 if episodes.exists() else 0}

    monkeypatch.setattr("ilvm_rl.run.provenance", episodes_so_far)
    results = train(RunSpec("ppo", "CartPole-v1", seed=0, steps=256, overrides=FAST), tmp_path)
    assert episodes_so_far()["episodes_when_read"] > 0  # CartPole's episodes end within 256 steps
    assert results["provenance"] == {"episodes_when_read": 0}
