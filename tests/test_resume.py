"""Resuming a run: ``module:Name`` ids, no pickle on the load path, logs that continue, and a model
and module that must belong together."""

import copy
import csv
import json
import pickle
import random
import shutil
import zipfile
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch
from fast import FAST, FAST_FLAGS, FAST_OFF_POLICY
from stable_baselines3 import PPO, SAC
from tensorboard.compat.proto.event_pb2 import Event

from ilvm_rl import run as run_module
from ilvm_rl.cli import main
from ilvm_rl.exploration.checkpoint import read_checkpoint_steps
from ilvm_rl.representation.extractor import RepresentationCallback
from ilvm_rl.representation.state_model import StateModel
from ilvm_rl.run import RunSpec, train
from ilvm_rl.run_state import _records, load_weights, zip_steps

USER_ENV = "user_env_module:UserCounter-v0"


def interrupted(run_dir: Path, agent: str = "ppo_ilvm", env_id: str = "CartPole-v1", **settings) -> Path:
    """A run trained to 256 steps with checkpoints every 128, then made to look killed before its
    budget of 512 (the final outputs removed, the budget raised)."""
    run_dir.mkdir()
    overrides = {**FAST, "checkpoint_every": 128, **settings}
    train(RunSpec(agent, env_id, seed=0, steps=256, overrides=overrides), run_dir, command="first")
    for name in ("results.json", "eval.json"):
        (run_dir / name).unlink()
    config = (run_dir / "config.yaml").read_text().replace("steps: 256", "steps: 512")
    (run_dir / "config.yaml").write_text(config)
    return run_dir


def progress_steps(run_dir: Path) -> list[int]:
    with (run_dir / "tb" / "progress.csv").open() as file:
        return [int(float(row["time/total_timesteps"])) for row in csv.DictReader(file)]


def event_steps(run_dir: Path) -> dict[str, list[int]]:
    """Every scalar tag of the run's TensorBoard events with the steps it was logged at."""
    steps: dict[str, list[int]] = {}
    for path in sorted((run_dir / "tb").glob("*tfevents*")):
        for _, payload in _records(path.read_bytes()):
            event = Event.FromString(payload)
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    return steps


def test_a_user_module_env_id_trains_plots_resumes_and_benches(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    flags = ["--env", USER_ENV, "--runs-dir", str(runs), *FAST_FLAGS]
    assert main(["train", "--agent", "ppo", "--steps", "128", *flags]) == 0
    (run_dir,) = runs.iterdir()
    assert ":" not in run_dir.name and run_dir.name.startswith("user_env_module-UserCounter-v0__ppo__0__")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["reward_threshold"] == -5.0 and results["env_id"] == USER_ENV
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 0

    resumable = interrupted(tmp_path / "resumable", agent="ppo", env_id=USER_ENV)
    assert main(["train", "--resume", str(resumable), "--no-progress"]) == 0
    assert json.loads((resumable / "results.json").read_text())["steps"] == 512

    bench = ["bench", "--agents", "ppo", "--env", USER_ENV, "--steps", "64", "--seeds", "1", "--workers", "1"]
    assert main([*bench, "--runs-dir", str(runs), *FAST_FLAGS[:-1]]) == 0
    (bench_dir,) = (runs / "bench").iterdir()
    assert bench_dir.name == "user_env_module-UserCounter-v0"
    assert (bench_dir / "cells" / "user_env_module-UserCounter-v0__ppo__0.json").is_file()


def test_resume_calls_no_pickle_and_keeps_every_log_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = interrupted(tmp_path / "run")
    before = progress_steps(run_dir)
    assert before == list(range(64, 257, 64))

    def refuse(*args, **kwargs):
        raise AssertionError("pickle was called on a load path")

    for module in (pickle, cloudpickle):
        monkeypatch.setattr(module, "load", refuse)
        monkeypatch.setattr(module, "loads", refuse)
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    # pretraining with a run's policy rebuilds it from the run's recipe, also without pickle
    pretrain = ["pretrain", "--env", "CartPole-v1", "--policy", str(run_dir / "model.zip"), "--steps", "64"]
    assert main([*pretrain, "--fit-steps", "2", "--out", str(tmp_path / "pretrained")]) == 0
    assert (tmp_path / "pretrained" / "weights.safetensors").is_file()
    monkeypatch.undo()

    assert progress_steps(run_dir) == list(range(64, 513, 64))  # the first segment's rows kept
    tags = event_steps(run_dir)
    for tag, steps in tags.items():
        assert len(steps) == len(set(steps)), tag
    assert tags["ilvm/int_coef"] == list(range(64, 513, 64))
    results = json.loads((run_dir / "results.json").read_text())
    state = json.loads((run_dir / "checkpoint.json").read_text())
    # time of both segments: the first one's is recorded in the checkpoint it resumed from
    assert results["wall_time_s"] == pytest.approx(state["wall_time_s"])
    assert results["steps_per_second"] == pytest.approx(512 / results["wall_time_s"])
    assert zip_steps(run_dir / "model.zip") == read_checkpoint_steps(run_dir / "exploration") == 512
    assert (run_dir / "command.txt").read_text().splitlines()[1].startswith("ilvm-rl train --resume")


def test_a_falling_learning_rate_continues_its_schedule_after_a_resume(tmp_path: Path) -> None:
    run_dir = interrupted(tmp_path / "run", agent="ppo", learning_rate_final=0.0)
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    with (run_dir / "tb" / "progress.csv").open() as file:
        rows = [row for row in csv.DictReader(file) if float(row["time/total_timesteps"]) > 256]
    # a row shows the update made after the previous 64-step rollout (the first row of a segment none)
    updates = {float(row["time/total_timesteps"]) - 64: row["train/learning_rate"] for row in rows}
    del updates[256]
    assert list(updates) == [320, 384, 448]
    # the 512-step budget's schedule, not a fresh one from the resumed step
    assert [float(rate) for rate in updates.values()] == pytest.approx([3e-4 * (1 - s / 512) for s in updates])


def test_sacs_learned_entropy_coefficient_comes_back_with_the_weights(tmp_path: Path) -> None:
    trained = SAC("MlpPolicy", "Pendulum-v1", learning_starts=0, device="cpu", seed=0)
    trained.learn(64)  # the automatic entropy coefficient moves away from its start at 1
    trained.save(tmp_path / "model.zip")
    rebuilt = SAC("MlpPolicy", "Pendulum-v1", device="cpu", seed=1)
    assert not torch.equal(rebuilt.log_ent_coef, trained.log_ent_coef)
    load_weights(rebuilt, tmp_path / "model.zip")
    torch.testing.assert_close(rebuilt.log_ent_coef, trained.log_ent_coef)
    assert rebuilt.log_ent_coef.requires_grad  # still the tensor its optimiser steps


def test_the_rebuilt_model_has_the_saved_weights_and_optimiser_state(tmp_path: Path) -> None:
    run_dir = interrupted(tmp_path / "run")
    reference = PPO.load(run_dir / "model.zip", device="cpu")  # the pickle path, as a reference only
    rebuilt = PPO("MlpPolicy", reference.get_env() or "CartPole-v1", n_steps=32, batch_size=32, device="cpu")
    load_weights(rebuilt, run_dir / "model.zip")
    for (name, value), (_, expected) in zip(
        rebuilt.policy.state_dict().items(), reference.policy.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(value, expected, msg=name)
    optim_state = rebuilt.policy.optimizer.state_dict()["state"]
    expected_state = reference.policy.optimizer.state_dict()["state"]
    assert optim_state.keys() == expected_state.keys() and optim_state
    for index, values in expected_state.items():
        torch.testing.assert_close(optim_state[index]["exp_avg"], values["exp_avg"])


def test_a_model_and_module_saved_at_different_steps_are_refused(tmp_path: Path, capsys) -> None:
    run_dir = interrupted(tmp_path / "run")
    settings = json.loads((run_dir / "exploration" / "settings.json").read_text())
    (run_dir / "exploration" / "settings.json").write_text(json.dumps({**settings, "steps": 128}))
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("ilvm-rl: error:") and "do not belong together" in error and "step 128" in error
    # a failed resume leaves no segment folder and no command line behind
    assert not (run_dir / "monitor" / "resume-1").exists()
    assert len((run_dir / "command.txt").read_text().splitlines()) == 1


def test_a_truncated_model_zip_is_a_named_error(tmp_path: Path, capsys) -> None:
    run_dir = interrupted(tmp_path / "run")
    data = (run_dir / "model.zip").read_bytes()
    (run_dir / "model.zip").write_bytes(data[: len(data) // 2])
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "model.zip: not a readable SB3 model zip" in error


def test_a_pending_pair_is_finished_or_dropped_on_resume(tmp_path: Path) -> None:
    run_dir = interrupted(tmp_path / "run")
    # a complete pending pair whose move was cut after the model: finished by the resume
    pending = run_dir / "checkpoint.partial"
    pending.mkdir()
    shutil.copytree(run_dir / "exploration", pending / "exploration")
    shutil.copy(run_dir / "checkpoint.json", pending / "checkpoint.json")
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    assert not pending.exists()


def test_the_state_model_input_statistics_travel_with_its_weights(rng: np.random.Generator) -> None:
    from gymnasium import spaces

    from ilvm_rl.model.ilvm import ModelConfig

    space = spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
    config = ModelConfig(latent_dim=2, hidden_sizes=(8,))
    source, target = StateModel(space, config), StateModel(space, config)
    source.update_scale(rng.normal(5.0, 2.0, size=(128, 3)))
    target.load_state_dict(source.state_dict())
    assert target.stats.count == source.stats.count == 128
    np.testing.assert_array_equal(target.stats.mean, source.stats.mean)
    target.update_scale(rng.normal(5.0, 2.0, size=(128, 3)))  # goes on from 128, not from 0
    assert target.stats.count == 256 and np.allclose(target.stats.mean, 5.0, atol=0.5)


def test_a_resumed_online_representation_keeps_its_input_statistics(tmp_path: Path) -> None:
    from stable_baselines3.common.env_util import make_vec_env

    from ilvm_rl.representation.extractor import extractors
    from ilvm_rl.run import build_model, read_run_spec

    run_dir = interrupted(tmp_path / "run", agent="ppo_ilvm_repr_online")
    spec, recipe = read_run_spec(run_dir)
    model = build_model(spec, recipe, make_vec_env(spec.env_id, n_envs=recipe.n_envs))
    (fresh,) = extractors(model.policy)
    assert fresh.state_model.stats.count == 0
    load_weights(model, run_dir / "model.zip")
    (loaded,) = extractors(model.policy)
    # CartPole's velocities are standardised by statistics of the observations of every rollout so far
    # but the last (folded in between rollouts): three of the four 64-step rollouts
    assert loaded.state_model.stats.count == 3 * 64
    assert not torch.equal(loaded.state_model.half_width, torch.ones_like(loaded.state_model.half_width))


def test_a_run_killed_after_its_last_save_resumes_to_its_results_without_training(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    train(RunSpec("ppo_ilvm", "CartPole-v1", seed=0, steps=128, overrides=FAST), run_dir, command="first")
    results = json.loads((run_dir / "results.json").read_text())
    rows = progress_steps(run_dir)
    for name in ("results.json", "eval.json"):  # killed after the final save, before the evaluation
        (run_dir / name).unlink()
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    resumed = json.loads((run_dir / "results.json").read_text())
    assert resumed["steps"] == 128 and progress_steps(run_dir) == rows
    assert resumed["final_eval_return"] == results["final_eval_return"]
    assert resumed["wall_time_s"] == pytest.approx(results["wall_time_s"], abs=0.05)  # no training time added


def next_draws(model) -> dict:
    """What SB3's random streams would give next (drawn from copies: the streams stay as they are),
    and DQN's target-update phase."""
    numpy_stream, python_stream = np.random.RandomState(), random.Random()
    numpy_stream.set_state(np.random.get_state())
    python_stream.setstate(random.getstate())
    action_space = copy.deepcopy(model.action_space)
    return {
        "torch": torch.get_rng_state().tolist(),
        "numpy": numpy_stream.random_sample(4).tolist(),
        "python": [python_stream.random() for _ in range(4)],
        "action_space": [np.asarray(action_space.sample()).tolist() for _ in range(4)],
        "n_calls": getattr(model, "_n_calls", None),
    }


@pytest.mark.parametrize("agent", ["ppo_ilvm", "dqn_ilvm"])
def test_a_resumed_run_goes_on_from_the_random_streams_of_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, agent: str
) -> None:
    saved: list[dict] = []
    resumed: list[dict] = []
    save_pair = run_module.save_pair

    def save_and_note(run_dir, model, *modules):
        saved.append(next_draws(model))
        save_pair(run_dir, model, *modules)

    class NotingRecorder(run_module.EpisodeRecorder):
        def _on_training_start(self) -> None:
            resumed.append(next_draws(self.model))
            super()._on_training_start()

    monkeypatch.setattr(run_module, "save_pair", save_and_note)
    settings = FAST if agent.startswith("ppo") else FAST_OFF_POLICY
    run_dir = interrupted(tmp_path / "run", agent=agent, **settings)
    at_checkpoint = saved[-1]  # the first segment's last save, at step 256
    monkeypatch.setattr(run_module, "EpisodeRecorder", NotingRecorder)
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    assert resumed == [at_checkpoint]
    if agent.startswith("dqn"):
        assert at_checkpoint["n_calls"] > 0


def logged_values(run_dir: Path) -> list[dict[str, str]]:
    """The rows of ``progress.csv`` without the clock's columns (``time/``, ``*_time_ms``)."""
    with (run_dir / "tb" / "progress.csv").open() as file:
        rows = list(csv.DictReader(file))
    clock = [key for key in rows[0] if key.startswith("time/") or key.endswith("_time_ms")]
    return [{key: value for key, value in row.items() if key not in clock} for row in rows]


@pytest.mark.parametrize(
    ("agent", "env_id", "settings"),
    [
        ("ppo_ilvm", "CartPole-v1", FAST),
        ("dqn_ilvm", "CartPole-v1", FAST_OFF_POLICY),
        ("sac_ilvm", "user_env_module:UserPendulum-v0", FAST_OFF_POLICY),
    ],
)
def test_resuming_one_checkpoint_twice_gives_the_same_run(tmp_path: Path, agent: str, env_id: str, settings) -> None:
    first = interrupted(tmp_path / "first", agent=agent, env_id=env_id, **settings)
    second = shutil.copytree(first, tmp_path / "second")
    for run_dir in (first, second):
        assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    assert (first / "episodes.csv").read_text() == (second / "episodes.csv").read_text()
    assert logged_values(first) == logged_values(second) and len(logged_values(first)) > 1
    assert json.loads((first / "eval.json").read_text()) == json.loads((second / "eval.json").read_text())
    with zipfile.ZipFile(first / "model.zip") as one, zipfile.ZipFile(second / "model.zip") as other:
        assert one.read("policy.pth") == other.read("policy.pth")
    module = Path("exploration", "weights.safetensors")
    assert (first / module).read_bytes() == (second / module).read_bytes()


def online_training(callback: RepresentationCallback) -> dict:
    """A copy of what the online representation's training holds besides the model."""
    trainer = callback.trainer
    assert trainer is not None
    return {
        "replay": trainer.store.state(),
        "pending": np.concatenate(trainer.pending) if trainer.pending else np.zeros((0, 4), np.float32),
        "adam": copy.deepcopy(trainer.optims.model.optimizer.state_dict()["state"]),
        "rng": copy.deepcopy(trainer.rng.bit_generator.state),
        "counts": (trainer.skipped, callback.recent),
    }


def test_a_resumed_online_representation_goes_on_with_its_replay_and_optimiser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved: list[dict] = []
    resumed: list[dict] = []
    save_pair = run_module.save_pair

    def save_and_note(run_dir, model, explorer, wall_time_s, representation):
        saved.append(online_training(representation))
        save_pair(run_dir, model, explorer, wall_time_s, representation)

    monkeypatch.setattr(run_module, "save_pair", save_and_note)
    run_dir = interrupted(tmp_path / "run", agent="ppo_ilvm_repr_online")
    at_checkpoint = saved[-1]  # the first segment's last save, at step 256, after its last rollout
    monkeypatch.setattr(
        RepresentationCallback, "_on_training_start", lambda self: resumed.append(online_training(self)), raising=False
    )
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    (at_resume,) = resumed
    assert len(at_checkpoint["replay"]["next_obs"]) == 256 and len(at_checkpoint["pending"]) == 64
    assert at_checkpoint["counts"] == at_resume["counts"] == (0, 64)  # the last rollout: 64 steps not yet trained on
    for key in ("replay", "pending", "adam"):
        torch.testing.assert_close(at_resume[key], at_checkpoint[key], rtol=0, atol=0, msg=key)
    assert at_resume["adam"] and at_resume["rng"] == at_checkpoint["rng"]
    assert json.loads((run_dir / "representation_online" / "settings.json").read_text())["steps"] == 512


def test_a_checkpoint_without_the_online_training_resumes_with_a_warning(tmp_path: Path) -> None:
    run_dir = interrupted(tmp_path / "run", agent="ppo_ilvm_repr_online")
    shutil.rmtree(run_dir / "representation_online")  # as checkpoints were written before it was kept
    with pytest.warns(UserWarning, match="representation_online is missing .* replay and optimiser start afresh"):
        assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    assert (run_dir / "representation_online" / "weights.safetensors").is_file()
