"""Random network distillation (Burda et al., 2018), the novelty baseline.

The bonus is the error of a trained predictor that imitates a fixed random network on the next
observation, standardised by running statistics and clipped to ±5 as in the original recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ilvm_rl.data.replay import TransitionBatch
from ilvm_rl.data.spaces import TransitionCodec
from ilvm_rl.data.statistics import ObservationNormaliser, RunningMeanStd
from ilvm_rl.exploration.bonus import BonusModel, LossTerms
from ilvm_rl.model.networks import mlp
from ilvm_rl.model.optim import GuardedAdam


@dataclass(frozen=True)
class RNDConfig:
    """Settings of the ``rnd`` bonus (random network distillation).

    Attributes:
        output_dim: width of the random features.
    """

    output_dim: int = 64

    def __post_init__(self) -> None:
        if self.output_dim < 1:
            raise ValueError(f"output_dim must be >= 1, got {self.output_dim}")


class RNDBonus(BonusModel):
    """RND bonus ``‖g(s') − ĝ(s')‖²`` averaged over the ``output_dim`` features.

    Args:
        codec: how the module stores observations and actions (the actions are not read).
        hidden_sizes: hidden widths of the target and predictor networks.
        config: the width of the random features.
        learning_rate: Adam step size for the predictor.
    """

    def __init__(
        self,
        codec: TransitionCodec,
        hidden_sizes: Sequence[int] = (64, 64),
        config: RNDConfig | None = None,
        learning_rate: float = 1e-3,
    ):
        super().__init__(codec)
        output_dim = (config or RNDConfig()).output_dim
        self.obs_norm = ObservationNormaliser(self.observation_space, always_running=True)
        self.target = mlp(self.obs_dim, hidden_sizes, output_dim)
        self.target.requires_grad_(False)
        self.predictor = mlp(self.obs_dim, hidden_sizes, output_dim)
        self.optim = GuardedAdam(list(self.predictor.parameters()), learning_rate)

    def update_statistics(self, batch: TransitionBatch) -> None:
        self.obs_norm.update(batch.next_obs)

    def _errors(self, batch: TransitionBatch) -> torch.Tensor:
        obs = self.tensor(self.obs_norm(batch.next_obs))
        return (self.predictor(obs) - self.target(obs)).pow(2).mean(-1)

    def _score(self, batch: TransitionBatch) -> torch.Tensor:
        with torch.no_grad():
            return self._errors(batch)

    def _loss_terms(self, batch: TransitionBatch) -> tuple[LossTerms, dict[str, torch.Tensor]]:
        loss = self._errors(batch).mean()
        return [(loss, self.optim)], {"rnd": loss.detach()}

    def optimisers(self) -> dict[str, GuardedAdam]:
        return {"predictor": self.optim}

    def statistics(self) -> dict[str, RunningMeanStd]:
        return {"obs": self.obs_norm.stats}
