"""Random network distillation (Burda et al., 2018), the novelty baseline.

The bonus is the error of a trained predictor that imitates a fixed random network on the next
observation, standardised by running statistics and clipped to ±5 as in the original recipe.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from gymnasium import spaces

from ilvm_rl.exploration.bonus import BonusModel, LossTerms, ObservationNormaliser
from ilvm_rl.exploration.normalisation import RunningMeanStd
from ilvm_rl.exploration.store import TransitionBatch
from ilvm_rl.model.networks import mlp
from ilvm_rl.model.optim import GuardedAdam


class RNDBonus(BonusModel):
    """RND bonus ``‖g(s') − ĝ(s')‖²`` averaged over the ``output_dim`` features.

    Args:
        observation_space: a 1-D Box.
        action_space: any supported action space (checked, not used).
        hidden_sizes: hidden widths of the target and predictor networks.
        output_dim: width of the random features.
        learning_rate: Adam step size for the predictor.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        hidden_sizes: Sequence[int] = (64, 64),
        output_dim: int = 64,
        learning_rate: float = 1e-3,
    ):
        super().__init__(observation_space, action_space)
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
