"""Running statistics: input standardisation and the RND recipe for scaling intrinsic rewards."""

from __future__ import annotations

import numpy as np


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


class ReturnScaler:
    """Divides intrinsic rewards by a running std of their discounted returns (the RND recipe).

    One discounted return is kept per environment and never reset at episode ends, since novelty
    does not stop when an episode does; only its spread is used, so the sign of a reward is kept.
    The statistics cover a window of the latest returns: a model's first errors are orders of
    magnitude larger than its later ones, and a std that remembered them would shrink the bonus to
    nothing.

    Args:
        n_envs: number of parallel environments.
        gamma: discount of the intrinsic return.
        memory: returns the running std covers (None: all of them).
    """

    def __init__(self, n_envs: int, gamma: float, memory: int | None = None):
        self.gamma = gamma
        self.returns = np.zeros(n_envs, dtype=np.float64)
        self.stats = RunningMeanStd(memory=memory)

    def scale(self, rewards: np.ndarray) -> np.ndarray:
        """Scale a rollout of rewards ``(n_steps, n_envs)``, updating the statistics with it first."""
        discounted = np.empty_like(rewards, dtype=np.float64)
        for step, reward in enumerate(rewards):
            self.returns = self.returns * self.gamma + reward
            discounted[step] = self.returns
        self.stats.update(discounted.reshape(-1))
        return (rewards / self.stats.std).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {"returns": self.returns, **{f"stats.{k}": v for k, v in self.stats.state().items()}}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.returns = state["returns"].astype(np.float64)
        self.stats.load_state({k.removeprefix("stats."): v for k, v in state.items() if k.startswith("stats.")})
