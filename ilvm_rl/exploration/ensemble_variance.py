"""Disagreement of deterministic dynamics models (Pathak et al., 2019), the ensemble baseline.

Each member predicts a fixed random embedding of the next observation from the standardised
observation and the action; the bonus is the variance of their predictions across members,
averaged over the embedding's features. It scores without the observed outcome, as the ILVM
ensemble does, but its members predict a single value where the outcome is random, so the part of
their disagreement that the noise's gradients keep stirring is not weighed against the noise's
spread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ilvm_rl.data.replay import TransitionBatch
from ilvm_rl.data.spaces import TransitionCodec
from ilvm_rl.data.statistics import RunningMeanStd
from ilvm_rl.exploration.bonus import BonusModel, LossTerms
from ilvm_rl.exploration.embedding import RandomEmbedding
from ilvm_rl.model.networks import mlp, variance_mean
from ilvm_rl.model.optim import GuardedAdam


@dataclass(frozen=True)
class EnsembleVarianceConfig:
    """Settings of the ``ensemble_variance`` bonus (deterministic members, Pathak et al. 2019).

    Attributes:
        size: members of the ensemble.
        embedding_dim: features of the fixed random embedding of ``s'`` that the members predict.
        embedding_hidden_sizes: hidden widths of the random net of that embedding.
    """

    size: int = 5
    embedding_dim: int = 16
    embedding_hidden_sizes: tuple[int, ...] = (128,)

    def __post_init__(self) -> None:
        if self.size < 2:
            raise ValueError(f"size must be >= 2 (members disagree in pairs), got {self.size}")
        if self.embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {self.embedding_dim}")


class EnsembleVarianceBonus(BonusModel):
    """Bonus ``mean_d Var_m[g_m(s, a)_d]``: the members' variance, averaged over the features of
    ``e(s')`` they predict.

    Args:
        codec: how the module stores observations and actions.
        hidden_sizes: hidden widths of every member.
        config: the ensemble's size and embedding.
        learning_rate: Adam step size of each member (each has its own optimiser and gradient clip,
            so one member's spike does not shrink the others' steps).
    """

    def __init__(
        self,
        codec: TransitionCodec,
        hidden_sizes: Sequence[int] = (64, 64),
        config: EnsembleVarianceConfig | None = None,
        learning_rate: float = 1e-3,
    ):
        super().__init__(codec)
        config = config or EnsembleVarianceConfig()
        self.embedding = RandomEmbedding(self.observation_space, config.embedding_dim, config.embedding_hidden_sizes)
        context_dim = self.obs_dim + self.action_encoder.dim
        self.members = nn.ModuleList(mlp(context_dim, hidden_sizes, config.embedding_dim) for _ in range(config.size))
        self.optims = [GuardedAdam(list(member.parameters()), learning_rate) for member in self.members]

    def update_statistics(self, batch: TransitionBatch) -> None:
        self.embedding.update(batch.next_obs)

    def _predictions(self, batch: TransitionBatch) -> torch.Tensor:
        """Every member's prediction of ``e(s')``, ``(size, n, embedding_dim)``."""
        obs = self.embedding.obs_norm(batch.obs)  # the standardisation that e reads through
        context = self.tensor(self.action_encoder.encode(batch.actions))
        context = torch.cat([self.tensor(obs), context], dim=1)
        return torch.stack([member(context) for member in self.members])

    def _score(self, batch: TransitionBatch) -> torch.Tensor:
        with torch.no_grad():
            return variance_mean(self._predictions(batch))[0].mean(-1)

    def _loss_terms(self, batch: TransitionBatch) -> tuple[LossTerms, dict[str, torch.Tensor]]:
        errors = (self._predictions(batch) - self.embedding(batch.next_obs)).pow(2).mean((1, 2))
        return list(zip(errors, self.optims, strict=True)), {"prediction": errors.mean().detach()}

    def optimisers(self) -> dict[str, GuardedAdam]:
        return {f"member{index}": optim for index, optim in enumerate(self.optims)}

    def statistics(self) -> dict[str, RunningMeanStd]:
        return self.embedding.statistics("embedding")
