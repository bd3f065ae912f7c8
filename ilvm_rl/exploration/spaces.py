"""Turning Gymnasium observations and actions into the flat float vectors the models read."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

# a Box whose bounds are finite and no wider than this is scaled to [-1, 1] by its bounds;
# wider or unbounded ones are standardised with running statistics instead
MAX_FIXED_SCALE_SPAN = 1e4


class UnsupportedSpaceError(ValueError):
    """An observation or action space the exploration models cannot read."""


def check_observation_space(space: spaces.Space) -> spaces.Box:
    """Return ``space`` if it is a flat (1-D) float or int Box, else raise naming what is accepted."""
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise UnsupportedSpaceError(
            f"observation space {space} is not supported by the exploration models: they accept a "
            f"1-D Box (a flat vector of numbers); flatten other spaces with "
            f"gymnasium.wrappers.FlattenObservation"
        )
    return space


def has_fixed_scale(space: spaces.Box) -> bool:
    """True when the Box bounds are finite and narrow enough to scale observations by them."""
    span = space.high.astype(np.float64) - space.low.astype(np.float64)
    return bool(np.all(np.isfinite(span)) and np.all(span > 0) and np.all(span <= MAX_FIXED_SCALE_SPAN))


def fixed_scale(space: spaces.Box) -> tuple[np.ndarray, np.ndarray]:
    """Centre and half-width of a bounded Box, so ``(obs - centre) / half_width`` lies in [-1, 1]."""
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    return ((high + low) / 2).astype(np.float32), ((high - low) / 2).astype(np.float32)


class ActionEncoder:
    """Encodes actions as float vectors: one-hot for Discrete and MultiDiscrete, scaled Box.

    Args:
        space: the environment's action space.
    """

    def __init__(self, space: spaces.Space):
        self.space = space
        if isinstance(space, spaces.Discrete):
            self.sizes = [int(space.n)]
            self.starts = [int(space.start)]
            self.dim = int(space.n)
            self.raw_dim = 1
        elif isinstance(space, spaces.MultiDiscrete) and space.nvec.ndim == 1:
            self.sizes = [int(n) for n in space.nvec]
            self.starts = [int(s) for s in space.start]
            self.dim = int(space.nvec.sum())
            self.raw_dim = len(self.sizes)
        elif isinstance(space, spaces.Box) and len(space.shape) == 1:
            self.dim = self.raw_dim = int(space.shape[0])
            self.bounded = has_fixed_scale(space)
            if self.bounded:
                self.centre, self.half_width = fixed_scale(space)
        else:
            raise UnsupportedSpaceError(
                f"action space {space} is not supported by the exploration models: they accept "
                f"Discrete, 1-D MultiDiscrete and 1-D Box action spaces"
            )

    def raw(self, actions: Any, n: int) -> np.ndarray:
        """Actions as the agent produced them (any shape holding ``n`` actions) to ``(n, raw_dim)`` floats."""
        return np.asarray(actions, dtype=np.float32).reshape(n, self.raw_dim)

    def encode(self, raw: np.ndarray) -> np.ndarray:
        """``(n, raw_dim)`` stored actions to ``(n, dim)`` model inputs."""
        if isinstance(self.space, spaces.Box):
            if not self.bounded:
                return raw
            return np.clip((raw - self.centre) / self.half_width, -1.0, 1.0)
        pieces = []
        for column, (size, start) in enumerate(zip(self.sizes, self.starts, strict=True)):
            index = np.clip(raw[:, column].astype(np.int64) - start, 0, size - 1)
            pieces.append(np.eye(size, dtype=np.float32)[index])
        return np.concatenate(pieces, axis=1)
