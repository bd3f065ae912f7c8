"""Devices and threads: a run, its modules and its checkpoints on the CPU or a GPU (tests marked
``gpu`` run only where torch sees one; CI runs the CPU cases), and torch's threads left to the caller."""

import json
from pathlib import Path

import pytest
import torch
from fast import FAST, FAST_FLAGS, FAST_OFF_POLICY
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from ilvm_rl.cli import main
from ilvm_rl.config import ConfigError
from ilvm_rl.exploration.explorer import ExplorationConfig
from ilvm_rl.model.ilvm import ModelConfig
from ilvm_rl.recipes import load_recipe
from ilvm_rl.representation import (
    RepresentationCallback,
    RepresentationConfig,
    load_pretrained,
    pretrain,
    representation_policy_kwargs,
)
from ilvm_rl.representation.extractor import extractors
from ilvm_rl.run import RunSpec, resume, train
from ilvm_rl.sb3 import ExplorationCallback, with_exploration

NO_GPU = not torch.cuda.is_available()
ON_GPU = [pytest.mark.gpu, pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU")]
# "auto" is the CPU where CI runs
DEVICES = ["auto", pytest.param("cuda", marks=ON_GPU)]


def set_budget(run_dir: Path, before: int, after: int) -> None:
    """Make a finished run look interrupted at its last checkpoint, with a larger budget."""
    for name in ("results.json", "eval.json"):
        (run_dir / name).unlink()
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace(f"steps: {before}", f"steps: {after}"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("agent", "fast"), [("ppo_ilvm", FAST), ("dqn_ilvm", FAST_OFF_POLICY)])
def test_a_run_trains_and_resumes_on_its_device_and_continues_on_the_cpu(
    tmp_path: Path, device: str, agent: str, fast: dict
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    overrides = {**fast, "checkpoint_every": 128, "device": device}
    train(RunSpec(agent, "CartPole-v1", seed=0, steps=128, overrides=overrides), run_dir, command="first")
    set_budget(run_dir, 128, 192)
    assert resume(run_dir)["steps"] >= 192  # on the recorded device
    set_budget(run_dir, 192, 256)
    assert main(["train", "--resume", str(run_dir), "--device", "cpu", "--no-progress"]) == 0
    assert json.loads((run_dir / "results.json").read_text())["steps"] >= 256


@pytest.mark.parametrize("device", DEVICES)
def test_the_exploration_module_follows_the_agent_and_its_checkpoint_loads_there(tmp_path: Path, device: str) -> None:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    agent = PPO("MlpPolicy", env, n_steps=32, batch_size=32, device=device, seed=0)
    callback = ExplorationCallback(ExplorationConfig(store_capacity=256), seed=0)
    agent.learn(128, callback=callback)
    callback.save(tmp_path / "exploration")
    restored = with_exploration(agent, checkpoint=tmp_path / "exploration")
    agent.learn(64, callback=restored, reset_num_timesteps=False)
    assert restored.explorer is not None
    parts = [restored.explorer.bonus_model, restored.explorer.value_function]
    assert {p.device for part in parts for p in part.parameters()} == {agent.device}
    moments = [
        value
        for part in parts
        for optimiser in part.optimisers().values()
        for state in optimiser.optimizer.state.values()
        for key, value in state.items()
        if key != "step"
    ]
    assert moments and {moment.device for moment in moments} == {agent.device}


@pytest.mark.parametrize("device", DEVICES)
def test_a_pretrained_state_model_loads_into_a_policy_on_its_device_and_trains_online(
    tmp_path: Path, device: str
) -> None:
    config = RepresentationConfig(
        mode="online", pretrain_steps=64, fit_steps=2, batch_size=16, model=ModelConfig(hidden_sizes=(16,))
    )
    pretrain("CartPole-v1", config, tmp_path / "pretrained", seed=0, n_envs=2)
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    kwargs = representation_policy_kwargs(config)
    agent = PPO("MlpPolicy", env, n_steps=32, batch_size=32, device=device, seed=0, policy_kwargs=kwargs)
    load_pretrained(agent.policy, tmp_path / "pretrained")
    (extractor,) = extractors(agent.policy)
    before = extractor.state_model.statistics()["count"].item()
    agent.learn(96, callback=RepresentationCallback(config))  # CartPole's velocities have no fixed scale
    assert extractor.state_model.statistics()["count"].item() > before > 0
    assert {p.device for p in extractor.parameters()} == {agent.device}


def test_train_leaves_torch_threads_as_the_caller_set_them(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    try:
        train(RunSpec("ppo", "CartPole-v1", seed=0, steps=64, overrides=FAST), tmp_path, command="test")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_the_command_line_sets_torch_threads(tmp_path: Path) -> None:
    flags = ["train", "--agent", "ppo", "--env", "CartPole-v1", "--steps", "64", "--runs-dir", str(tmp_path)]
    try:
        assert main([*flags, *FAST_FLAGS, "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_the_world_model_benchmark_leaves_torch_threads_to_its_command(tmp_path: Path) -> None:
    import ilvm_rl.envs  # noqa: F401  (registers ilvm/Fork-v0)
    from ilvm_rl.bench.world_model import run_benchmark

    tiny = {"steps": 64, "fit_steps": 1, "eval_segments": 16, "n_envs": 4}
    try:
        torch.set_num_threads(2)
        run_benchmark("ilvm/Fork-v0", **tiny)
        assert torch.get_num_threads() == 2
        flags = ["world-model", "--env", "ilvm/Fork-v0", "--steps", "64", "--fit-steps", "1"]
        assert main([*flags, "--runs-dir", str(tmp_path), "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(1)


def test_bad_devices_and_thread_counts_are_refused_naming_them(tmp_path: Path, capsys) -> None:
    flags = ["train", "--agent", "ppo", "--env", "CartPole-v1", "--runs-dir", str(tmp_path), "--no-progress"]
    assert main([*flags, "--threads", "0"]) == 2
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err
    if NO_GPU:
        assert main([*flags, "--device", "cuda"]) == 2
        assert "device: 'cuda' asks for a GPU, and torch sees none" in capsys.readouterr().err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="algo_kwargs: 'device' is a key of the recipe itself"):
        load_recipe("ppo", "CartPole-v1", {"algo_kwargs": {"device": "cuda"}})
    with pytest.raises(ConfigError, match="device: expected 'auto' or 'cpu' or 'cuda', got 'gpu'"):
        load_recipe("ppo", "CartPole-v1", {"device": "gpu"})
