"""The ILVM as a trajectory world model, and a benchmark of its samples against two reference models.

The trajectory model is the ILVM class with context ``(s_t, a_t … a_{t+H-1})`` and target
``s_{t+1} … s_{t+H}`` (each step as its change from ``s_t``, in normalised observation units), fitted
on segments of the transition store that never cross an episode end. ``sample(context, K)`` draws K
futures in one batched call.

:func:`run_benchmark` collects replay with a uniformly random policy, fits the ILVM, a deterministic
MLP and a Gaussian MLP on the same segments, and scores them on held-out segments collected with
another seed. Distances are in normalised observation units (observations scaled to [-1, 1] by the
space's bounds, or standardised by running statistics when unbounded):

- ``minADE@K`` / ``meanADE@K``: the average over the H steps of the Euclidean error to the true
  future, for the best of K samples / averaged over the K samples;
- ``minFDE@K``: the error at the last step, best of K;
- ``energy``: the energy score ``E‖X − y‖ − ½E‖X − X′‖`` of the whole sampled future, lower is
  better. It is the energy distance between sampled and true futures up to a term that does not
  depend on the model (``D = 2·ES − E‖Y − Y′‖``), so it ranks models as the energy distance does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from ilvm_rl.exploration.bonus import ObservationNormaliser
from ilvm_rl.exploration.spaces import ActionEncoder, check_observation_space
from ilvm_rl.exploration.store import SegmentBatch, TransitionBatch, TransitionStore
from ilvm_rl.model.dynamics import DeterministicDynamics, GaussianDynamics
from ilvm_rl.model.ilvm import ILVM, ModelConfig, ModelLoss, energy_score

# the trajectory ILVM: energy-trained (strictly proper, so its samples must spread over every branch)
TRAJECTORY_MODEL = ModelConfig(objectives=("energy",), latent_dim=8, hidden_sizes=(128, 128), n_samples=8)


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


@dataclass
class TrajectoryEncoding:
    """Turns segments into model inputs: context ``(n, obs_dim + H·action_dim)`` and target
    ``(n, H·obs_dim)``, the normalised future minus the normalised ``s_t``."""

    normaliser: ObservationNormaliser
    actions: ActionEncoder

    def __call__(self, segments: SegmentBatch) -> tuple[torch.Tensor, torch.Tensor]:
        n, horizon, _ = segments.actions.shape
        start = self.normaliser(segments.obs)
        future = self.normaliser(segments.next_obs.reshape(n * horizon, -1)).reshape(n, horizon, -1)
        encoded = self.actions.encode(segments.actions.reshape(n * horizon, -1)).reshape(n, -1)
        context = np.concatenate([start, encoded], axis=1)
        target = (future - start[:, None, :]).reshape(n, -1)
        return torch.as_tensor(context, dtype=torch.float32), torch.as_tensor(target, dtype=torch.float32)


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


def fit(model: DynamicsModel, store: TransitionStore, encoding: TrajectoryEncoding, options: dict[str, Any]) -> float:
    """Adam on random segments for ``options['fit_steps']`` steps; returns the wall time in seconds."""
    assert isinstance(model, torch.nn.Module)
    optimiser = torch.optim.Adam(model.parameters(), lr=options["learning_rate"])
    rng = np.random.default_rng(options["seed"])
    start = time.perf_counter()
    for _ in range(options["fit_steps"]):
        segments = store.sample_segments(options["batch_size"], options["horizon"], options["n_envs"], rng)
        loss = model.loss(*encoding(segments)).model
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return time.perf_counter() - start


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
    if horizon < 1 or samples < 2 or fit_steps < 1 or steps < n_envs * (horizon + 1):
        raise ValueError("need horizon >= 1, samples >= 2, fit_steps >= 1 and steps >= n_envs * (horizon + 1)")
    torch.set_num_threads(1)  # small networks: threads cost more than they give
    torch.manual_seed(seed)
    train_store, observation_space, action_space = collect(env_id, steps, n_envs, seed)
    test_store, _, _ = collect(env_id, steps, n_envs, seed + 1_000)
    normaliser = ObservationNormaliser(observation_space)
    normaliser.update(train_store.state()["next_obs"])
    encoding = TrajectoryEncoding(normaliser, ActionEncoder(action_space))
    held_out = encoding(test_store.sample_segments(eval_segments, horizon, n_envs, np.random.default_rng(seed)))
    context_dim, target_dim = held_out[0].shape[1], held_out[1].shape[1]
    models: dict[str, DynamicsModel] = {
        "ilvm": ILVM(context_dim, target_dim, TRAJECTORY_MODEL),
        "deterministic": DeterministicDynamics(context_dim, target_dim, TRAJECTORY_MODEL.hidden_sizes),
        "gaussian": GaussianDynamics(context_dim, target_dim, TRAJECTORY_MODEL.hidden_sizes),
    }
    options = {
        "fit_steps": fit_steps,
        "batch_size": batch_size,
        "horizon": horizon,
        "n_envs": n_envs,
        "learning_rate": learning_rate,
        "seed": seed,
    }
    rows = []
    for name, model in models.items():
        fit_time = fit(model, train_store, encoding, options)
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
