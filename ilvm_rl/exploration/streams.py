"""The intrinsic reward stream: its scale, its value function and its advantages.

The bonus never enters the task's rewards. It forms a second stream, as in the RND paper: its return
is non-episodic (no episode end, terminal or time limit, cuts it, since novelty does not stop when an
episode does), it has its own discount and its own value function ``V_int``, and its advantage is
mixed with the task's only at the end (``ext_coef·A_ext + int_coef·A_int``). A bonus that is positive
at every step then pays nothing extra for keeping an episode alive, so a goal that ends the episode
is not a reason to stay away from it.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from ilvm_rl.data.statistics import ObservationNormaliser, RunningMeanStd
from ilvm_rl.model.networks import mlp
from ilvm_rl.model.optim import GuardedAdam, guarded_step

CRITIC_HIDDEN_SIZES = (64, 64)


def non_episodic_gae(
    rewards: np.ndarray, values: np.ndarray, last_values: np.ndarray, gamma: float, gae_lambda: float
) -> np.ndarray:
    """Generalised advantage estimates of a stream that no episode end cuts.

    At an episode end the next value is that of the observation the environment was reset to: the
    stream goes on from there.

    Args:
        rewards: ``(n_steps, n_envs)`` rewards of the stream.
        values: ``(n_steps, n_envs)`` values of the observations the actions were taken in.
        last_values: ``(n_envs,)`` values of the observations after the last step.
        gamma: the stream's discount.
        gae_lambda: GAE's λ.

    Returns:
        Advantages ``(n_steps, n_envs)`` float32.
    """
    advantages = np.zeros(rewards.shape, dtype=np.float64)
    running = np.zeros(rewards.shape[1], dtype=np.float64)
    next_values = np.asarray(last_values, dtype=np.float64)
    for step in reversed(range(len(rewards))):
        delta = rewards[step] + gamma * next_values - values[step]
        running = delta + gamma * gae_lambda * running
        advantages[step] = running
        next_values = values[step]
    return advantages.astype(np.float32)


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


class IntrinsicCritic(torch.nn.Module):
    """``V_int(s)``: a small MLP on the module's flat observations, fitted to intrinsic returns.

    It belongs to the exploration module, not to the policy, so that SB3's algorithms stay as they
    are: their value head keeps predicting the task's return alone.

    Args:
        flat_space: the flat observation space of the module's replay (bounds decide the input scale).
        learning_rate: Adam step size.
        epochs: passes over each rollout per fit.
        batch_size: observations per gradient step.
    """

    def __init__(self, flat_space: spaces.Box, learning_rate: float, epochs: int, batch_size: int):
        super().__init__()
        self.obs_norm = ObservationNormaliser(flat_space)
        self.net = mlp(flat_space.shape[0], CRITIC_HIDDEN_SIZES, 1)
        self.optim = GuardedAdam(list(self.net.parameters()), learning_rate)
        self.epochs, self.batch_size = epochs, batch_size

    def _forward(self, obs: np.ndarray) -> torch.Tensor:
        return self.net(self._tensor(self.obs_norm(obs))).squeeze(-1)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        """``array`` as a float32 tensor on the critic's device."""
        return torch.as_tensor(array, dtype=torch.float32, device=next(self.net.parameters()).device)

    def values(self, obs: np.ndarray) -> np.ndarray:
        """``(n,)`` values of flat observations ``(n, obs_dim)``; non-finite rows get 0."""
        finite = np.isfinite(obs).all(axis=1)
        values = np.zeros(len(obs), dtype=np.float32)
        if finite.any():
            with torch.no_grad():
                values[finite] = self._forward(obs[finite]).cpu().numpy()
        return values

    def fit(self, obs: np.ndarray, returns: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
        """Regress the values of ``obs`` ``(n, obs_dim)`` on ``returns`` ``(n,)``.

        Returns:
            The mean squared error of the steps taken and how many were skipped (non-finite).
        """
        keep = np.isfinite(obs).all(axis=1) & np.isfinite(returns)
        obs, returns = obs[keep], returns[keep]
        self.obs_norm.update(obs)
        losses: list[float] = []
        skipped = 0
        for _ in range(self.epochs):
            order = rng.permutation(len(obs))
            for start in range(0, len(obs), self.batch_size):
                rows = order[start : start + self.batch_size]
                target = self._tensor(returns[rows])
                loss = (self._forward(obs[rows]) - target).pow(2).mean()
                if guarded_step([(loss, self.optim)]):
                    losses.append(float(loss.detach()))
                else:
                    skipped += 1
        metrics = {"int_value_skipped_updates": float(skipped)}
        if losses:
            metrics["loss/int_value"] = float(np.mean(losses))
        return metrics

    def optimisers(self) -> dict[str, GuardedAdam]:
        return {"int_value": self.optim}

    def statistics(self) -> dict[str, RunningMeanStd]:
        return {"obs": self.obs_norm.stats}


def explained_variance(predictions: np.ndarray, targets: np.ndarray) -> float:
    """``1 − Var(targets − predictions) / Var(targets)`` (nan when the targets do not vary)."""
    spread = float(np.var(targets))
    return float("nan") if spread == 0 else 1.0 - float(np.var(targets - predictions)) / spread
