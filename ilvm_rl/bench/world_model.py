"""The world-model benchmark: the trajectory model's sampled futures against two reference models.

:func:`run_benchmark` collects replay with a uniformly random policy, fits the
:class:`~ilvm_rl.world_model.TrajectoryModel`, a deterministic MLP and a Gaussian MLP on the same
segments (the references read the trajectory model's inputs), and scores them on held-out segments
collected with another seed. Distances are in normalised observation units (observations scaled to [-1, 1] by the
space's bounds, or standardised by running statistics when unbounded):

- ``minADE@K`` / ``meanADE@K``: the average over the H steps of the Euclidean error to the true
  future, for the best of K samples / averaged over the K samples;
- ``minFDE@K``: the error at the last step, best of K;
- ``energy``: the energy score ``E‖X − y‖ − ½E‖X − X′‖`` of the whole sampled future, lower is
  better. It is the energy distance between sampled and true futures up to a term that does not
  depend on the model (``D = 2·ES − E‖Y − Y′‖``), so it ranks models as the energy distance does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from ilvm_rl.data.replay import SegmentBatch, TransitionBatch, TransitionStore
from ilvm_rl.data.spaces import ActionEncoder, check_observation_space
from ilvm_rl.model.dynamics import DeterministicDynamics, GaussianDynamics
from ilvm_rl.model.ilvm import ModelLoss, energy_score
from ilvm_rl.model.optim import GuardedAdam, guarded_step
from ilvm_rl.world_model import TrajectoryConfig, TrajectoryModel


class DynamicsModel(Protocol):
    def loss(self, context: torch.Tensor, target: torch.Tensor) -> ModelLoss: ...

    def sample(self, context: torch.Tensor, k: int) -> torch.Tensor: ...


def collect(env_id: str, steps: int, n_envs: int, seed: int) -> tuple[TransitionStore, spaces.Box, spaces.Space]:
    """Replay of a uniformly random policy: ``steps`` transitions from ``n_envs`` environments, with
    the true terminal observation at episode ends."""
    envs = [gym.make(env_id) for _ in range(n_envs)]
    observation_space = check_observation_space(envs[0].observation_space)
    action_space = envs[0].action_space
    encoder = ActionEncoder(action_space)
    store = TransitionStore(steps, int(observation_space.shape[0]), encoder.raw_dim)
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    for i, env in enumerate(envs):
        env.action_space.seed(seed + i)
    for _ in range(steps // n_envs):
        actions = [env.action_space.sample() for env in envs]
        results = [env.step(action) for env, action in zip(envs, actions, strict=True)]
        next_obs = np.stack([result[0] for result in results])
        terminated = np.array([result[2] for result in results])
        truncated = np.array([result[3] for result in results])
        store.add(TransitionBatch(obs, encoder.raw(np.array(actions), n_envs), next_obs, terminated, truncated))
        obs = next_obs.copy()
        for ended in np.flatnonzero(terminated | truncated):
            obs[ended] = envs[ended].reset()[0]
    return store, observation_space, action_space


def trajectory_metrics(samples: torch.Tensor, target: torch.Tensor, horizon: int) -> dict[str, float]:
    """minADE, meanADE, minFDE and energy score of ``(K, B, H·D)`` samples against ``(B, H·D)`` targets."""
    k, batch, _ = samples.shape
    errors = (samples - target).reshape(k, batch, horizon, -1).pow(2).sum(-1).sqrt()  # (K, B, H)
    displacement = errors.mean(-1)  # (K, B)
    return {
        "minADE": float(displacement.min(0).values.mean()),
        "meanADE": float(displacement.mean()),
        "minFDE": float(errors[..., -1].min(0).values.mean()),
        "energy": float(energy_score(samples, target).mean()),
    }


def fit(step: Callable[[SegmentBatch], object], store: TransitionStore, options: dict[str, Any]) -> float:
    """``options['fit_steps']`` calls of ``step`` on random segments; returns the wall time in seconds."""
    rng = np.random.default_rng(options["seed"])
    start = time.perf_counter()
    for _ in range(options["fit_steps"]):
        step(store.sample_segments(options["batch_size"], options["horizon"], options["n_envs"], rng))
    return time.perf_counter() - start


def reference_step(
    model: DynamicsModel, trajectory: TrajectoryModel, learning_rate: float
) -> Callable[[SegmentBatch], bool]:
    """A gradient step of a reference model on the trajectory model's inputs (Adam, unclipped, as the
    trajectory model's)."""
    assert isinstance(model, torch.nn.Module)
    optimiser = GuardedAdam(list(model.parameters()), learning_rate, max_grad_norm=math.inf)
    return lambda segments: guarded_step([(model.loss(*trajectory.inputs(segments)).model, optimiser)])


def run_benchmark(
    env_id: str,
    horizon: int = 3,
    samples: int = 10,
    steps: int = 20_000,
    fit_steps: int = 3_000,
    batch_size: int = 256,
    eval_segments: int = 2_000,
    n_envs: int = 8,
    learning_rate: float = 1e-3,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Fit the three models on random-policy replay of ``env_id`` and score them on held-out segments.

    Returns:
        One dict per model: ``model``, the metrics of :func:`trajectory_metrics` at ``K = samples``,
        and ``fit_s``.
    """
    least = {"horizon": 1, "samples": 2, "fit_steps": 1, "steps": n_envs * (horizon + 1)}
    for name, value in (("horizon", horizon), ("samples", samples), ("fit_steps", fit_steps), ("steps", steps)):
        if value < least[name]:
            why = f" ({n_envs} envs × (horizon + 1): every env must play one whole segment)" if name == "steps" else ""
            raise ValueError(f"{name} must be >= {least[name]}{why}, got {value}")
    torch.manual_seed(seed)
    train_store, observation_space, action_space = collect(env_id, steps, n_envs, seed)
    test_store, _, _ = collect(env_id, steps, n_envs, seed + 1_000)
    trajectory = TrajectoryModel(observation_space, action_space, TrajectoryConfig(horizon, learning_rate))
    trajectory.update_statistics(train_store.state()["next_obs"])
    held_out = trajectory.inputs(
        test_store.sample_segments(eval_segments, horizon, n_envs, np.random.default_rng(seed))
    )
    context_dim, target_dim = held_out[0].shape[1], held_out[1].shape[1]
    hidden = trajectory.config.model.hidden_sizes
    references: dict[str, DynamicsModel] = {
        "deterministic": DeterministicDynamics(context_dim, target_dim, hidden),
        "gaussian": GaussianDynamics(context_dim, target_dim, hidden),
    }
    steps_of: dict[str, tuple[DynamicsModel, Callable[[SegmentBatch], object]]] = {
        "ilvm": (trajectory.model, trajectory.train_step),
        **{name: (model, reference_step(model, trajectory, learning_rate)) for name, model in references.items()},
    }
    options = {
        "fit_steps": fit_steps,
        "batch_size": batch_size,
        "horizon": horizon,
        "n_envs": n_envs,
        "seed": seed,
    }
    rows = []
    for name, (model, step) in steps_of.items():
        fit_time = fit(step, train_store, options)
        with torch.no_grad():
            metrics = trajectory_metrics(model.sample(held_out[0], samples), held_out[1], horizon)
        rows.append({"model": name, **metrics, "fit_s": fit_time})
    return rows


def markdown_table(rows: list[dict[str, Any]], samples: int) -> str:
    lines = [
        f"| model | minADE@{samples} | meanADE@{samples} | minFDE@{samples} | energy score | fit time (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['minADE']:.4f} | {row['meanADE']:.4f} | {row['minFDE']:.4f} "
            f"| {row['energy']:.4f} | {row['fit_s']:.1f} |"
        )
    return "\n".join(lines)
