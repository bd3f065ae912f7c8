"""Running statistics (one class for every module) and the input scaling built on them."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from ilvm_rl.data.spaces import fixed_scale, has_fixed_scale


def _combine(
    mean: np.ndarray, var: np.ndarray, count: float, batch_mean: np.ndarray, batch_var: np.ndarray, n: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean, variance and count of two samples from theirs (the parallel Welford formula)."""
    total = count + n
    delta = batch_mean - mean
    return mean + delta * n / total, (var * count + batch_var * n + delta**2 * count * n / total) / total, total


class RunningMeanStd:
    """Per-feature running mean and variance, in float64.

    Args:
        shape: feature shape; ``()`` for a scalar statistic.
        memory: if set, the statistics cover only the latest batches that hold at most this many
            samples (at least the latest batch); older batches drop out entirely. A statistic that
            faded old data out gradually instead would stay dominated for a long time by an untrained
            model's first scores, which are orders of magnitude larger than its later ones.
    """

    def __init__(self, shape: tuple[int, ...] = (), memory: int | None = None):
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = 0.0
        self.memory = memory
        # (mean, var, count) of each batch still in memory, oldest first
        self.window: list[tuple[np.ndarray, np.ndarray, float]] = []

    def update(self, batch: np.ndarray) -> None:
        """Fold in a batch of shape ``(n, *shape)``; non-finite rows are ignored."""
        batch = np.asarray(batch, dtype=np.float64).reshape(-1, *self.mean.shape)
        batch = batch[np.isfinite(batch).reshape(len(batch), -1).all(axis=1)]
        if len(batch) == 0:
            return
        summary = (batch.mean(axis=0), batch.var(axis=0), float(len(batch)))
        if self.memory is None:
            self.mean, self.var, self.count = _combine(self.mean, self.var, self.count, *summary)
            return
        self.window.append(summary)
        while len(self.window) > 1 and sum(n for _, _, n in self.window[1:]) >= self.memory:
            self.window.pop(0)
        self.mean, self.var, self.count = self.window[0]
        for later in self.window[1:]:
            self.mean, self.var, self.count = _combine(self.mean, self.var, self.count, *later)

    def stop_forgetting(self) -> None:
        """Cover every sample from now on: the batches in memory so far and all later ones."""
        self.memory, self.window = None, []

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var + 1e-8)

    def state(self) -> dict[str, np.ndarray]:
        """Arrays that restore this object through :meth:`load_state`."""
        state = {"mean": self.mean, "var": self.var, "count": np.array(self.count)}
        if self.window:
            state["window.mean"] = np.stack([mean for mean, _, _ in self.window])
            state["window.var"] = np.stack([var for _, var, _ in self.window])
            state["window.count"] = np.array([n for _, _, n in self.window])
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        shape = self.mean.shape  # safetensors keeps no 0-d arrays, so restore the shape
        self.mean = np.asarray(state["mean"], dtype=np.float64).reshape(shape)
        self.var = np.asarray(state["var"], dtype=np.float64).reshape(shape)
        self.count = float(np.asarray(state["count"]).reshape(-1)[0])
        self.window = []
        if "window.count" in state:
            means = np.asarray(state["window.mean"], dtype=np.float64).reshape(-1, *shape)
            variances = np.asarray(state["window.var"], dtype=np.float64).reshape(-1, *shape)
            counts = np.asarray(state["window.count"]).reshape(-1)
            self.window = [(m, v, float(n)) for m, v, n in zip(means, variances, counts, strict=True)]


class ObservationNormaliser:
    """Scales observations to about [-1, 1]: by the Box bounds when they are finite and narrow,
    otherwise by running mean and std (clipped to ±``clip`` standard deviations).

    Args:
        space: a 1-D Box observation space.
        clip: bound on standardised values (running statistics only).
        always_running: ignore the bounds and always standardise (the RND recipe).
    """

    def __init__(self, space: spaces.Box, clip: float = 5.0, always_running: bool = False):
        self.clip = clip
        self.fixed = has_fixed_scale(space) and not always_running
        if self.fixed:
            self.centre, self.half_width = fixed_scale(space)
        self.stats = RunningMeanStd(space.shape)

    def update(self, obs: np.ndarray) -> None:
        """Fold observations ``(n, dim)`` into the running statistics (a no-op with fixed bounds)."""
        if not self.fixed:
            self.stats.update(obs)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Observations ``(n, dim)`` scaled, ``(n, dim)``."""
        if self.fixed:
            return (obs - self.centre) / self.half_width
        return np.clip((obs - self.stats.mean) / self.stats.std, -self.clip, self.clip).astype(np.float32)

    def inverse(self, scaled: np.ndarray) -> np.ndarray:
        """Scaled values ``(n, dim)`` back in observation units, ``(n, dim)`` float32 (a value that
        :meth:`__call__` clipped comes back at the clip)."""
        if self.fixed:
            return (scaled * self.half_width + self.centre).astype(np.float32)
        return (scaled * self.stats.std + self.stats.mean).astype(np.float32)
