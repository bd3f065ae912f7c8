"""Running statistics: input standardisation and the RND recipe for scaling intrinsic rewards."""

from __future__ import annotations

import numpy as np


class RunningMeanStd:
    """Per-feature running mean and variance (parallel Welford update), in float64.

    Args:
        shape: feature shape; ``()`` for a scalar statistic.
        memory: if set, the count is capped at this many samples, so older data fades out
            exponentially instead of weighing forever.
    """

    def __init__(self, shape: tuple[int, ...] = (), memory: int | None = None):
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = 0.0
        self.memory = memory

    def update(self, batch: np.ndarray) -> None:
        """Fold in a batch of shape ``(n, *shape)``; non-finite rows are ignored."""
        batch = np.asarray(batch, dtype=np.float64).reshape(-1, *self.mean.shape)
        batch = batch[np.isfinite(batch).reshape(len(batch), -1).all(axis=1)]
        if len(batch) == 0:
            return
        batch_mean, batch_var, n = batch.mean(axis=0), batch.var(axis=0), float(len(batch))
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total if self.memory is None else min(total, float(self.memory))

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var + 1e-8)

    def state(self) -> dict[str, np.ndarray]:
        """Arrays that restore this object through :meth:`load_state`."""
        return {"mean": self.mean, "var": self.var, "count": np.array(self.count)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        shape = self.mean.shape  # safetensors keeps no 0-d arrays, so restore the shape
        self.mean = np.asarray(state["mean"], dtype=np.float64).reshape(shape)
        self.var = np.asarray(state["var"], dtype=np.float64).reshape(shape)
        self.count = float(np.asarray(state["count"]).reshape(-1)[0])


class ReturnScaler:
    """Divides intrinsic rewards by a running std of their discounted returns (the RND recipe).

    One discounted return is kept per environment and never reset at episode ends, since novelty
    does not stop when an episode does; only its spread is used, so the sign of a reward is kept.
    The statistics have a finite memory: a model's first errors are orders of magnitude larger than
    its later ones, and a std that remembered them forever would shrink the bonus to nothing.

    Args:
        n_envs: number of parallel environments.
        gamma: discount of the intrinsic return.
        memory: returns remembered by the running std (older ones fade out).
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
