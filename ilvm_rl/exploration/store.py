"""A bounded replay of transitions, fed every environment step, that the exploration models learn from.

PPO's rollout buffer is emptied every iteration, while novelty is relative to all of history, so the
exploration module keeps its own. Memory is fixed at construction: a ring of ``capacity`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TransitionBatch:
    """A batch of ``n`` transitions (raw, unnormalised).

    Attributes:
        obs: observations ``(n, obs_dim)``.
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


FIELDS = ("obs", "actions", "next_obs", "terminated", "truncated")


class TransitionStore:
    """Ring buffer of the most recent ``capacity`` transitions.

    Args:
        capacity: maximum number of transitions kept; the oldest are overwritten.
        obs_dim: width of an observation.
        action_dim: width of a stored action.
    """

    def __init__(self, capacity: int, obs_dim: int, action_dim: int):
        if capacity < 1:
            raise ValueError(f"store capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.arrays = {
            "obs": np.zeros((capacity, obs_dim), dtype=np.float32),
            "actions": np.zeros((capacity, action_dim), dtype=np.float32),
            "next_obs": np.zeros((capacity, obs_dim), dtype=np.float32),
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

    def state(self) -> dict[str, np.ndarray]:
        """Arrays that restore the store through :meth:`load_state` (only the filled rows)."""
        order = (self.position - self.size + np.arange(self.size)) % self.capacity
        return {name: self.arrays[name][order] for name in FIELDS}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.position = self.size = 0
        kept = {name: state[name][-self.capacity :] for name in FIELDS}
        self.add(TransitionBatch(**kept))
