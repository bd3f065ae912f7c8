"""The ILVM as a trajectory world model, beside the deterministic and Gaussian references."""

import numpy as np
import torch

import ilvm_rl.envs  # noqa: F401  (registers ilvm/Fork-v0)
from ilvm_rl.envs.fork import FORK_BRANCHES
from ilvm_rl.exploration.bonus import ObservationNormaliser
from ilvm_rl.exploration.spaces import ActionEncoder
from ilvm_rl.model.dynamics import DeterministicDynamics, GaussianDynamics
from ilvm_rl.model.ilvm import ILVM, ModelConfig
from ilvm_rl.world_model import TrajectoryEncoding, collect, fit, trajectory_metrics

SMALL = ModelConfig(objectives=("energy",), latent_dim=4, hidden_sizes=(64, 64), n_samples=8)
OPTIONS = {"fit_steps": 1000, "batch_size": 128, "horizon": 1, "n_envs": 4, "learning_rate": 3e-3, "seed": 0}


def fork_setup():
    store, observation_space, action_space = collect("ilvm/Fork-v0", 4_000, n_envs=4, seed=0)
    normaliser = ObservationNormaliser(observation_space)
    return store, TrajectoryEncoding(normaliser, ActionEncoder(action_space))


def advance_context(encoding: TrajectoryEncoding, lane: float, n: int) -> torch.Tensor:
    """Contexts of ADVANCE from the middle of the road in ``lane``."""
    obs = np.tile(np.array([[0.0, lane]], dtype=np.float32), (n, 1))
    actions = np.zeros((n, 1), dtype=np.float32)  # ADVANCE
    return torch.as_tensor(np.concatenate([encoding.normaliser(obs), encoding.actions.encode(actions)], axis=1))


def test_trajectory_samples_cover_every_fork_branch_where_the_references_do_not() -> None:
    torch.manual_seed(0)
    store, encoding = fork_setup()
    context_dim, target_dim = 2 + 3, 2
    ilvm = ILVM(context_dim, target_dim, SMALL)
    gaussian = GaussianDynamics(context_dim, target_dim, (64, 64))
    deterministic = DeterministicDynamics(context_dim, target_dim, (64, 64))
    for model in (ilvm, gaussian, deterministic):
        fit(model, store, encoding, OPTIONS)
    context = advance_context(encoding, lane=-1.0, n=1)
    with torch.no_grad():
        lanes = {
            name: -1.0 + m.sample(context, 400)[:, 0, 1].numpy()
            for name, m in (("ilvm", ilvm), ("gaussian", gaussian), ("deterministic", deterministic))
        }
    # the true next lane is +1 with probability 0.7 and -1 with 0.3; nothing lies between
    (upper, p_upper), (lower, p_lower) = FORK_BRANCHES
    near = {name: (np.mean(np.abs(x - upper) < 0.3), np.mean(np.abs(x - lower) < 0.3)) for name, x in lanes.items()}
    assert abs(near["ilvm"][0] - p_upper) < 0.2 and abs(near["ilvm"][1] - p_lower) < 0.2, near
    assert sum(near["ilvm"]) > 0.8  # few samples between the lanes
    assert sum(near["gaussian"]) < sum(near["ilvm"]) and sum(near["deterministic"]) == 0.0, near


def test_trajectory_metrics_by_hand() -> None:
    # one context, horizon 2 in 1-D; the truth goes 1 then 2; the samples are exact and off by 1 each step
    target = torch.tensor([[1.0, 2.0]])
    samples = torch.tensor([[[1.0, 2.0]], [[2.0, 3.0]]])
    metrics = trajectory_metrics(samples, target, horizon=2)
    assert metrics["minADE"] == 0.0 and metrics["meanADE"] == 0.5 and metrics["minFDE"] == 0.0
    # energy score: E‖X − y‖ = √2 / 2, ½·E‖X − X′‖ = ½·√2
    assert abs(metrics["energy"] - (np.sqrt(2) / 2 - np.sqrt(2) / 2)) < 1e-5
