"""Stable-Baselines3 glue for on-policy algorithms (PPO, A2C): the intrinsic bonus as a callback.

Why a callback at rollout end: SB3 computes returns and GAE before ``_on_rollout_end`` runs, so a
bonus added there would be ignored. This callback adds the bonus of the whole rollout to the rollout
buffer's rewards and then recomputes GAE with the same last values and dones SB3 used, so the bonus
is discounted and propagated exactly like the extrinsic reward. Scoring once per rollout is one
batched forward pass instead of one per step, which keeps the agent fast. The rewards it adds to
already include SB3's timeout bootstrap ``γ·V(terminal obs)``, which stays correct.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from ilvm_rl.checkpoint import load_explorer, save_explorer
from ilvm_rl.exploration.explorer import ExplorationConfig, Explorer
from ilvm_rl.exploration.spaces import Observation


def real_next_obs(new_obs: Observation, dones: np.ndarray, infos: list[dict[str, Any]]) -> Observation:
    """The observations the steps led to (arrays, or dicts of arrays for a Dict space): at episode ends
    the vec env has already reset, so the true next observation is ``infos[i]["terminal_observation"]``."""
    parts = new_obs if isinstance(new_obs, dict) else {"": new_obs}
    next_parts = {key: np.array(value, copy=True) for key, value in parts.items()}
    for index in np.flatnonzero(dones):
        terminal = infos[index].get("terminal_observation")
        if terminal is not None:
            for key, value in next_parts.items():
                value[index] = terminal[key] if isinstance(new_obs, dict) else terminal
    return next_parts if isinstance(new_obs, dict) else next_parts[""]


def step_transitions(callback: BaseCallback) -> dict[str, Any]:
    """The step an on-policy algorithm has just taken in every env, read from a callback's locals in
    ``_on_step``: ``obs`` (the observations the actions were taken in), ``actions``, ``next_obs`` (the
    terminal observations at episode ends), ``terminated`` and ``truncated`` ``(n_envs,)``."""
    dones = callback.locals["dones"]
    infos = callback.locals["infos"]
    truncated = np.array([bool(info.get("TimeLimit.truncated", False)) for info in infos])
    return {
        "obs": callback.model._last_obs,
        "actions": callback.locals["actions"],
        "next_obs": real_next_obs(callback.locals["new_obs"], dones, infos),
        "terminated": dones & ~truncated,
        "truncated": dones & truncated,
    }


class ExplorationCallback(BaseCallback):
    """Adds an intrinsic bonus to PPO/A2C rewards and trains the exploration model every rollout.

    Usage::

        model = PPO("MlpPolicy", env)
        model.learn(300_000, callback=ExplorationCallback(ExplorationConfig(score="excess_error")))

    Args:
        config: exploration settings; ignored when ``explorer`` is given.
        explorer: a ready module (e.g. from :func:`ilvm_rl.checkpoint.load_explorer`).
        seed: seeds the module built from ``config``.
        checkpoint_dir: if set, :meth:`save` writes the module here.
        verbose: SB3 verbosity.
    """

    def __init__(
        self,
        config: ExplorationConfig | None = None,
        explorer: Explorer | None = None,
        seed: int = 0,
        checkpoint_dir: str | Path | None = None,
        verbose: int = 0,
    ):
        super().__init__(verbose)
        self.config = explorer.config if explorer is not None else (config or ExplorationConfig())
        self.explorer = explorer
        self.seed = seed
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None

    def _init_callback(self) -> None:
        if not isinstance(self.model, OnPolicyAlgorithm):
            raise TypeError(
                f"ExplorationCallback supports on-policy algorithms (PPO, A2C), got {type(self.model).__name__}"
            )
        env = self.training_env
        if self.explorer is None:
            self.explorer = Explorer(self.config, env.observation_space, env.action_space, env.num_envs, self.seed)
        elif self.explorer.n_envs != env.num_envs:
            raise ValueError(
                f"the exploration module was built for {self.explorer.n_envs} envs, the agent has {env.num_envs}"
            )
        if self.config.store_capacity < self.model.n_steps * env.num_envs:
            raise ValueError(
                f"exploration store_capacity={self.config.store_capacity} is smaller than one rollout "
                f"(n_steps × n_envs = {self.model.n_steps * env.num_envs})"
            )

    def _on_rollout_start(self) -> None:
        self.ext_returns: list[float] = []

    def _on_step(self) -> bool:
        assert self.explorer is not None
        infos = self.locals["infos"]
        self.ext_returns.extend(float(info["episode"]["r"]) for info in infos if "episode" in info)
        self.explorer.observe(**step_transitions(self))
        return True

    def _on_rollout_end(self) -> None:
        assert self.explorer is not None
        buffer: RolloutBuffer = self.locals["rollout_buffer"]
        progress = 1.0 - self.model._current_progress_remaining
        bonus, metrics = self.explorer.rollout_bonus(progress)
        add_bonus_and_recompute(buffer, bonus, self.locals["values"], self.locals["dones"])
        metrics.update(self.explorer.update(recent=bonus.size))
        if self.ext_returns:  # beside int_return_mean, from the same rollout
            metrics["ext_return_mean"] = float(np.mean(self.ext_returns))
        for name, value in metrics.items():
            self.logger.record(f"ilvm/{name}", value)

    def save(self, folder: str | Path | None = None) -> Path:
        """Write the module's checkpoint (to ``checkpoint_dir`` unless ``folder`` is given)."""
        target = folder or self.checkpoint_dir
        if target is None or self.explorer is None:
            raise ValueError("nothing to save: no folder given, or the callback has not been initialised by learn()")
        return save_explorer(self.explorer, target)


def add_bonus_and_recompute(buffer: RolloutBuffer, bonus: np.ndarray, last_values: Any, dones: np.ndarray) -> None:
    """Add ``bonus`` ``(n_steps, n_envs)`` to the buffer's rewards and recompute returns and GAE."""
    buffer.rewards += bonus.astype(buffer.rewards.dtype)
    buffer.compute_returns_and_advantage(last_values=last_values, dones=dones)


def with_exploration(
    model: BaseAlgorithm,
    config: ExplorationConfig | None = None,
    checkpoint: str | Path | None = None,
    seed: int = 0,
) -> ExplorationCallback:
    """The callback for ``model``: a new module from ``config``, or one loaded from ``checkpoint``
    (checked against the model's spaces)."""
    if checkpoint is None:
        return ExplorationCallback(config, seed=seed)
    env = model.get_env()
    assert env is not None, "the model needs an environment to load a checkpoint for"
    explorer = load_explorer(checkpoint, env.observation_space, env.action_space, env.num_envs, seed)
    return ExplorationCallback(explorer=explorer, seed=seed)
