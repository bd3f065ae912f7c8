"""Stable-Baselines3 glue for on-policy algorithms (PPO, A2C): the intrinsic reward as a second stream.

SB3 computes the task's returns and advantages (GAE, with its timeout bootstrap) before a callback's
``_on_rollout_end`` runs. This callback leaves them as they are: the bonus never enters the rewards.
At rollout end the exploration module scores the rollout in one batched pass and computes the
advantages of the intrinsic stream (non-episodic, its own discount and value function, see
:mod:`ilvm_rl.exploration.streams`); the callback then sets the buffer's advantages to
``ext_coef·A_ext + β·A_int``. The buffer's returns, which train the policy's value head, stay the
task's. Scoring once per rollout instead of once per step keeps the agent fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecNormalize, VecTransposeImage

from ilvm_rl.config import from_dict
from ilvm_rl.data.spaces import Observation
from ilvm_rl.exploration.checkpoint import load_explorer, save_explorer
from ilvm_rl.exploration.explorer import ExplorationConfig, Explorer


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


def transition(
    obs: Observation, actions: np.ndarray, new_obs: Observation, dones: np.ndarray, infos: list[dict[str, Any]]
) -> dict[str, Any]:
    """One step of every env as the exploration and representation modules record it: ``obs`` (the
    observations the actions were taken in), ``actions``, ``next_obs`` (the terminal observations at
    episode ends), ``terminated`` and ``truncated`` ``(n_envs,)``."""
    truncated = np.array([bool(info.get("TimeLimit.truncated", False)) for info in infos])
    return {
        "obs": obs,
        "actions": actions,
        "next_obs": real_next_obs(new_obs, dones, infos),
        "terminated": dones & ~truncated,
        "truncated": dones & truncated,
    }


def env_actions(callback_locals: dict[str, Any]) -> np.ndarray:
    """The actions ``(n_envs, ...)`` the environments received in the step an SB3 algorithm has just
    taken, read from a callback's locals in ``_on_step``. On-policy algorithms keep the policy's
    output in ``actions`` and pass ``clipped_actions`` to the environments: clipped to a Box's bounds,
    or unscaled from [-1, 1] when the policy squashes its output (gSDE's ``squash_output=True``).
    Off-policy algorithms pass ``actions`` themselves."""
    return callback_locals.get("clipped_actions", callback_locals["actions"])


def step_transitions(callback: BaseCallback) -> dict[str, Any]:
    """The step an SB3 algorithm has just taken, as its policy sees it (normalised under
    ``VecNormalize``) and with the actions the environments received, read from a callback's locals
    in ``_on_step``; see :func:`transition`."""
    locals_, obs = callback.locals, callback.model._last_obs
    assert obs is not None, "called before the algorithm's first reset"
    return transition(obs, env_actions(locals_), locals_["new_obs"], locals_["dones"], locals_["infos"])


class OriginalSteps:
    """Each step as the environments returned it, read from an on-policy algorithm's callback
    locals: under ``VecNormalize`` the policy sees normalised observations and rewards, and the
    exploration module must not (its models keep statistics of their own).

    Args:
        model: the algorithm; its ``VecNormalize`` wrapper, if any, is looked up once per rollout.
    """

    def __init__(self, model: BaseAlgorithm):
        self.model = model
        self.normalizer: VecNormalize | None = None
        self.last: Observation | None = None

    def start_rollout(self) -> None:
        """Read the observations the next actions will be taken in."""
        self.normalizer = self.model.get_vec_normalize_env()
        self.last = self.original_obs() if self.normalizer is not None else self.model._last_obs

    def original_obs(self) -> Observation:
        """``VecNormalize``'s raw observations in the layout the policy sees: SB3 wraps a channel-last
        image env in ``VecTransposeImage`` outside ``VecNormalize``, which keeps the channels last,
        while the step's observations and terminal observations come channels first."""
        assert self.normalizer is not None
        original = self.normalizer.get_original_obs()
        env = self.model.get_env()
        return env.transpose_observations(original) if isinstance(env, VecTransposeImage) else original

    def step(self, callback_locals: dict[str, Any]) -> dict[str, Any]:
        """The step the algorithm has just taken, as the environments returned it; see :func:`transition`."""
        dones, infos = callback_locals["dones"], callback_locals["infos"]
        if self.normalizer is None:
            new_obs = callback_locals["new_obs"]
        else:  # VecNormalize keeps the raw step, and normalises terminal observations in place
            new_obs = self.original_obs()
            infos = [
                {**info, "terminal_observation": self.normalizer.unnormalize_obs(info["terminal_observation"])}
                if "terminal_observation" in info
                else info
                for info in infos
            ]
        assert self.last is not None, "start_rollout() was not called"
        step = transition(self.last, env_actions(callback_locals), new_obs, dones, infos)
        self.last = new_obs
        return step

    def rewards(self, callback_locals: dict[str, Any]) -> np.ndarray:
        """The task's rewards ``(n_envs,)`` of the step the algorithm has just taken, as paid."""
        return self.normalizer.get_original_reward() if self.normalizer is not None else callback_locals["rewards"]


class ExplorationCallback(BaseCallback):
    """Trains the exploration module every rollout and mixes its intrinsic advantage into PPO's or
    A2C's: ``ext_coef·A_ext + β·A_int``.

    Usage::

        model = PPO("MlpPolicy", env)
        model.learn(300_000, callback=ExplorationCallback(ExplorationConfig(bonus=DisagreementConfig())))

    Args:
        config: exploration settings, as an :class:`ExplorationConfig` or a plain mapping of its
            fields (as RL Baselines3 Zoo passes them); ignored when ``explorer`` is given.
        explorer: a ready module (e.g. from :func:`ilvm_rl.exploration.checkpoint.load_explorer`).
        seed: seeds the module built from ``config``.
        checkpoint_dir: if set, :meth:`save` writes the module here.
        verbose: SB3 verbosity.
    """

    def __init__(
        self,
        config: ExplorationConfig | Mapping[str, Any] | None = None,
        explorer: Explorer | None = None,
        seed: int = 0,
        checkpoint_dir: str | Path | None = None,
        verbose: int = 0,
    ):
        super().__init__(verbose)
        if isinstance(config, Mapping):
            config = from_dict(ExplorationConfig, dict(config), "ExplorationCallback config")
        self.config = explorer.config if explorer is not None else (config or ExplorationConfig())
        self.explorer = explorer
        self.seed = seed
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None

    @classmethod
    def load(cls, folder: str | Path, model: BaseAlgorithm, seed: int = 0) -> ExplorationCallback:
        """The callback of a module checkpoint written by :meth:`save`, checked against ``model``'s spaces."""
        env = model.get_env()
        if env is None:
            raise ValueError("the model needs an environment to load an exploration checkpoint for")
        explorer = load_explorer(folder, env.observation_space, env.action_space, env.num_envs, seed)
        return cls(explorer=explorer, seed=seed)

    def _init_callback(self) -> None:
        if not isinstance(self.model, OnPolicyAlgorithm):
            raise TypeError(
                f"ExplorationCallback supports on-policy algorithms (PPO, A2C), got {type(self.model).__name__}; "
                f"off-policy ones (DQN, SAC, TD3) take the bonus through their replay buffer: "
                f"replay_buffer_class=ilvm_rl.sb3.ExplorationReplayBuffer"
            )
        env = self.training_env
        if self.explorer is None:
            self.explorer = Explorer(
                self.config, env.observation_space, env.action_space, env.num_envs, self.seed, device=self.model.device
            )
        elif self.explorer.n_envs != env.num_envs:
            raise ValueError(
                f"the exploration module was built for {self.explorer.n_envs} envs, the agent has {env.num_envs}"
            )
        else:  # a module restored from a checkpoint, on whatever device it was made on
            self.explorer.to(self.model.device)
        if self.config.store_capacity < self.model.n_steps * env.num_envs:
            raise ValueError(
                f"exploration store_capacity={self.config.store_capacity} is smaller than one rollout "
                f"(n_steps × n_envs = {self.model.n_steps * env.num_envs})"
            )
        self.steps = OriginalSteps(self.model)

    def _on_rollout_start(self) -> None:
        assert self.explorer is not None
        self.ext_returns: list[float] = []
        self.explorer.discard_partial_rollout()  # a rollout that another callback stopped never ended
        self.steps.start_rollout()

    def _on_step(self) -> bool:
        assert self.explorer is not None
        infos = self.locals["infos"]
        self.ext_returns.extend(float(info["episode"]["r"]) for info in infos if "episode" in info)
        if self.explorer.retired(self.progress()):
            return True
        step = self.steps.step(self.locals)
        self.explorer.observe(**step)
        if self.config.handover:
            self.explorer.observe_task(self.steps.rewards(self.locals), step["terminated"], step["truncated"])
        return True

    def _on_rollout_end(self) -> None:
        assert self.explorer is not None
        buffer: RolloutBuffer = self.locals["rollout_buffer"]
        progress = self.progress()
        if self.explorer.retired(progress):  # β is 0 to the end: the advantages are the task's alone
            mix_advantages(buffer, self.config.ext_coef, np.zeros_like(buffer.advantages))
            self.logger.record("ilvm/int_coef", 0.0)
            return
        assert self.steps.last is not None
        int_advantages, metrics = self.explorer.rollout_advantages(progress, self.steps.last)
        metrics["ext_advantage_std"] = float(buffer.advantages.std())
        metrics["int_advantage_share"] = intrinsic_share(
            self.config.ext_coef * metrics["ext_advantage_std"], float(int_advantages.std())
        )
        mix_advantages(buffer, self.config.ext_coef, int_advantages)
        metrics.update(self.explorer.update(recent=int_advantages.size))
        if self.ext_returns:  # beside int_return_mean, from the same rollout
            metrics["ext_return_mean"] = float(np.mean(self.ext_returns))
        for name, value in metrics.items():
            self.logger.record(f"ilvm/{name}", value)

    def progress(self) -> float:
        """Share of the run done: SB3 updates its own progress only after a rollout, β follows the steps taken."""
        return self.num_timesteps / self.model._total_timesteps

    def save(self, folder: str | Path | None = None) -> Path:
        """Write the module's checkpoint (to ``checkpoint_dir`` unless ``folder`` is given)."""
        target = folder or self.checkpoint_dir
        if target is None or self.explorer is None:
            raise ValueError("nothing to save: no folder given, or the callback has not been initialised by learn()")
        return save_explorer(self.explorer, target)


def intrinsic_share(ext_spread: float, int_spread: float) -> float:
    """The intrinsic part's share of the two parts' spreads, ``std(β·A_int) / (std(ext_coef·A_ext) +
    std(β·A_int))``, given the two weighted stds: 1 where the bonus alone steers the policy, 0 where
    the task's advantage does. PPO normalises each minibatch's mixed advantages, so this ratio, not
    either size, is what decides (nan when neither part varies)."""
    total = ext_spread + int_spread
    return int_spread / total if total > 0 else float("nan")


def mix_advantages(buffer: RolloutBuffer, ext_coef: float, int_advantages: np.ndarray) -> None:
    """Set the buffer's advantages ``(n_steps, n_envs)``, SB3's task advantages, to
    ``ext_coef·A_ext + int_advantages``; its returns (the value head's targets) stay the task's."""
    buffer.advantages = (ext_coef * buffer.advantages + int_advantages).astype(buffer.advantages.dtype)


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
    return ExplorationCallback.load(checkpoint, model, seed)
