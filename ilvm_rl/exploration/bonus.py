"""Intrinsic-reward models: the common interface, the ILVM bonuses and their settings."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from ilvm_rl.data.replay import TransitionBatch
from ilvm_rl.data.spaces import TransitionCodec
from ilvm_rl.data.statistics import ObservationNormaliser, RunningMeanStd
from ilvm_rl.exploration.embedding import RandomEmbedding
from ilvm_rl.model.ensemble import ILVMEnsemble
from ilvm_rl.model.ilvm import ILVM, ModelConfig, Score
from ilvm_rl.model.networks import mlp
from ilvm_rl.model.optim import GuardedAdam, ModelOptimisers, guarded_step

LossTerms = Sequence[tuple[torch.Tensor, GuardedAdam]]
TransitionTarget = Literal["delta", "next_obs"]
DisagreementSpace = Literal["embedding", "observation"]


@dataclass(frozen=True)
class ILVMScoreConfig:
    """Settings of the ``ilvm`` bonus: a score of one ILVM.

    Attributes:
        score: which model score becomes the bonus: ``novelty``, the negative ELBO of a state model
            ``p(s')``; ``excess_error``, the error of a transition model's samples beyond the spread
            it expects; ``latent_surprise``, ``KL(q(z | s, a, s') ‖ p(z | s, a))`` of a transition
            model. ``novelty`` and ``latent_surprise`` read the posterior, which only the ``elbo``
            and ``adversarial`` objectives train.
        target: what a transition model predicts (not read by ``novelty``): ``delta``, the change of
            state ``s' − s`` standardised per feature, which keeps slow features visible; or
            ``next_obs``, ``s'`` scaled like the observations. Noise that does not depend on the
            state (a TV) has one distribution everywhere as ``next_obs``, so it is learned at once;
            as ``delta`` the model must also cancel the previous step's noise.
    """

    score: Score = "novelty"
    target: TransitionTarget = "delta"


@dataclass(frozen=True)
class DisagreementConfig:
    """Settings of the ``disagreement`` bonus: how far apart the mean predictions of an ensemble of
    transition models are, relative to the spread they predict (see :class:`ILVMEnsemble`).

    Attributes:
        size: transition models in the ensemble.
        samples: samples each member draws per transition to score the bonus: the members' means
            are estimated from them, and on a noisy TV the estimate's spread (which pays nothing on
            average but jolts the policy) falls as 1/samples.
        anchor_scale: weight of the fixed random function of the context that anchors each member's
            output (randomised prior functions): members then disagree wherever data are missing
            instead of extrapolating alike; 0 turns anchors off.
        space: where the members predict and disagree. ``embedding``: the members read ``(e(s), a)``
            and predict ``e(s')``, where ``e`` is a fixed random map of the standardised observation
            into ``embedding_dim`` features (:class:`~ilvm_rl.exploration.embedding.RandomEmbedding`),
            so the cost beyond one pass of ``e`` and the number of terms a noise screen adds do not
            grow with the observation's width, and an affine rescaling of any observation dimension
            changes nothing. ``observation``: the members predict every dimension of the observation
            (``target``) from the scaled ``(s, a)``, and the terms are summed over its dimensions.
        embedding_dim: features of ``e`` (``space: embedding``).
        embedding_hidden_sizes: hidden widths of the random net ``e`` (``space: embedding``).
        target: what the members predict in ``space: observation``, as for the ``ilvm`` bonus:
            ``delta`` or ``next_obs``.
        calibrated: pay only the disagreement beyond what the members keep showing on contexts like
            this one that they have trained on: a small net ``g(c)``, fitted to the disagreement of
            every replayed batch before the members' step on it, is subtracted from the score (not
            clipped). On contexts the members have never seen, ``g`` knows nothing and the
            disagreement pays as before; on a noisy screen, whose every frame is a new context and
            where the members' anchors never quite cancel, ``g`` learns the disagreement that stays
            and it stops paying.
    """

    size: int = 5
    samples: int = 64
    anchor_scale: float = 1.0
    space: DisagreementSpace = "embedding"
    embedding_dim: int = 32
    embedding_hidden_sizes: tuple[int, ...] = (128,)
    target: TransitionTarget = "delta"
    calibrated: bool = True

    def __post_init__(self) -> None:
        if self.size < 2:
            raise ValueError(f"size must be >= 2 (members disagree in pairs), got {self.size}")
        if self.samples < 2:
            raise ValueError(f"samples must be >= 2 (a sample variance needs two), got {self.samples}")
        if self.anchor_scale < 0:
            raise ValueError(f"anchor_scale must be >= 0, got {self.anchor_scale}")
        if self.embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {self.embedding_dim}")


class BonusModel(nn.Module, abc.ABC):
    """A model that scores transitions (higher = more worth visiting) and learns from replay.

    Subclasses implement :meth:`update_statistics`, :meth:`_score` and :meth:`_loss_terms` on
    finite transitions; this class filters non-finite ones, so a NaN never reaches a model or a
    reward, and guards every gradient step.

    Args:
        codec: how the module stores observations (flat vectors, see
            :class:`~ilvm_rl.data.spaces.ObservationFlattener`) and actions; the module's own.
    """

    def __init__(self, codec: TransitionCodec):
        super().__init__()
        self.layout = codec.observations.layout
        # the normalisers read the flat vector, whose space carries the bounds of every value
        self.observation_space = codec.observations.flat_space
        self.action_encoder = codec.actions
        self.obs_dim = self.layout.dim

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
        rows = batch.finite_rows()
        scores = np.full(len(batch), np.nan, dtype=np.float32)
        if rows.any():
            scores[rows] = self._score(batch.select(rows)).cpu().numpy()
        return scores

    def train_step(self, batch: TransitionBatch) -> dict[str, float] | None:
        """One guarded gradient step on the finite transitions of ``batch``.

        Returns:
            The metrics of the step, or None if it was skipped for a non-finite loss or gradient.
        """
        rows = batch.finite_rows()
        if not rows.any():
            return None
        terms, metrics = self._loss_terms(batch.select(rows))
        if not guarded_step(terms):
            return None
        return {name: float(value) for name, value in metrics.items()}

    @property
    def device(self) -> torch.device:
        """Where the model computes (see :meth:`ilvm_rl.exploration.explorer.Explorer.to`)."""
        return next(self.parameters()).device

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        """``array`` as a float32 tensor on the model's device."""
        return torch.as_tensor(array, dtype=torch.float32, device=self.device)


class ILVMBonus(BonusModel):
    """Intrinsic reward from ILVMs: a transition model ``p(s' − s | s, a)`` for the scores
    ``excess_error`` and ``latent_surprise``; a state model ``p(s')`` for ``novelty``; an ensemble
    of transition models for ``disagreement``.

    Args:
        codec: how the module stores observations and actions; the ILVM reads the images of its
            target through a CNN and draws them through a transposed CNN.
        settings: the ``ilvm`` bonus's score or the ``disagreement`` bonus's ensemble.
        model_config: architecture and objectives of the ILVM (of every member of an ensemble).
        learning_rate: Adam step size for the model (and critic).
    """

    def __init__(
        self,
        codec: TransitionCodec,
        settings: ILVMScoreConfig | DisagreementConfig,
        model_config: ModelConfig | None = None,
        learning_rate: float = 1e-3,
    ):
        super().__init__(codec)
        model_config = model_config or ModelConfig()
        if isinstance(settings, ILVMScoreConfig):
            model_config.check_score(settings.score)
        self.settings = settings
        self.state_model = isinstance(settings, ILVMScoreConfig) and settings.score == "novelty"
        self.obs_norm = ObservationNormaliser(self.observation_space)
        self.delta_stats = RunningMeanStd((self.obs_dim,))
        self.embedding = (
            RandomEmbedding(self.observation_space, settings.embedding_dim, settings.embedding_hidden_sizes)
            if isinstance(settings, DisagreementConfig) and settings.space == "embedding"
            else None
        )
        target_dim = self.embedding.dim if self.embedding is not None else self.obs_dim
        layout = None if self.embedding is not None else self.layout
        context_dim = 0 if self.state_model else target_dim + self.action_encoder.dim
        self.model: ILVM | ILVMEnsemble = (
            ILVMEnsemble(context_dim, target_dim, model_config, settings.size, settings.anchor_scale, layout)
            if isinstance(settings, DisagreementConfig)
            else ILVM(context_dim, target_dim, model_config, layout)
        )
        self.optims = ModelOptimisers(self.model, learning_rate)
        # g(c): the disagreement the members keep on trained contexts (``calibrated``)
        self.trained_disagreement = (
            mlp(context_dim, model_config.hidden_sizes, 1)
            if isinstance(settings, DisagreementConfig) and settings.calibrated
            else None
        )
        self.calibration_optim = (
            GuardedAdam(list(self.trained_disagreement.parameters()), learning_rate)
            if self.trained_disagreement is not None
            else None
        )

    def update_statistics(self, batch: TransitionBatch) -> None:
        if self.embedding is not None:
            self.embedding.update(batch.next_obs)
            return
        self.obs_norm.update(batch.next_obs)
        self.delta_stats.update(batch.state_change())

    def model_inputs(self, batch: TransitionBatch) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Context ``(n, target_dim + action_dim)`` (None for the state model) and target
        ``(n, target_dim)``: ``target_dim`` is the embedding's width in ``space: embedding``, the
        observation's otherwise."""
        if self.embedding is not None:
            actions = self.tensor(self.action_encoder.encode(batch.actions))
            obs, next_obs = self.embedding(np.concatenate([batch.obs, batch.next_obs])).split(len(batch))
            return torch.cat([obs, actions], dim=1), next_obs
        if self.state_model:
            return None, self.tensor(self.obs_norm(batch.next_obs))
        context = np.concatenate([self.obs_norm(batch.obs), self.action_encoder.encode(batch.actions)], axis=1)
        if self.settings.target == "next_obs":
            return self.tensor(context), self.tensor(self.obs_norm(batch.next_obs))
        # predicting the change of state, standardised per feature, keeps slow features visible
        delta = (batch.state_change() - self.delta_stats.mean) / self.delta_stats.std
        return self.tensor(context), self.tensor(delta)

    def _score(self, batch: TransitionBatch) -> torch.Tensor:
        context, target = self.model_inputs(batch)
        if isinstance(self.model, ILVMEnsemble):
            assert context is not None and isinstance(self.settings, DisagreementConfig)  # always a transition model
            disagreement = self.model.disagreement(context, self.settings.samples)
            if self.trained_disagreement is None:
                return disagreement
            with torch.no_grad():
                return disagreement - self.trained_disagreement(context).squeeze(-1)
        assert isinstance(self.settings, ILVMScoreConfig)
        return self.model.score(self.settings.score, context, target)

    def _loss_terms(self, batch: TransitionBatch) -> tuple[LossTerms, dict[str, torch.Tensor]]:
        context, target = self.model_inputs(batch)
        loss = self.model.loss(context, target)
        terms, metrics = self.optims.terms(loss), loss.metrics
        if self.trained_disagreement is not None and self.calibration_optim is not None:
            assert context is not None and isinstance(self.model, ILVMEnsemble)
            assert isinstance(self.settings, DisagreementConfig)
            disagreement = self.model.disagreement(context, self.settings.samples)
            fit = (self.trained_disagreement(context).squeeze(-1) - disagreement).pow(2).mean()
            terms.append((fit, self.calibration_optim))
            metrics = {**metrics, "trained_disagreement": disagreement.mean(), "calibration": fit.detach()}
        return terms, metrics

    def optimisers(self) -> dict[str, GuardedAdam]:
        optims = self.optims.by_name()
        return optims if self.calibration_optim is None else {**optims, "calibration": self.calibration_optim}

    def statistics(self) -> dict[str, RunningMeanStd]:
        if self.embedding is not None:
            return self.embedding.statistics("embedding")
        return {"obs": self.obs_norm.stats, "delta": self.delta_stats}
