"""Turning Gymnasium observations and actions into the flat vectors the models read."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from ilvm_rl.data.replay import TransitionBatch, TransitionStore
from ilvm_rl.model.observations import ObservationLayout, ObservationPart

# a Box whose bounds are finite and no wider than this is scaled to [-1, 1] by its bounds;
# wider or unbounded ones are standardised with running statistics instead
MAX_FIXED_SCALE_SPAN = 1e4


class UnsupportedSpaceError(ValueError):
    """An observation or action space the models cannot read."""


def check_observation_space(space: spaces.Space) -> spaces.Box:
    """Return ``space`` if it is a flat (1-D) float or int Box, else raise naming what is accepted."""
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise UnsupportedSpaceError(
            f"observation space {space} is not supported by the world model: it reads a 1-D Box (a flat "
            f"vector of numbers); register a flattened version of the env (gymnasium.wrappers.FlattenObservation) "
            f"in a module of yours and pass its id as module:Name-v0"
        )
    return space


def channels_last(shape: tuple[int, ...]) -> bool:
    """Whether an image of ``shape`` keeps its channels on the last axis. SB3's rule: the channel axis
    is the smallest one, and an image whose first axis is not the smallest counts as channel-last."""
    return int(np.argmin(shape)) != 0


Observation = np.ndarray | dict[str, np.ndarray]
TensorObservation = torch.Tensor | dict[str, torch.Tensor]


class ObservationFlattener:
    """Lays a Box observation (a vector or an image) or a Dict of them out as one flat vector.

    An image is a 3-D Box; it is laid out channel-first whichever order the space uses (see
    :func:`channels_last`). The parts of a Dict are laid end to end in the space's key order.

    Args:
        space: a 1-D Box, a 3-D Box (image), or a Dict whose values are such Boxes.

    Attributes:
        layout: the parts of the flat vector, for the models' image encoders and decoders.
        flat_space: a 1-D Box of the flat vector: the bounds of every value, and the dtype that holds
            every part (uint8 when all parts are uint8 images, so a replay of images stays small).
    """

    def __init__(self, space: spaces.Space):
        self.space = space
        named = isinstance(space, spaces.Dict)
        items = list(space.spaces.items()) if isinstance(space, spaces.Dict) else [("", space)]
        parts, lows, highs, dtypes = [], [], [], []
        self.channels_last: list[bool] = []
        for name, part in items:
            if not isinstance(part, spaces.Box) or len(part.shape) not in (1, 3):
                where = f"part {name!r} of the Dict observation space" if named else "observation space"
                raise UnsupportedSpaceError(
                    f"{where} {part} is not supported by the ILVM models: they accept a 1-D Box (a vector), "
                    f"a 3-D Box (an image, channels first or last) and a Dict of those"
                )
            last = len(part.shape) == 3 and channels_last(part.shape)
            low, high = part.low, part.high
            if last:  # bounds in the channel-first order of the flat vector
                low, high = np.moveaxis(low, -1, 0), np.moveaxis(high, -1, 0)
            shape = low.shape
            parts.append(ObservationPart(name, tuple(int(n) for n in shape)))
            lows.append(low.reshape(-1))
            highs.append(high.reshape(-1))
            dtypes.append(part.dtype)
            self.channels_last.append(last)
        self.layout = ObservationLayout(tuple(parts))
        self.names = [name for name, _ in items]
        dtype = np.uint8 if all(d == np.uint8 for d in dtypes) else np.float32
        self.flat_space = spaces.Box(np.concatenate(lows), np.concatenate(highs), dtype=dtype)

    def flatten(self, obs: Observation, n: int) -> np.ndarray:
        """``n`` observations (an array, or a dict of arrays for a Dict space) to ``(n, dim)``."""
        pieces = []
        for name, part, last in zip(self.names, self.layout.parts, self.channels_last, strict=True):
            value = np.asarray(obs[name] if isinstance(obs, dict) else obs)
            if last:
                value = np.moveaxis(value.reshape(n, *part.shape[1:], part.shape[0]), -1, 1)
            pieces.append(value.reshape(n, part.size))
        return np.concatenate(pieces, axis=1).astype(self.flat_space.dtype, copy=False)

    def flatten_tensor(self, obs: TensorObservation) -> torch.Tensor:
        """The same as :meth:`flatten` for a batch of tensors ``(B, ...)`` (what SB3 hands a policy)."""
        pieces = []
        for name, part, last in zip(self.names, self.layout.parts, self.channels_last, strict=True):
            value = obs[name] if isinstance(obs, dict) else obs
            if last:
                value = value.movedim(-1, 1)
            pieces.append(value.reshape(value.shape[0], part.size))
        return torch.cat(pieces, dim=1)


def bounded_values(space: spaces.Box) -> np.ndarray:
    """Mask, in the shape of the Box, of the values whose bounds are finite and narrow enough to scale
    them by (:data:`MAX_FIXED_SCALE_SPAN`)."""
    span = space.high.astype(np.float64) - space.low.astype(np.float64)
    return np.isfinite(span) & (span > 0) & (span <= MAX_FIXED_SCALE_SPAN)


def has_fixed_scale(space: spaces.Box) -> bool:
    """True when the Box bounds are finite and narrow enough to scale observations by them."""
    return bool(np.all(bounded_values(space)))


def fixed_scale(space: spaces.Box) -> tuple[np.ndarray, np.ndarray]:
    """Centre and half-width of the bounded values of a Box (:func:`bounded_values`), so that
    ``(obs - centre) / half_width`` lies in [-1, 1] there; 0 and 1 for the other values."""
    bounded = bounded_values(space)
    low = np.where(bounded, space.low.astype(np.float64), -1.0)
    high = np.where(bounded, space.high.astype(np.float64), 1.0)
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


class TransitionCodec:
    """How a module stores the steps of its environments: observations as flat vectors, actions as
    the agent produced them. A module builds one and hands it to each of its models, so that they
    all read the replay the same way.

    Args:
        observation_space: a 1-D Box, a 3-D Box (image) or a Dict of those (:class:`ObservationFlattener`).
        action_space: Discrete, 1-D MultiDiscrete or 1-D Box (:class:`ActionEncoder`).

    Attributes:
        observations: the flattener of the observations.
        actions: the encoder of the actions.
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        self.observations = ObservationFlattener(observation_space)
        self.actions = ActionEncoder(action_space)

    def batch(
        self,
        obs: Observation,
        actions: Any,
        next_obs: Observation,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> TransitionBatch:
        """One step of ``n`` parallel environments as a batch of ``n`` flat transitions.

        Args:
            obs: the observations the actions were taken in, as the vec env gives them.
            actions: the actions as the agent produced them (any shape holding ``n`` actions).
            next_obs: the observations the steps led to (terminal ones at episode ends).
            terminated: ``(n,)`` bool.
            truncated: ``(n,)`` bool.
        """
        n = len(terminated)
        return TransitionBatch(
            obs=self.observations.flatten(obs, n),
            actions=self.actions.raw(actions, n),
            next_obs=self.observations.flatten(next_obs, n),
            terminated=np.asarray(terminated, dtype=bool),
            truncated=np.asarray(truncated, dtype=bool),
        )

    def store(self, capacity: int) -> TransitionStore:
        """An empty replay of ``capacity`` transitions of these spaces."""
        flat = self.observations.flat_space
        return TransitionStore(capacity, self.observations.layout.dim, self.actions.raw_dim, flat.dtype)
