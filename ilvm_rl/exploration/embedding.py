"""A fixed random embedding of observations: a compact space, of a size the observation does not set,
in which the disagreement bonuses score transitions.

Scored per raw observation dimension, a disagreement's cost grows with the observation's width, and so
does its pull toward noise: every noise dimension adds a small term that a finite ensemble never fully
cancels. Mapped into a fixed number of features, a wide screen of noise and a narrow one become the
same number of (noisy) targets. The map is random and frozen, as the targets of RND and the features of
Pathak et al. (2019) are: a learned encoder would move its own targets as it learns, and an encoder
trained to reconstruct the observation spends its capacity on whatever varies most, which on a noisy
TV is the noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from ilvm_rl.data.statistics import ObservationNormaliser, RunningMeanStd
from ilvm_rl.model.networks import mlp

EMBEDDING_CLIP = 5.0
"""Standardised observations and features are clipped to this many standard deviations (RND's recipe):
a dimension that was constant until now (a one-hot cell never seen lit) moves the features by a
bounded amount."""


class RandomEmbedding(nn.Module):
    """``e(x)``: observations standardised per dimension by running statistics, through a frozen random
    MLP, and the features standardised again by running statistics of their own.

    Both standardisations make the features invariant to an affine rescaling of any observation
    dimension (a shift and a positive scale are undone before the random net reads the value) and give
    every feature unit variance over the data seen, so that nothing downstream needs a constant in
    observation units. The random net is part of the module's weights, so a checkpoint restores it.

    Args:
        observation_space: the flat 1-D Box of the stored observations.
        dim: number of features.
        hidden_sizes: hidden widths of the random net.
    """

    def __init__(self, observation_space: spaces.Box, dim: int, hidden_sizes: Sequence[int]):
        super().__init__()
        if dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {dim}")
        self.obs_norm = ObservationNormaliser(observation_space, clip=EMBEDDING_CLIP, always_running=True)
        self.net = mlp(int(observation_space.shape[0]), hidden_sizes, dim)
        self.net.requires_grad_(False)
        self.feature_stats = RunningMeanStd((dim,))
        self.dim = dim

    def update(self, obs: np.ndarray) -> None:
        """Fold observations ``(n, obs_dim)`` into the input statistics, then their features into the
        feature statistics."""
        self.obs_norm.update(obs)
        self.feature_stats.update(self._raw_features(obs).cpu().numpy())

    def _raw_features(self, obs: np.ndarray) -> torch.Tensor:
        device = next(self.net.parameters()).device
        with torch.no_grad():
            return self.net(torch.as_tensor(self.obs_norm(obs), dtype=torch.float32, device=device))

    def forward(self, obs: np.ndarray) -> torch.Tensor:
        """Features ``(n, dim)`` of observations ``(n, obs_dim)``, standardised and clipped; no gradient."""
        features = self._raw_features(obs)
        mean = torch.as_tensor(self.feature_stats.mean, dtype=features.dtype, device=features.device)
        std = torch.as_tensor(self.feature_stats.std, dtype=features.dtype, device=features.device)
        return ((features - mean) / std).clamp(-EMBEDDING_CLIP, EMBEDDING_CLIP)

    def statistics(self, prefix: str) -> dict[str, RunningMeanStd]:
        """The running statistics by name, for checkpoints."""
        return {f"{prefix}_obs": self.obs_norm.stats, f"{prefix}_features": self.feature_stats}
