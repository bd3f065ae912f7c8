"""The world model: an ILVM of short trajectories that samples diverse futures.

The trajectory model is the ILVM with context ``(s_t, a_t … a_{t+H-1})`` and target
``s_{t+1} … s_{t+H}``, each step as its change from ``s_t`` in normalised observation units
(observations scaled to [-1, 1] by the space's bounds, or standardised by running statistics when
unbounded). It learns from segments of a :class:`~ilvm_rl.data.replay.TransitionStore` that never
cross an episode end, and draws ``k`` futures of a start and a plan of actions in one batched call.
Nothing here knows an RL library.

Usage::

    model = TrajectoryModel(env.observation_space, env.action_space, TrajectoryConfig(horizon=3))
    model.update_statistics(store.state()["next_obs"])
    model.fit(store, fit_steps=3_000, batch_size=256, stride=n_envs, rng=np.random.default_rng(0))
    futures = model.sample(obs, plan, k=10)  # (10, n, 3, obs_dim), in observation units
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from ilvm_rl.checkpoint import (
    SETTINGS_FILE,
    CheckpointError,
    check_spaces,
    describe_space,
    read_settings,
    read_tensors,
    write_checkpoint,
)
from ilvm_rl.config import ConfigError, from_dict, to_dict
from ilvm_rl.data.replay import SegmentBatch, TransitionStore
from ilvm_rl.data.spaces import ActionEncoder, check_observation_space
from ilvm_rl.data.statistics import ObservationNormaliser
from ilvm_rl.model.ilvm import ILVM, ModelConfig, ModelLoss
from ilvm_rl.model.optim import ModelOptimisers, average_steps

FORMAT_VERSION = 1
KIND = "trajectory-model checkpoint (TrajectoryModel.save)"
STATS_PREFIX = "obs_stats."


def _energy_model() -> ModelConfig:
    # energy-trained: the energy score is strictly proper, so the samples must spread over every branch
    return ModelConfig(objectives=("energy",), latent_dim=8, hidden_sizes=(128, 128), n_samples=8)


@dataclass(frozen=True)
class TrajectoryConfig:
    """Settings of a :class:`TrajectoryModel`.

    Attributes:
        horizon: H, the steps of each future the model draws.
        learning_rate: Adam step size.
        model: the ILVM; energy-trained by default, so that its samples spread over every outcome.
    """

    horizon: int = 3
    learning_rate: float = 1e-3
    model: ModelConfig = field(default_factory=_energy_model)

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


class TrajectoryModel(nn.Module):
    """``p(s_{t+1} … s_{t+H} | s_t, a_t … a_{t+H-1})`` as an ILVM, read and written in observation units.

    Gradients are not clipped (only non-finite steps are refused): the world-model benchmark's
    numbers were measured so.

    Args:
        observation_space: a 1-D Box.
        action_space: Discrete, 1-D MultiDiscrete or 1-D Box.
        config: horizon, step size and the ILVM's settings.
    """

    def __init__(
        self, observation_space: spaces.Space, action_space: spaces.Space, config: TrajectoryConfig | None = None
    ):
        super().__init__()
        self.config = config or TrajectoryConfig()
        self.observation_space = check_observation_space(observation_space)
        self.action_space = action_space
        self.normaliser = ObservationNormaliser(self.observation_space)
        self.actions = ActionEncoder(action_space)
        self.obs_dim = int(self.observation_space.shape[0])
        horizon = self.config.horizon
        self.model = ILVM(self.obs_dim + horizon * self.actions.dim, horizon * self.obs_dim, self.config.model)
        self.optims = ModelOptimisers(self.model, self.config.learning_rate, max_grad_norm=math.inf)

    def update_statistics(self, observations: np.ndarray) -> None:
        """Fold observations ``(n, obs_dim)`` into the scaling of unbounded values (a no-op when the
        space's bounds scale every value)."""
        self.normaliser.update(observations)

    def _start_and_context(self, obs: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised starts ``(n, obs_dim)`` and contexts ``(n, obs_dim + H·action_dim)`` of starts
        ``(n, obs_dim)`` and raw actions ``(n, H, raw_action_dim)``."""
        n = len(obs)
        start = self.normaliser(obs)
        encoded = self.actions.encode(actions.reshape(n * self.config.horizon, -1)).reshape(n, -1)
        return start, np.concatenate([start, encoded], axis=1)

    def inputs(self, segments: SegmentBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's context ``(n, obs_dim + H·action_dim)`` and target ``(n, H·obs_dim)`` of segments
        of ``H`` steps: the normalised future minus the normalised start."""
        n, horizon, _ = segments.actions.shape
        if horizon != self.config.horizon:
            raise ValueError(f"segments of {horizon} steps, the model's horizon is {self.config.horizon}")
        start, context = self._start_and_context(segments.obs, segments.actions)
        future = self.normaliser(segments.next_obs.reshape(n * horizon, -1)).reshape(n, horizon, -1)
        target = (future - start[:, None, :]).reshape(n, -1)
        return torch.as_tensor(context, dtype=torch.float32), torch.as_tensor(target, dtype=torch.float32)

    def loss(self, segments: SegmentBatch) -> ModelLoss:
        """The ILVM's training losses on segments."""
        return self.model.loss(*self.inputs(segments))

    def train_step(self, segments: SegmentBatch) -> dict[str, float] | None:
        """One gradient step on segments: the losses as floats, or None if a non-finite value skipped it."""
        return self.optims.step(self.loss(segments))

    def fit(
        self, store: TransitionStore, fit_steps: int, batch_size: int, stride: int, rng: np.random.Generator
    ) -> dict[str, float]:
        """``fit_steps`` gradient steps on segments drawn uniformly from ``store``.

        Args:
            stride: the parallel environments that filled the store (one row each per step).
            rng: draws the segments.

        Returns:
            The mean losses (``loss/<name>``) and the count of skipped steps (``skipped_updates``).
        """
        horizon = self.config.horizon
        metrics, skipped = average_steps(
            self.train_step(store.sample_segments(batch_size, horizon, stride, rng)) for _ in range(fit_steps)
        )
        return {**metrics, "skipped_updates": float(skipped)}

    @torch.no_grad()
    def sample(self, obs: np.ndarray, actions: np.ndarray, k: int) -> np.ndarray:
        """Draw ``k`` futures of each start and plan.

        Args:
            obs: starts ``s_t``, ``(n, obs_dim)``.
            actions: plans ``a_t … a_{t+H-1}`` as the agent produces them, ``(n, H)`` or ``(n, H, action_dim)``.
            k: futures per start.

        Returns:
            ``s_{t+1} … s_{t+H}`` of each future, ``(k, n, H, obs_dim)`` float32, in observation units.
        """
        n, horizon = len(obs), self.config.horizon
        plans = np.asarray(actions, dtype=np.float32).reshape(n, horizon, self.actions.raw_dim)
        start, context = self._start_and_context(np.asarray(obs), plans)
        changes = self.model.sample(torch.as_tensor(context, dtype=torch.float32), k).numpy()
        future = start[None, :, None, :] + changes.reshape(k, n, horizon, self.obs_dim)
        return self.normaliser.inverse(future.reshape(-1, self.obs_dim)).reshape(k, n, horizon, self.obs_dim)

    def save(self, folder: str | Path) -> Path:
        """Write the weights, the observation scaling and the settings to ``folder`` (created if needed)."""
        tensors = dict(self.model.state_dict())
        tensors.update(
            {STATS_PREFIX + key: torch.as_tensor(value) for key, value in self.normaliser.stats.state().items()}
        )
        settings = {
            "format_version": FORMAT_VERSION,
            "trajectory": to_dict(self.config),
            "observation_space": describe_space(self.observation_space),
            "action_space": describe_space(self.action_space),
        }
        return write_checkpoint(folder, tensors, settings)

    @classmethod
    def load(cls, folder: str | Path, observation_space: spaces.Space, action_space: spaces.Space) -> TrajectoryModel:
        """The model :meth:`save` wrote to ``folder``, for an environment with the given spaces.

        Raises:
            CheckpointError: a file is missing, the format is unknown, or a space or a tensor differs.
        """
        settings_path = Path(folder) / SETTINGS_FILE
        settings = read_settings(folder, KIND, FORMAT_VERSION)
        check_spaces(folder, settings, observation_space=observation_space, action_space=action_space)
        try:
            config = from_dict(TrajectoryConfig, settings["trajectory"], f"{settings_path}: trajectory")
        except (ConfigError, KeyError) as error:
            raise CheckpointError(f"{settings_path}: {error}") from error
        model = cls(observation_space, action_space, config)
        tensors = read_tensors(folder)
        stats = {k.removeprefix(STATS_PREFIX): v.numpy() for k, v in tensors.items() if k.startswith(STATS_PREFIX)}
        try:
            model.model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(STATS_PREFIX)})
            model.normaliser.stats.load_state(stats)
        except (KeyError, RuntimeError) as error:
            raise CheckpointError(f"{folder}: cannot restore the trajectory model ({error})") from error
        return model
