"""A bounded replay of transitions, fed every environment step, that the modules' models learn from.

PPO's rollout buffer is emptied every iteration, while novelty is relative to all of history, so the
exploration module keeps its own replay; the representation module's online training and its
pretraining, and the world model's benchmark, keep one too. Memory is fixed at construction: a ring of
``capacity`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TransitionBatch:
    """A batch of ``n`` transitions (raw, unnormalised).

    Attributes:
        obs: observations ``(n, obs_dim)``, flat (see :class:`ilvm_rl.data.spaces.ObservationFlattener`).
        actions: actions as stored by :class:`ActionEncoder.raw`, ``(n, action_dim)``.
        next_obs: the real next observations ``(n, obs_dim)`` (terminal ones at episode ends).
        terminated: ``(n,)`` bool, the episode ended in a terminal state.
        truncated: ``(n,)`` bool, the episode was cut by a time limit.
    """

    obs: np.ndarray
    actions: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray

    def __len__(self) -> int:
        return len(self.obs)

    def finite_rows(self) -> np.ndarray:
        """``(n,)`` mask of the transitions whose observations and actions are all finite."""
        return (
            np.isfinite(self.obs).all(axis=1)
            & np.isfinite(self.next_obs).all(axis=1)
            & np.isfinite(self.actions).all(axis=1)
        )

    def select(self, rows: np.ndarray) -> TransitionBatch:
        """The transitions at ``rows`` (a mask or indices)."""
        return TransitionBatch(
            self.obs[rows], self.actions[rows], self.next_obs[rows], self.terminated[rows], self.truncated[rows]
        )

    def state_change(self) -> np.ndarray:
        """``next_obs − obs`` ``(n, obs_dim)`` in float32 (images are stored as uint8, where 0 − 255 wraps to 1)."""
        return self.next_obs.astype(np.float32) - self.obs.astype(np.float32)


FIELDS = ("obs", "actions", "next_obs", "terminated", "truncated")


@dataclass(frozen=True)
class SegmentBatch:
    """``n`` segments of ``horizon`` consecutive steps of one environment within one episode.

    Attributes:
        obs: the first observation ``s_t`` of each segment, ``(n, obs_dim)``.
        actions: ``a_t … a_{t+H-1}``, ``(n, horizon, action_dim)``.
        next_obs: ``s_{t+1} … s_{t+H}``, ``(n, horizon, obs_dim)``.
    """

    obs: np.ndarray
    actions: np.ndarray
    next_obs: np.ndarray

    def __len__(self) -> int:
        return len(self.obs)


class TransitionStore:
    """Ring buffer of the most recent ``capacity`` transitions.

    Args:
        capacity: maximum number of transitions kept; the oldest are overwritten.
        obs_dim: width of an observation.
        action_dim: width of a stored action.
        obs_dtype: dtype of the stored observations (uint8 keeps a replay of images four times
            smaller than float32).
    """

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, obs_dtype: np.dtype | type = np.float32):
        if capacity < 1:
            raise ValueError(f"store capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.arrays = {
            "obs": np.zeros((capacity, obs_dim), dtype=obs_dtype),
            "actions": np.zeros((capacity, action_dim), dtype=np.float32),
            "next_obs": np.zeros((capacity, obs_dim), dtype=obs_dtype),
            "terminated": np.zeros(capacity, dtype=bool),
            "truncated": np.zeros(capacity, dtype=bool),
        }
        self.position = 0  # next row to write
        self.size = 0

    def add(self, batch: TransitionBatch) -> None:
        """Append transitions in order (one row per parallel environment, say)."""
        n = len(batch)
        rows = (self.position + np.arange(n)) % self.capacity
        for name in FIELDS:
            self.arrays[name][rows] = getattr(batch, name)
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def _take(self, rows: np.ndarray) -> TransitionBatch:
        return TransitionBatch(**{name: self.arrays[name][rows] for name in FIELDS})

    def latest(self, n: int) -> TransitionBatch:
        """The last ``n`` transitions added, oldest first."""
        if n > self.size:
            raise ValueError(f"asked for the latest {n} transitions, the store holds {self.size}")
        return self._take((self.position - n + np.arange(n)) % self.capacity)

    def sample(
        self, n: int, rng: np.random.Generator, recent: int = 0, recent_fraction: float = 0.0
    ) -> TransitionBatch:
        """Draw ``n`` transitions with replacement: a share ``recent_fraction`` of them from the
        ``recent`` latest rows, the rest uniformly from the whole store."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty store")
        n_recent = round(n * recent_fraction) if recent > 0 else 0
        recent = min(recent, self.size)
        recent_rows = (self.position - 1 - rng.integers(0, recent, size=n_recent)) % self.capacity
        # rows 0..size-1 hold data both before and after the ring wraps
        old_rows = rng.integers(0, self.size, size=n - n_recent)
        return self._take(np.concatenate([recent_rows, old_rows]))

    def _oldest_first(self) -> np.ndarray:
        """Row indices of the stored transitions, oldest first."""
        return (self.position - self.size + np.arange(self.size)) % self.capacity

    def segment_starts(self, horizon: int, stride: int) -> np.ndarray:
        """Positions (in oldest-first order) where a segment of ``horizon`` steps may start.

        ``stride`` is the number of parallel environments: rows are added one per environment per
        step, so one environment's consecutive steps lie ``stride`` rows apart. A segment may end an
        episode at its last step, never before it.
        """
        if horizon < 1 or stride < 1:
            raise ValueError(f"horizon and stride must be >= 1, got {horizon}, {stride}")
        ends = (self.arrays["terminated"] | self.arrays["truncated"])[self._oldest_first()]
        count = self.size - (horizon - 1) * stride
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        valid = np.ones(count, dtype=bool)
        for step in range(horizon - 1):
            valid &= ~ends[step * stride : step * stride + count]
        return np.flatnonzero(valid)

    def sample_segments(self, n: int, horizon: int, stride: int, rng: np.random.Generator) -> SegmentBatch:
        """Draw ``n`` segments uniformly (with replacement) among those that cross no episode end.

        Raises:
            ValueError: the store holds no such segment yet.
        """
        starts = self.segment_starts(horizon, stride)
        if not len(starts):
            raise ValueError(f"the store holds no segment of {horizon} steps within one episode yet")
        chosen = rng.choice(starts, size=n)
        rows = self._oldest_first()[chosen[:, None] + stride * np.arange(horizon)]  # (n, horizon)
        return SegmentBatch(self.arrays["obs"][rows[:, 0]], self.arrays["actions"][rows], self.arrays["next_obs"][rows])

    def state(self) -> dict[str, np.ndarray]:
        """Arrays that restore the store through :meth:`load_state` (only the filled rows)."""
        return {name: self.arrays[name][self._oldest_first()] for name in FIELDS}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.position = self.size = 0
        kept = {name: state[name][-self.capacity :] for name in FIELDS}
        self.add(TransitionBatch(**kept))
