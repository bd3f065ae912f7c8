"""The exploration module: replay, bonus model, the intrinsic reward stream and the training schedule.

Nothing here knows Stable-Baselines3; :mod:`ilvm_rl.sb3` feeds it environment steps and asks it for
the bonus of each rollout.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from gymnasium import spaces

from ilvm_rl.config import VARIANTS, ConfigError
from ilvm_rl.data.replay import TransitionBatch, TransitionStore
from ilvm_rl.data.spaces import Observation, TransitionCodec
from ilvm_rl.exploration.bonus import BonusModel, DisagreementConfig, ILVMBonus, ILVMScoreConfig
from ilvm_rl.exploration.ensemble_variance import EnsembleVarianceBonus, EnsembleVarianceConfig
from ilvm_rl.exploration.icm import ICMBonus, ICMConfig
from ilvm_rl.exploration.rnd import RNDBonus, RNDConfig
from ilvm_rl.exploration.streams import IntrinsicCritic, ReturnScaler, explained_variance, non_episodic_gae
from ilvm_rl.model.ilvm import ModelConfig
from ilvm_rl.model.optim import average_steps

BonusConfig = ILVMScoreConfig | DisagreementConfig | RNDConfig | ICMConfig | EnsembleVarianceConfig
BONUSES: dict[str, type[BonusConfig]] = {
    "ilvm": ILVMScoreConfig,
    "disagreement": DisagreementConfig,
    "rnd": RNDConfig,
    "icm": ICMConfig,
    "ensemble_variance": EnsembleVarianceConfig,
}
"""The bonuses by the name a settings file gives them (``exploration: {bonus: rnd}``)."""

HANDOVER_EPISODES = 100
"""``handover`` reads the task's share of speaking episodes over this many latest finished episodes."""

FAR_OUT = 3.0
"""Tukey's far-out fences lie this many interquartile ranges beyond the quartiles. A reward beyond
the fences of the first rollout's rewards is one the untrained policy's steps were not paid."""


def far_out_fences(rewards: np.ndarray) -> tuple[float, float]:
    """The low and high fence of ``rewards`` (NaNs left out); both the reward itself when it never varies."""
    low, high = np.nanquantile(rewards, [0.25, 0.75])
    reach = FAR_OUT * (high - low)
    return float(low - reach), float(high + reach)


@dataclass(frozen=True)
class ExplorationConfig:
    """Settings of the exploration module.

    A settings file names the bonus and lays that bonus's keys beside the module's own, e.g.
    ``exploration: {bonus: disagreement, samples: 16, int_coef: 1.0}``; a key of another bonus is
    refused. In Python the bonus is its settings object: ``ExplorationConfig(bonus=RNDConfig())``.

    Attributes:
        bonus: which intrinsic reward, with its own settings: ``ilvm`` (a score of one ILVM,
            :class:`ILVMScoreConfig`), ``disagreement`` (an ensemble of transition ILVMs,
            :class:`DisagreementConfig`), or a baseline: ``rnd`` (random network distillation,
            :class:`RNDConfig`), ``icm`` (intrinsic curiosity module, :class:`ICMConfig`) or
            ``ensemble_variance`` (deterministic members' disagreement, Pathak et al. 2019,
            :class:`EnsembleVarianceConfig`).
        int_coef: β, the weight of the intrinsic advantage in the policy's advantage
            ``ext_coef·A_ext + int_coef·A_int``.
        int_coef_final: if set, β moves linearly from ``int_coef`` to this value over the run; null
            holds β at ``int_coef`` (the off-policy recipes, ``ppo_ilvm_full``).
        int_coef_final_at: share of the run, in (0, 1], at which β reaches ``int_coef_final`` and
            stays; below 1 the rest of the run trains on the task's reward alone.
        ext_coef: weight of the task's advantage (SB3's own, timeout bootstrap included).
        int_gamma: discount of the intrinsic stream, whose return no episode end cuts; the bonus is
            divided by a running std of that same return.
        int_gae_lambda: GAE's λ for the intrinsic stream.
        scale_memory: the running std covers the latest rollouts that hold at most this many
            intrinsic returns (older ones drop out, so the untrained model's first, much larger
            scores stop shrinking the bonus after a few rollouts); null covers all of them, as
            the original RND recipe does.
        handover: once the task speaks in enough episodes, let the bonus fade as its novelty runs
            out. The first rollout's rewards, paid to the untrained policy, are the reference, and
            its episodes say nothing. A later step speaks when its reward lies beyond the
            reference's far-out fences (quartiles ∓ 3 interquartile ranges; for a constant reward,
            any other reward), or when the task itself ends the episode (not a time limit) while
            the fences are not both 0 (the untrained policy's steps pay something, so the episode's
            length changes its return). An action cost that varies from step to step says nothing,
            and a goal reached by chance in the first rollout does not move the fences. Until the
            handover the scale covers the latest ``scale_memory`` returns, as without
            ``handover``; from then on it stops forgetting, so a bonus that shrinks is no longer
            scaled back up and the task's advantage takes the lead. The moment is logged as
            ``ilvm/task_spoke``. ``ppo_rnd`` and ``ppo_ilvm_full`` turn it off.
        handover_share: the handover comes once the task spoke in at least this share of the
            latest 100 finished episodes (a goal reached once by chance is not yet a task the
            agent can learn from).
        store_capacity: transitions kept in the module's replay (bounds its memory).
        batch_size: transitions per model update.
        updates_per_rollout: model gradient steps after each rollout.
        recent_fraction: share of each batch drawn from the latest rollout; the rest is uniform
            over the whole replay.
        learning_rate: Adam step size of the bonus model.
        train_every: off-policy agents (:class:`ilvm_rl.sb3.replay.ExplorationReplayBuffer`): the
            bonus model takes one gradient step on every ``train_every``-th batch the agent samples
            from its replay (the on-policy settings ``store_capacity``, ``batch_size``,
            ``updates_per_rollout``, ``recent_fraction``, ``ext_coef``, ``int_gae_lambda`` and
            ``handover`` are not read there).
        model: the ILVM's settings (for ``rnd`` and ``icm``, only ``hidden_sizes`` is read).
    """

    # the defaults are the ppo_ilvm recipe's settings (tests/test_defaults.py holds them to it), set here
    # and not in the bonus's and model's own classes, which the other bonuses and modules build on
    bonus: BonusConfig = field(
        default_factory=partial(DisagreementConfig, samples=16, target="next_obs"), metadata={VARIANTS: BONUSES}
    )
    int_coef: float = 1.0
    int_coef_final: float | None = 0.0
    int_coef_final_at: float = 0.75
    ext_coef: float = 2.0
    int_gamma: float = 0.99
    int_gae_lambda: float = 0.95
    scale_memory: int | None = 10_000
    handover: bool = True
    handover_share: float = 0.1
    store_capacity: int = 100_000
    batch_size: int = 256
    updates_per_rollout: int = 4
    recent_fraction: float = 0.5
    learning_rate: float = 1e-3
    train_every: int = 1
    model: ModelConfig = field(default_factory=lambda: ModelConfig(objectives=("energy",)))

    @classmethod
    def from_recipe(cls, recipe: str, env_id: str) -> ExplorationConfig:
        """The exploration settings a recipe gives an environment, e.g.
        ``ExplorationConfig.from_recipe("ppo_ilvm", "MountainCar-v0")``.

        Args:
            recipe: a recipe's name (``ilvm-rl recipes`` lists them) or the path of a recipe file.
            env_id: a registered Gymnasium id; the recipe's section for it, if any, is merged over
                its ``default`` section.

        Raises:
            ConfigError: the recipe or id is unknown, or the recipe gives the environment no
                exploration section.
        """
        from ilvm_rl.recipes import load_recipe  # recipes are made of this module's settings

        exploration = load_recipe(recipe, env_id)[0].exploration
        if exploration is None:
            raise ConfigError(
                f"recipe {recipe} has no exploration section for {env_id}; pick a recipe with a bonus "
                "(ilvm-rl recipes lists them)"
            )
        return exploration

    def __post_init__(self) -> None:
        if not isinstance(self.bonus, tuple(BONUSES.values())):
            raise ValueError(
                f"bonus: expected the settings of a bonus ({', '.join(cls.__name__ for cls in BONUSES.values())}), "
                f"got {self.bonus!r}"
            )
        if not 0.0 < self.int_coef_final_at <= 1.0:
            raise ValueError(f"int_coef_final_at must lie in (0, 1], got {self.int_coef_final_at}")
        if not 0.0 <= self.int_gamma < 1.0:
            raise ValueError(f"int_gamma must lie in [0, 1) (the stream never ends), got {self.int_gamma}")
        if not 0.0 <= self.int_gae_lambda <= 1.0:
            raise ValueError(f"int_gae_lambda must lie in [0, 1], got {self.int_gae_lambda}")
        if self.ext_coef < 0 or self.int_coef < 0:
            raise ValueError(f"ext_coef and int_coef must be >= 0, got {self.ext_coef} and {self.int_coef}")
        if not 0.0 <= self.recent_fraction <= 1.0:
            raise ValueError(f"recent_fraction must lie in [0, 1], got {self.recent_fraction}")
        for name in ("store_capacity", "batch_size", "train_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.updates_per_rollout < 0:
            raise ValueError(f"updates_per_rollout must be >= 0, got {self.updates_per_rollout}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0.0 < self.handover_share <= 1.0:
            raise ValueError(f"handover_share must lie in (0, 1], got {self.handover_share}")
        if self.scale_memory is not None and self.scale_memory < 1:
            raise ValueError(f"scale_memory must be >= 1 or null, got {self.scale_memory}")
        if isinstance(self.bonus, ILVMScoreConfig):
            self.model.check_score(self.bonus.score)


def build_bonus_model(config: ExplorationConfig, codec: TransitionCodec) -> BonusModel:
    """The bonus model that ``config.bonus`` names, for transitions stored by ``codec``."""
    hidden = config.model.hidden_sizes
    if isinstance(config.bonus, RNDConfig):
        return RNDBonus(codec, hidden, config.bonus, config.learning_rate)
    if isinstance(config.bonus, ICMConfig):
        return ICMBonus(codec, hidden, config.bonus, config.learning_rate)
    if isinstance(config.bonus, EnsembleVarianceConfig):
        return EnsembleVarianceBonus(codec, hidden, config.bonus, config.learning_rate)
    return ILVMBonus(codec, config.bonus, config.model, config.learning_rate)


def _summary(prefix: str, values: np.ndarray) -> dict[str, float]:
    return {
        f"{prefix}_mean": float(values.mean()),
        f"{prefix}_std": float(values.std()),
        f"{prefix}_max": float(values.max()),
    }


class Explorer:
    """Keeps the replay, turns each rollout into intrinsic advantages and trains the bonus model and
    the intrinsic value function.

    The module draws its random numbers from generators of its own (numpy and torch's CPU stream), so
    adding it to an agent, even with β = 0, leaves the agent's random stream untouched. On a GPU the
    models' samples come from torch's CUDA stream, which the agent shares.

    Args:
        config: module settings.
        observation_space: the environment's observation space (a 1-D Box, an image Box or a Dict of those).
        action_space: the environment's action space.
        n_envs: number of parallel environments feeding :meth:`observe`.
        seed: seeds the model's initial weights and the module's random streams.
        own_replay: keep a replay of its own, fed by :meth:`observe` (on-policy agents); an
            off-policy agent's replay buffer hands the module its batches instead
            (:meth:`score_rollout`, :meth:`train_on`), so the transitions are not stored twice.
        device: where the bonus model and ``V_int`` compute (the agent's, e.g. ``model.device``); the
            replay, the statistics and every number handed back stay in numpy.
    """

    def __init__(
        self,
        config: ExplorationConfig,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        n_envs: int,
        seed: int = 0,
        own_replay: bool = True,
        device: torch.device | str = "cpu",
    ):
        self.config = config
        self.observation_space = observation_space
        self.action_space = action_space
        self.n_envs = n_envs
        self.codec = TransitionCodec(observation_space, action_space)
        self.torch_rng_state = torch.Generator().manual_seed(seed).get_state()
        with self.own_torch_rng():
            self.bonus_model = build_bonus_model(config, self.codec)
            # V_int serves the on-policy stream only: a Q-learner's bonus is centred instead (docs: off-policy)
            self.int_critic = (
                IntrinsicCritic(
                    self.codec.observations.flat_space, config.learning_rate, epochs=4, batch_size=config.batch_size
                )
                if own_replay
                else None
            )
        self.rng = np.random.default_rng(seed)
        self.store = self.codec.store(config.store_capacity) if own_replay else None
        self.scaler = ReturnScaler(n_envs, config.int_gamma, config.scale_memory)
        self.steps_since_rollout = 0
        self.int_episode_returns = np.zeros(n_envs, dtype=np.float64)
        self.value_targets: tuple[np.ndarray, np.ndarray] | None = None
        self.counters = {"skipped_updates": 0, "nonfinite_rewards": 0}
        # handover: the rewards of the first rollout and the fences they set, whether the task spoke
        # in each env's current episode and in each of the latest finished ones, and whether the
        # handover came
        self.reference_task_rewards: list[float] = []
        self.task_reward_fences: tuple[float, float] | None = None
        self.episode_spoke = np.zeros(n_envs, dtype=bool)
        self.finished_episodes_spoke: deque[bool] = deque(maxlen=HANDOVER_EPISODES)
        self.task_spoke = False
        self.to(device)  # built on the CPU first: the same initial weights on any device

    def to(self, device: torch.device | str) -> Explorer:
        """Move the bonus model and ``V_int``, their optimisers' state included, to ``device``
        (e.g. a module restored from a checkpoint to the agent's GPU); returns the module."""
        for part in (self.bonus_model, self.int_critic):
            if part is None:
                continue
            part.to(device)
            for optimiser in part.optimisers().values():
                # loading a state dict casts the moments onto their parameters' device
                optimiser.optimizer.load_state_dict(optimiser.optimizer.state_dict())
        return self

    @contextmanager
    def own_torch_rng(self) -> Iterator[None]:
        """Run torch code on the module's own random stream; the global one is left as it was."""
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.torch_rng_state)
            yield
            self.torch_rng_state = torch.get_rng_state()

    @property
    def value_function(self) -> IntrinsicCritic:
        """``V_int``, the intrinsic stream's value function (on-policy modules, see ``own_replay``)."""
        if self.int_critic is None:
            raise RuntimeError("this exploration module serves an off-policy agent, whose bonus needs no V_int")
        return self.int_critic

    @property
    def replay(self) -> TransitionStore:
        """The module's own replay (see ``own_replay``)."""
        if self.store is None:
            raise RuntimeError("this exploration module learns from an agent's replay buffer and keeps none of its own")
        return self.store

    def observe(
        self,
        obs: Observation,
        actions: np.ndarray,
        next_obs: Observation,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        """Record one step of every environment: obs and next_obs as the environments return them
        (arrays ``(n_envs, ...)``, or dicts of them; never normalised by a wrapper the module does not
        know of), actions as the agent produced them, terminated and truncated ``(n_envs,)``."""
        self.replay.add(self.codec.batch(obs, actions, next_obs, terminated, truncated))
        self.steps_since_rollout += 1

    def observe_task(self, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> None:
        """Record the task's side of one step of every environment, for ``handover``: its rewards
        ``(n_envs,)`` as the environments paid them (not normalised), ``terminated`` and
        ``truncated`` ``(n_envs,)``."""
        if self.task_spoke:
            return
        rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
        terminated = np.asarray(terminated)
        if self.task_reward_fences is None:  # the first rollout is the reference: episodes ending in it say nothing
            self.reference_task_rewards.extend(rewards.tolist())
        else:
            low, high = self.task_reward_fences
            length_pays = (low, high) != (0.0, 0.0)
            self.episode_spoke |= (rewards < low) | (rewards > high) | (terminated & length_pays)
        ended = terminated | np.asarray(truncated)
        if not ended.any():  # the share moves only when an episode ends
            return
        self.finished_episodes_spoke.extend(self.episode_spoke[ended].tolist())
        self.episode_spoke[ended] = False
        if (
            len(self.finished_episodes_spoke) == HANDOVER_EPISODES
            and self.task_speaking_share >= self.config.handover_share
        ):
            self.hand_over()

    @property
    def task_speaking_share(self) -> float:
        """Share of the latest finished episodes (at most 100) in which the task spoke (0 before any)."""
        return float(np.mean(self.finished_episodes_spoke)) if self.finished_episodes_spoke else 0.0

    def close_task_reference(self) -> None:
        """End the reference (at the first rollout's end): from now on steps are held against its fences."""
        if self.task_reward_fences is None and self.reference_task_rewards:
            self.task_reward_fences = far_out_fences(np.asarray(self.reference_task_rewards))
            self.reference_task_rewards = []

    def hand_over(self) -> None:
        """The task has spoken in enough episodes: from now on the scale stops forgetting."""
        self.task_spoke = True
        self.scaler.stats.stop_forgetting()

    def discard_partial_rollout(self) -> None:
        """Forget the count of steps of a rollout that ended early (a callback stopped training):
        they stay in the replay, but the next rollout's advantages start afresh."""
        self.steps_since_rollout = 0

    def coefficient(self, progress: float) -> float:
        """β after a share ``progress`` in [0, 1] of the run."""
        if self.config.int_coef_final is None:
            return self.config.int_coef
        moved = min(max(progress / self.config.int_coef_final_at, 0.0), 1.0)
        return self.config.int_coef + (self.config.int_coef_final - self.config.int_coef) * moved

    def retired(self, progress: float) -> bool:
        """Whether β is 0 from a share ``progress`` of the run to its end: from then on the module
        neither stores, scores nor trains, since nothing it computes would reach the agent."""
        final = self.config.int_coef if self.config.int_coef_final is None else self.config.int_coef_final
        return final == 0.0 and self.coefficient(progress) == 0.0

    def rollout_advantages(self, progress: float, last_obs: Observation) -> tuple[np.ndarray, dict[str, float]]:
        """The intrinsic advantages of the steps observed since the last call, times β.

        Args:
            progress: share of the run done when the rollout ended, for the β schedule.
            last_obs: the observations after the rollout's last step (after a reset where an episode
                ended), arrays ``(n_envs, ...)`` or dicts of them: where the stream goes on.

        Returns:
            ``β·A_int`` ``(n_steps, n_envs)`` float32, always finite, and metrics to log.
        """
        n_steps = self.steps_since_rollout
        self.steps_since_rollout = 0
        self.close_task_reference()
        rollout = self.replay.latest(n_steps * self.n_envs)
        start = time.perf_counter()
        raw, rewards = self.score_rollout(rollout, n_steps)
        with self.own_torch_rng():
            values = self.value_function.values(rollout.obs).reshape(n_steps, self.n_envs)
            last_values = self.value_function.values(self.codec.observations.flatten(last_obs, self.n_envs))
        advantages = non_episodic_gae(rewards, values, last_values, self.config.int_gamma, self.config.int_gae_lambda)
        returns = advantages + values
        self.value_targets = (rollout.obs, returns.reshape(-1))
        beta = self.coefficient(progress)
        metrics = {
            **_summary("int_reward_raw", raw),
            **_summary("int_reward", rewards),
            **_summary("int_advantage", advantages),
            "int_value_mean": float(values.mean()),
            "int_value_explained_variance": explained_variance(values, returns),
            "int_coef": beta,
            "int_return_std": float(self.scaler.stats.std),
            "score_time_ms": 1000 * (time.perf_counter() - start),
        }
        if self.config.handover:
            metrics["task_spoke"] = float(self.task_spoke)
            metrics["task_speaking_share"] = self.task_speaking_share
        finished = self._int_returns_of_finished_episodes(rewards, rollout)
        if finished:
            metrics["int_return_mean"] = float(np.mean(finished))
        return beta * advantages, metrics

    def score_rollout(self, rollout: TransitionBatch, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Fold new transitions into the model's input statistics, score them, and scale the scores
        by the running std of the intrinsic return (whose statistics they update).

        Args:
            rollout: ``n_steps × n_envs`` transitions in time order, the environments of one step
                side by side (row ``t·n_envs + i`` is step ``t`` of environment ``i``).
            n_steps: the steps of the rollout.

        Returns:
            The raw scores and the scaled rewards, both ``(n_steps, n_envs)`` float32 and finite.
        """
        with self.own_torch_rng():
            self.bonus_model.update_statistics(rollout)
            raw, _ = self.finite_scores(rollout)
        raw = raw.reshape(n_steps, self.n_envs)
        rewards = self.scaler.scale(raw)
        rewards[~np.isfinite(rewards)] = 0.0
        return raw, rewards

    def finite_scores(self, batch: TransitionBatch) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores ``(n,)`` of the current model, a non-finite score set to 0 and counted, and the
        ``(n,)`` mask of the finite ones. Call it on the module's torch stream (:meth:`own_torch_rng`):
        some scores draw samples."""
        raw = self.bonus_model.score(batch)
        finite = np.isfinite(raw)
        self.counters["nonfinite_rewards"] += int((~finite).sum())
        raw[~finite] = 0.0
        return raw, finite

    def _int_returns_of_finished_episodes(self, rewards: np.ndarray, rollout: TransitionBatch) -> list[float]:
        ends = (rollout.terminated | rollout.truncated).reshape(rewards.shape)
        finished: list[float] = []
        for step_rewards, step_ends in zip(rewards, ends, strict=True):
            self.int_episode_returns += step_rewards
            finished.extend(self.int_episode_returns[step_ends].tolist())
            self.int_episode_returns[step_ends] = 0.0
        return finished

    def update(self, recent: int) -> dict[str, float]:
        """Train the bonus model for ``updates_per_rollout`` steps on batches that mix the ``recent``
        latest transitions with the whole replay, and fit ``V_int`` to the latest rollout's intrinsic
        returns; returns mean losses and timings."""
        start = time.perf_counter()
        store = self.replay
        batches = (
            store.sample(self.config.batch_size, self.rng, recent, self.config.recent_fraction)
            for _ in range(self.config.updates_per_rollout)
        )
        metrics = self.train_on(batches)
        with self.own_torch_rng():
            value_metrics = self.value_function.fit(*self.value_targets, self.rng) if self.value_targets else {}
        self.value_targets = None
        metrics.update(value_metrics)
        metrics["update_time_ms"] = 1000 * (time.perf_counter() - start)
        metrics["store_size"] = float(store.size)
        metrics.update({name: float(count) for name, count in self.counters.items()})
        return metrics

    def train_on(self, batches: Iterable[TransitionBatch]) -> dict[str, float]:
        """One guarded gradient step of the bonus model per batch, on the module's torch stream.

        Returns:
            The mean of each loss over the steps taken, as ``loss/<name>`` (empty if all were skipped).
        """
        with self.own_torch_rng():
            metrics, skipped = average_steps(self.bonus_model.train_step(batch) for batch in batches)
        self.counters["skipped_updates"] += skipped
        return metrics
