"""The trajectory model (the world model) and its benchmark beside the deterministic and Gaussian references."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

import ilvm_rl.envs  # noqa: F401  (registers ilvm/Fork-v0)
from ilvm_rl.bench.world_model import collect, fit, reference_step, trajectory_metrics
from ilvm_rl.checkpoint import CheckpointError
from ilvm_rl.envs.fork import FORK_BRANCHES
from ilvm_rl.model.dynamics import DeterministicDynamics, GaussianDynamics
from ilvm_rl.model.ilvm import ModelConfig
from ilvm_rl.world_model import TrajectoryConfig, TrajectoryModel

SMALL = ModelConfig(objectives=("energy",), latent_dim=4, hidden_sizes=(64, 64), n_samples=8)
OPTIONS = {"fit_steps": 1000, "batch_size": 128, "horizon": 1, "n_envs": 4, "seed": 0}


def fork_model(horizon: int = 1, steps: int = 4_000):
    store, observation_space, action_space = collect("ilvm/Fork-v0", steps, n_envs=4, seed=0)
    return store, TrajectoryModel(observation_space, action_space, TrajectoryConfig(horizon, 3e-3, SMALL))


def advance_context(model: TrajectoryModel, lane: float, n: int) -> torch.Tensor:
    """Contexts of ADVANCE from the middle of the road in ``lane``."""
    obs = np.tile(np.array([[0.0, lane]], dtype=np.float32), (n, 1))
    actions = np.zeros((n, 1), dtype=np.float32)  # ADVANCE
    return torch.as_tensor(np.concatenate([model.normaliser(obs), model.actions.encode(actions)], axis=1))


def test_trajectory_samples_cover_every_fork_branch_where_the_references_do_not() -> None:
    torch.manual_seed(0)
    store, trajectory = fork_model()
    context_dim, target_dim = 2 + 3, 2
    gaussian = GaussianDynamics(context_dim, target_dim, (64, 64))
    deterministic = DeterministicDynamics(context_dim, target_dim, (64, 64))
    fit(trajectory.train_step, store, OPTIONS)
    for model in (gaussian, deterministic):
        fit(reference_step(model, trajectory, 3e-3), store, OPTIONS)
    context = advance_context(trajectory, lane=-1.0, n=1)
    with torch.no_grad():
        lanes = {
            name: -1.0 + m.sample(context, 400)[:, 0, 1].numpy()
            for name, m in (("ilvm", trajectory.model), ("gaussian", gaussian), ("deterministic", deterministic))
        }
    # the true next lane is +1 with probability 0.7 and -1 with 0.3; nothing lies between
    (upper, p_upper), (lower, p_lower) = FORK_BRANCHES
    near = {name: (np.mean(np.abs(x - upper) < 0.3), np.mean(np.abs(x - lower) < 0.3)) for name, x in lanes.items()}
    assert abs(near["ilvm"][0] - p_upper) < 0.2 and abs(near["ilvm"][1] - p_lower) < 0.2, near
    assert sum(near["ilvm"]) > 0.8  # few samples between the lanes
    assert sum(near["gaussian"]) < sum(near["ilvm"]) and sum(near["deterministic"]) == 0.0, near


def test_trajectory_model_learns_and_round_trips_through_its_checkpoint(tmp_path) -> None:
    """Held-out energy score of sampled 2-step futures: the fitted model beats its untrained self, and
    the model loaded from its checkpoint samples exactly what the saved one does."""
    torch.manual_seed(0)
    store, model = fork_model(horizon=2, steps=2_000)
    held_out, _, _ = collect("ilvm/Fork-v0", 1_000, n_envs=4, seed=1)
    segments = held_out.sample_segments(500, 2, 4, np.random.default_rng(0))

    def held_out_energy() -> float:
        with torch.no_grad():
            return float(model.loss(segments).metrics["energy"])

    untrained = held_out_energy()
    metrics = model.fit(store, fit_steps=300, batch_size=128, stride=4, rng=np.random.default_rng(0))
    assert metrics["skipped_updates"] == 0.0 and "loss/energy" in metrics
    assert held_out_energy() < 0.5 * untrained

    futures = model.sample(segments.obs[:3], segments.actions[:3], k=5)
    assert futures.shape == (5, 3, 2, 2)
    # futures come back in observation units: the lane stays within the space's bounds, give or take
    assert np.all(np.abs(futures[..., 1]) < 2.0)
    model.save(tmp_path / "trajectory")
    loaded = TrajectoryModel.load(tmp_path / "trajectory", model.observation_space, model.action_space)
    assert loaded.config == model.config
    torch.manual_seed(1)
    expected = model.sample(segments.obs[:3], segments.actions[:3], k=5)
    torch.manual_seed(1)
    np.testing.assert_array_equal(loaded.sample(segments.obs[:3], segments.actions[:3], k=5), expected)
    with pytest.raises(CheckpointError, match="action_space of the checkpoint"):
        TrajectoryModel.load(tmp_path / "trajectory", model.observation_space, spaces.Discrete(7))


def test_trajectory_metrics_by_hand() -> None:
    # one context, horizon 2 in 1-D; the truth goes 1 then 2; the samples are exact and off by 1 each step
    target = torch.tensor([[1.0, 2.0]])
    samples = torch.tensor([[[1.0, 2.0]], [[2.0, 3.0]]])
    metrics = trajectory_metrics(samples, target, horizon=2)
    assert metrics["minADE"] == 0.0 and metrics["meanADE"] == 0.5 and metrics["minFDE"] == 0.0
    # energy score: E‖X − y‖ = √2 / 2, ½·E‖X − X′‖ = ½·√2
    assert abs(metrics["energy"] - (np.sqrt(2) / 2 - np.sqrt(2) / 2)) < 1e-5
