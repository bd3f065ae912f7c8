"""The exploration module: replay, bonus model, reward scaling and the model's training schedule.

Nothing here knows Stable-Baselines3; :mod:`ilvm_rl.sb3` feeds it environment steps and asks it for
the bonus of each rollout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from gymnasium import spaces

from ilvm_rl.exploration.bonus import BonusModel, BonusScore, ILVMBonus, TransitionTarget
from ilvm_rl.exploration.icm import ICMBonus
from ilvm_rl.exploration.normalisation import ReturnScaler, RunningMeanStd
from ilvm_rl.exploration.rnd import RNDBonus
from ilvm_rl.exploration.spaces import ActionEncoder, Observation, ObservationFlattener, step_batch
from ilvm_rl.exploration.store import TransitionBatch, TransitionStore
from ilvm_rl.model.ilvm import ModelConfig

Method = Literal["ilvm", "rnd", "icm"]


@dataclass(frozen=True)
class ExplorationConfig:
    """Settings of the exploration module.

    Attributes:
        method: ``ilvm`` (bonus from an implicit latent variable model), or a baseline: ``rnd``
            (random network distillation) or ``icm`` (intrinsic curiosity module).
        score: for ``ilvm``, which model score becomes the bonus: ``excess_error``,
            ``latent_surprise``, ``novelty`` (state model), ``density_ratio`` or ``disagreement``
            (how far apart the mean predictions of an ensemble of transition models are, relative
            to the spread they predict; see :class:`ilvm_rl.model.ensemble.ILVMEnsemble`).
        coef: coefficient β on the scaled bonus.
        coef_final: if set, β decays linearly from ``coef`` to this value over the run.
        coef_final_at: share of the run, in (0, 1], at which β reaches ``coef_final`` and stays; below
            1 the rest of the run trains on the task's reward alone, which lets a policy that has
            found a sparse goal settle on it instead of on whatever still pays a bonus.
        gamma: discount of the intrinsic return whose running std scales the bonus.
        scale_memory: intrinsic returns the running std remembers (older ones fade out); null
            remembers all of them, as the original RND recipe does.
        center: subtract the running mean of the raw score (same memory) before scaling. A bonus
            that is positive on average pays the agent for every extra step, so in an episodic
            task it learns to avoid ending episodes, goal included; centred, only above-average
            surprise is rewarded.
        store_capacity: transitions kept in the module's replay (bounds its memory).
        batch_size: transitions per model update.
        updates_per_rollout: model gradient steps after each rollout.
        recent_fraction: share of each batch drawn from the latest rollout; the rest is uniform
            over the whole replay.
        learning_rate: Adam step size of the bonus model.
        rnd_output_dim: width of RND's random features.
        icm_feature_dim: width of ICM's learned features.
        icm_forward_weight: β of ICM's loss ``(1 − β)·L_inverse + β·L_forward``.
        ensemble_size: transition models in the ensemble of the ``disagreement`` score.
        ensemble_samples: samples each member draws per transition to score ``disagreement``:
            the members' means are estimated from them, and on a noisy TV the estimate's spread
            (which pays nothing on average but jolts the policy) falls as 1/ensemble_samples.
        ensemble_anchor_scale: weight of the fixed random function of the context that anchors each
            member's output (randomised prior functions): members then disagree wherever data are
            missing instead of extrapolating alike; 0 turns anchors off.
        ensemble_bottleneck_dim: width of a shared stochastic code of the context that the members
            and their anchors read instead of the context (a variational information bottleneck);
            it learns to drop context inputs that do not predict the outcome, such as a TV's noise
            in the previous observation. 0 turns it off.
        ensemble_bottleneck_weight: weight of the code's KL to ``N(0, I)`` against each member's loss.
        transition_target: what the transition models predict: ``delta``, the change of state
            ``s' − s`` standardised per feature, which keeps slow features visible; or ``next_obs``,
            ``s'`` scaled like the observations. Noise that does not depend on the state (a TV) has
            one distribution everywhere as ``next_obs``, so it is learned at once; as ``delta`` the
            model must also cancel the previous step's noise.
        model: the ILVM's settings (for ``rnd`` and ``icm``, only ``hidden_sizes`` is read).
    """

    method: Method = "ilvm"
    score: BonusScore = "novelty"
    coef: float = 1.0
    coef_final: float | None = None
    coef_final_at: float = 1.0
    gamma: float = 0.99
    scale_memory: int | None = 10_000
    center: bool = False
    store_capacity: int = 100_000
    batch_size: int = 256
    updates_per_rollout: int = 4
    recent_fraction: float = 0.5
    learning_rate: float = 1e-3
    rnd_output_dim: int = 64
    icm_feature_dim: int = 32
    icm_forward_weight: float = 0.2
    ensemble_size: int = 5
    ensemble_samples: int = 64
    ensemble_anchor_scale: float = 1.0
    ensemble_bottleneck_dim: int = 0
    ensemble_bottleneck_weight: float = 0.001
    transition_target: TransitionTarget = "delta"
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if self.method not in ("ilvm", "rnd", "icm"):
            raise ValueError(f"method: unknown method {self.method!r}; accepted: 'ilvm', 'rnd', 'icm'")
        if not 0.0 < self.coef_final_at <= 1.0:
            raise ValueError(f"coef_final_at must lie in (0, 1], got {self.coef_final_at}")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must lie in [0, 1), got {self.gamma}")
        if not 0.0 <= self.recent_fraction <= 1.0:
            raise ValueError(f"recent_fraction must lie in [0, 1], got {self.recent_fraction}")
        for name in ("store_capacity", "batch_size", "rnd_output_dim", "icm_feature_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.icm_forward_weight < 1.0:
            raise ValueError(f"icm_forward_weight must lie in (0, 1), got {self.icm_forward_weight}")
        if self.updates_per_rollout < 0:
            raise ValueError(f"updates_per_rollout must be >= 0, got {self.updates_per_rollout}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.scale_memory is not None and self.scale_memory < 1:
            raise ValueError(f"scale_memory must be >= 1 or null, got {self.scale_memory}")
        if self.ensemble_samples < 2:
            raise ValueError(
                f"ensemble_samples must be >= 2 (a sample variance needs two), got {self.ensemble_samples}"
            )
        if self.ensemble_anchor_scale < 0:
            raise ValueError(f"ensemble_anchor_scale must be >= 0, got {self.ensemble_anchor_scale}")
        for name in ("ensemble_bottleneck_dim", "ensemble_bottleneck_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.ensemble_size < 2:
            raise ValueError(f"ensemble_size must be >= 2 (members disagree in pairs), got {self.ensemble_size}")
        if self.method == "ilvm" and self.score != "disagreement":
            self.model.check_score(self.score)


def build_bonus_model(
    config: ExplorationConfig, observation_space: spaces.Space, action_space: spaces.Space
) -> BonusModel:
    hidden = config.model.hidden_sizes
    if config.method == "rnd":
        return RNDBonus(observation_space, action_space, hidden, config.rnd_output_dim, config.learning_rate)
    if config.method == "icm":
        return ICMBonus(
            observation_space,
            action_space,
            hidden,
            config.icm_feature_dim,
            config.icm_forward_weight,
            config.learning_rate,
        )
    return ILVMBonus(
        observation_space,
        action_space,
        config.score,
        config.model,
        config.learning_rate,
        config.ensemble_size,
        config.ensemble_samples,
        config.ensemble_anchor_scale,
        config.transition_target,
        config.ensemble_bottleneck_dim,
        config.ensemble_bottleneck_weight,
    )


def _summary(prefix: str, values: np.ndarray) -> dict[str, float]:
    return {
        f"{prefix}_mean": float(values.mean()),
        f"{prefix}_std": float(values.std()),
        f"{prefix}_max": float(values.max()),
    }


class Explorer:
    """Keeps the replay, turns each rollout into intrinsic rewards and trains the bonus model.

    Args:
        config: module settings.
        observation_space: the environment's observation space (a 1-D Box, an image Box or a Dict of those).
        action_space: the environment's action space.
        n_envs: number of parallel environments feeding :meth:`observe`.
        seed: seeds the model's initial weights and the replay sampling.
    """

    def __init__(
        self,
        config: ExplorationConfig,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        n_envs: int,
        seed: int = 0,
    ):
        self.config = config
        self.observation_space = observation_space
        self.flattener = ObservationFlattener(observation_space)
        self.action_space = action_space
        self.n_envs = n_envs
        self.action_encoder = ActionEncoder(action_space)
        # own RNG streams: building the module must not shift the agent's random numbers
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.bonus_model = build_bonus_model(config, observation_space, action_space)
        self.rng = np.random.default_rng(seed)
        self.store = TransitionStore(
            config.store_capacity,
            self.flattener.layout.dim,
            self.action_encoder.raw_dim,
            self.flattener.flat_space.dtype,
        )
        self.scaler = ReturnScaler(n_envs, config.gamma, config.scale_memory)
        self.raw_stats = RunningMeanStd(memory=config.scale_memory)
        self.steps_since_rollout = 0
        self.int_episode_returns = np.zeros(n_envs, dtype=np.float64)
        self.counters = {"skipped_updates": 0, "nonfinite_rewards": 0}

    def observe(
        self,
        obs: Observation,
        actions: np.ndarray,
        next_obs: Observation,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        """Record one step of every environment: obs and next_obs as the vec env gives them (arrays
        ``(n_envs, ...)``, or dicts of them), actions as the agent produced them, terminated and
        truncated ``(n_envs,)``."""
        self.store.add(step_batch(self.flattener, self.action_encoder, obs, actions, next_obs, terminated, truncated))
        self.steps_since_rollout += 1

    def coefficient(self, progress: float) -> float:
        """β after a share ``progress`` in [0, 1] of the run."""
        if self.config.coef_final is None:
            return self.config.coef
        decayed = min(max(progress / self.config.coef_final_at, 0.0), 1.0)
        return self.config.coef + (self.config.coef_final - self.config.coef) * decayed

    def rollout_bonus(self, progress: float) -> tuple[np.ndarray, dict[str, float]]:
        """Intrinsic rewards of the steps observed since the last call.

        Args:
            progress: share of the run done, for the coefficient schedule.

        Returns:
            Rewards ``(n_steps, n_envs)`` float32, always finite, and metrics to log.
        """
        n_steps = self.steps_since_rollout
        self.steps_since_rollout = 0
        rollout = self.store.latest(n_steps * self.n_envs)
        start = time.perf_counter()
        self.bonus_model.update_statistics(rollout)
        raw = self.bonus_model.score(rollout).reshape(n_steps, self.n_envs)
        nonfinite = ~np.isfinite(raw)
        self.counters["nonfinite_rewards"] += int(nonfinite.sum())
        raw[nonfinite] = 0.0
        metrics = _summary("int_reward_raw", raw)
        if self.config.center:
            self.raw_stats.update(raw[~nonfinite])
            raw = np.where(nonfinite, 0.0, raw - self.raw_stats.mean)
        beta = self.coefficient(progress)
        rewards = beta * self.scaler.scale(raw)
        rewards[nonfinite | ~np.isfinite(rewards)] = 0.0
        metrics = {
            **metrics,
            **_summary("int_reward", rewards),
            "coef": beta,
            "int_return_std": float(self.scaler.stats.std),
            "score_time_ms": 1000 * (time.perf_counter() - start),
        }
        finished = self._int_returns_of_finished_episodes(rewards, rollout)
        if finished:
            metrics["int_return_mean"] = float(np.mean(finished))
        return rewards, metrics

    def _int_returns_of_finished_episodes(self, rewards: np.ndarray, rollout: TransitionBatch) -> list[float]:
        ends = (rollout.terminated | rollout.truncated).reshape(rewards.shape)
        finished: list[float] = []
        for step_rewards, step_ends in zip(rewards, ends, strict=True):
            self.int_episode_returns += step_rewards
            finished.extend(self.int_episode_returns[step_ends].tolist())
            self.int_episode_returns[step_ends] = 0.0
        return finished

    def update(self, recent: int) -> dict[str, float]:
        """Train the bonus model for ``updates_per_rollout`` steps on batches that mix the
        ``recent`` latest transitions with the whole replay; returns mean losses and timings."""
        start = time.perf_counter()
        totals: dict[str, float] = {}
        taken = 0
        for _ in range(self.config.updates_per_rollout):
            batch = self.store.sample(self.config.batch_size, self.rng, recent, self.config.recent_fraction)
            step_metrics = self.bonus_model.train_step(batch)
            if step_metrics is None:
                self.counters["skipped_updates"] += 1
                continue
            taken += 1
            for name, value in step_metrics.items():
                totals[name] = totals.get(name, 0.0) + value
        metrics = {f"loss/{name}": value / taken for name, value in totals.items()} if taken else {}
        metrics["update_time_ms"] = 1000 * (time.perf_counter() - start)
        metrics["store_size"] = float(self.store.size)
        metrics.update({name: float(count) for name, count in self.counters.items()})
        return metrics
