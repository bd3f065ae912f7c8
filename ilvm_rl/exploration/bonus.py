"""Intrinsic-reward models: the common interface and the ILVM bonus."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from ilvm_rl.exploration.normalisation import RunningMeanStd
from ilvm_rl.exploration.spaces import ActionEncoder, ObservationFlattener, fixed_scale, has_fixed_scale
from ilvm_rl.exploration.store import TransitionBatch
from ilvm_rl.model.ensemble import ILVMEnsemble
from ilvm_rl.model.ilvm import ILVM, ModelConfig, Score
from ilvm_rl.model.optim import GuardedAdam, guarded_step

ADVERSARIAL_BETAS = (0.5, 0.9)
LossTerms = Sequence[tuple[torch.Tensor, GuardedAdam]]
TransitionTarget = Literal["delta", "next_obs"]
BonusScore = Literal[Score, "disagreement"]
"""The model scores of :meth:`ILVM.score`, and ``disagreement`` of an :class:`ILVMEnsemble`."""


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
        if not self.fixed:
            self.stats.update(obs)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if self.fixed:
            return (obs - self.centre) / self.half_width
        return np.clip((obs - self.stats.mean) / self.stats.std, -self.clip, self.clip).astype(np.float32)


def finite_rows(batch: TransitionBatch) -> np.ndarray:
    """``(n,)`` mask of transitions whose observations and actions are all finite."""
    return (
        np.isfinite(batch.obs).all(axis=1)
        & np.isfinite(batch.next_obs).all(axis=1)
        & np.isfinite(batch.actions).all(axis=1)
    )


def select(batch: TransitionBatch, rows: np.ndarray) -> TransitionBatch:
    return TransitionBatch(
        batch.obs[rows], batch.actions[rows], batch.next_obs[rows], batch.terminated[rows], batch.truncated[rows]
    )


class BonusModel(nn.Module, abc.ABC):
    """A model that scores transitions (higher = more worth visiting) and learns from replay.

    Subclasses implement :meth:`update_statistics`, :meth:`_score` and :meth:`_loss_terms` on
    finite transitions; this class filters non-finite ones, so a NaN never reaches a model or a
    reward, and guards every gradient step.

    Args:
        observation_space: a 1-D Box, an image Box or a Dict of those, read as one flat vector
            (:class:`ObservationFlattener`); the transitions hold observations flattened that way.
        action_space: Discrete, MultiDiscrete or 1-D Box.
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        super().__init__()
        self.flattener = ObservationFlattener(observation_space)
        # the normalisers read the flat vector, whose space carries the bounds of every value
        self.observation_space = self.flattener.flat_space
        self.action_encoder = ActionEncoder(action_space)
        self.obs_dim = self.flattener.layout.dim

    @abc.abstractmethod
    def update_statistics(self, batch: TransitionBatch) -> None:
        """Fold a rollout of finite transitions into the input/target normalisers."""

    @abc.abstractmethod
    def _score(self, batch: TransitionBatch) -> torch.Tensor:
        """Raw bonus ``(n,)`` of finite transitions."""

    @abc.abstractmethod
    def _loss_terms(self, batch: TransitionBatch) -> tuple[LossTerms, dict[str, torch.Tensor]]:
        """Losses paired with the optimiser that minimises each, and metrics to log."""

    @abc.abstractmethod
    def optimisers(self) -> dict[str, GuardedAdam]:
        """The optimisers by name, for checkpoints."""

    @abc.abstractmethod
    def statistics(self) -> dict[str, RunningMeanStd]:
        """The running statistics by name, for checkpoints."""

    def score(self, batch: TransitionBatch) -> np.ndarray:
        """Raw bonus of each transition, ``(n,)`` float32; NaN where a transition is not finite."""
        rows = finite_rows(batch)
        scores = np.full(len(batch), np.nan, dtype=np.float32)
        if rows.any():
            scores[rows] = self._score(select(batch, rows)).cpu().numpy()
        return scores

    def train_step(self, batch: TransitionBatch) -> dict[str, float] | None:
        """One guarded gradient step on the finite transitions of ``batch``.

        Returns:
            The metrics of the step, or None if it was skipped for a non-finite loss or gradient.
        """
        rows = finite_rows(batch)
        if not rows.any():
            return None
        terms, metrics = self._loss_terms(select(batch, rows))
        if not guarded_step(terms):
            return None
        return {name: float(value) for name, value in metrics.items()}

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, dtype=torch.float32)


class ILVMBonus(BonusModel):
    """Intrinsic reward from an ILVM: a transition model ``p(s' − s | s, a)`` for the scores
    ``excess_error``, ``latent_surprise`` and ``density_ratio``; a state model ``p(s')`` for ``novelty``;
    an ensemble of transition models for ``disagreement``.

    Args:
        observation_space: a 1-D Box, an image Box or a Dict of those; the ILVM reads the images of
            its target through a CNN and draws them through a transposed CNN.
        action_space: Discrete, MultiDiscrete or 1-D Box.
        score: which score becomes the bonus.
        model_config: architecture and objectives of the ILVM (of every member of an ensemble).
        learning_rate: Adam step size for the model (and critic).
        ensemble_size: members of the ensemble, for ``disagreement`` only.
        ensemble_samples: samples each member draws per transition to score ``disagreement``.
        ensemble_anchor_scale: weight of each member's fixed random anchor (see :class:`ILVMEnsemble`).
        transition_target: what a transition model predicts: ``delta``, the change ``s' − s``
            standardised per feature, or ``next_obs``, ``s'`` scaled like the observations.
        ensemble_bottleneck_dim: width of the ensemble's shared stochastic code of the context;
            0 lets the members read the context itself (see :class:`ILVMEnsemble`).
        ensemble_bottleneck_weight: weight of that code's KL to ``N(0, I)``.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        score: BonusScore = "excess_error",
        model_config: ModelConfig | None = None,
        learning_rate: float = 1e-3,
        ensemble_size: int = 5,
        ensemble_samples: int = 64,
        ensemble_anchor_scale: float = 1.0,
        transition_target: TransitionTarget = "delta",
        ensemble_bottleneck_dim: int = 0,
        ensemble_bottleneck_weight: float = 0.001,
    ):
        super().__init__(observation_space, action_space)
        model_config = model_config or ModelConfig()
        if score != "disagreement":
            model_config.check_score(score)
        self.score_kind: BonusScore = score
        self.state_model = score == "novelty"
        self.transition_target: TransitionTarget = transition_target
        self.ensemble_samples = ensemble_samples
        self.obs_norm = ObservationNormaliser(self.observation_space)
        self.delta_stats = RunningMeanStd((self.obs_dim,))
        context_dim = 0 if self.state_model else self.obs_dim + self.action_encoder.dim
        self.model: ILVM | ILVMEnsemble = (
            ILVMEnsemble(
                context_dim,
                self.obs_dim,
                model_config,
                ensemble_size,
                ensemble_anchor_scale,
                self.flattener.layout,
                ensemble_bottleneck_dim,
                ensemble_bottleneck_weight,
            )
            if score == "disagreement"
            else ILVM(context_dim, self.obs_dim, model_config, self.flattener.layout)
        )
        self.model_optim = GuardedAdam(self.model.model_parameters(), learning_rate)
        self.critic_optim = None
        if self.model.critic_parameters():
            # both players of the adversarial game use the short-memory Adam that GANs train stably with
            self.model_optim = GuardedAdam(self.model.model_parameters(), learning_rate, betas=ADVERSARIAL_BETAS)
            self.critic_optim = GuardedAdam(self.model.critic_parameters(), learning_rate, betas=ADVERSARIAL_BETAS)

    def update_statistics(self, batch: TransitionBatch) -> None:
        self.obs_norm.update(batch.next_obs)
        self.delta_stats.update(batch.state_change())

    def model_inputs(self, batch: TransitionBatch) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Context ``(n, obs_dim + action_dim)`` (None for the state model) and target ``(n, obs_dim)``."""
        if self.state_model:
            return None, self.tensor(self.obs_norm(batch.next_obs))
        context = np.concatenate([self.obs_norm(batch.obs), self.action_encoder.encode(batch.actions)], axis=1)
        if self.transition_target == "next_obs":
            return self.tensor(context), self.tensor(self.obs_norm(batch.next_obs))
        # predicting the change of state, standardised per feature, keeps slow features visible
        delta = (batch.state_change() - self.delta_stats.mean) / self.delta_stats.std
        return self.tensor(context), self.tensor(delta)

    def _score(self, batch: TransitionBatch) -> torch.Tensor:
        context, target = self.model_inputs(batch)
        if isinstance(self.model, ILVMEnsemble):
            assert context is not None  # an ensemble is always a transition model
            return self.model.disagreement(context, self.ensemble_samples)
        return self.model.score(self.score_kind, context, target)  # type: ignore[arg-type]

    def _loss_terms(self, batch: TransitionBatch) -> tuple[LossTerms, dict[str, torch.Tensor]]:
        loss = self.model.loss(*self.model_inputs(batch))
        terms: list[tuple[torch.Tensor, GuardedAdam]] = [(loss.model, self.model_optim)]
        if loss.critic is not None and self.critic_optim is not None:
            terms.append((loss.critic, self.critic_optim))
        return terms, loss.metrics

    def optimisers(self) -> dict[str, GuardedAdam]:
        optims = {"model": self.model_optim}
        if self.critic_optim is not None:
            optims["critic"] = self.critic_optim
        return optims

    def statistics(self) -> dict[str, RunningMeanStd]:
        return {"obs": self.obs_norm.stats, "delta": self.delta_stats}
