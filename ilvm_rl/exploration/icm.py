"""The intrinsic curiosity module (Pathak et al., 2017), the curiosity baseline.

An encoder ``φ`` is trained only through an inverse-dynamics model that predicts the action from
``(φ(s), φ(s'))``, so the features keep what the agent's actions affect and drop what they cannot
(a "noisy TV" that plays whatever the agent does). A forward model predicts ``φ(s')`` from
``(φ(s), a)``; its error is the bonus. The forward loss does not reach the encoder here (its inputs
and target are detached): otherwise it would pull the features towards what is easy to predict,
and the trivial constant feature makes every error zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

from ilvm_rl.data.replay import TransitionBatch
from ilvm_rl.data.spaces import TransitionCodec
from ilvm_rl.data.statistics import ObservationNormaliser, RunningMeanStd
from ilvm_rl.exploration.bonus import BonusModel, LossTerms
from ilvm_rl.model.networks import mlp
from ilvm_rl.model.optim import GuardedAdam


@dataclass(frozen=True)
class ICMConfig:
    """Settings of the ``icm`` bonus (intrinsic curiosity module).

    Attributes:
        feature_dim: width of the learned features ``φ``.
        forward_weight: β of the loss ``(1 − β)·L_inverse + β·L_forward`` (0.2 in the paper).
    """

    feature_dim: int = 32
    forward_weight: float = 0.2

    def __post_init__(self) -> None:
        if self.feature_dim < 1:
            raise ValueError(f"feature_dim must be >= 1, got {self.feature_dim}")
        if not 0.0 < self.forward_weight < 1.0:
            raise ValueError(f"forward_weight must lie in (0, 1), got {self.forward_weight}")


class ICMBonus(BonusModel):
    """ICM bonus ``½‖f(φ(s), a) − φ(s')‖²``.

    Args:
        codec: how the module stores observations and actions; the actions may be Discrete,
            MultiDiscrete (cross-entropy inverse loss per component) or 1-D Box (squared-error
            inverse loss on the scaled action).
        hidden_sizes: hidden widths of the encoder, inverse and forward models.
        config: the width of ``φ`` and the weight of the forward loss.
        learning_rate: Adam step size.
    """

    def __init__(
        self,
        codec: TransitionCodec,
        hidden_sizes: Sequence[int] = (64, 64),
        config: ICMConfig | None = None,
        learning_rate: float = 1e-3,
    ):
        super().__init__(codec)
        config = config or ICMConfig()
        feature_dim, self.forward_weight = config.feature_dim, config.forward_weight
        self.obs_norm = ObservationNormaliser(self.observation_space)
        action_dim = self.action_encoder.dim
        self.encoder = mlp(self.obs_dim, hidden_sizes, feature_dim)
        self.inverse = mlp(2 * feature_dim, hidden_sizes, action_dim)
        self.forward_model = mlp(feature_dim + action_dim, hidden_sizes, feature_dim)
        self.optim = GuardedAdam(list(self.parameters()), learning_rate)

    def update_statistics(self, batch: TransitionBatch) -> None:
        self.obs_norm.update(np.concatenate([batch.obs, batch.next_obs]))

    def _features(self, batch: TransitionBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``φ(s)``, ``φ(s')`` ``(n, feature_dim)`` and the encoded actions ``(n, action_dim)``."""
        features = self.encoder(self.tensor(self.obs_norm(np.concatenate([batch.obs, batch.next_obs]))))
        now, after = features.split(len(batch))
        return now, after, self.tensor(self.action_encoder.encode(batch.actions))

    def _forward_errors(self, now: torch.Tensor, after: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        predicted = self.forward_model(torch.cat([now.detach(), actions], dim=-1))
        return 0.5 * (predicted - after.detach()).pow(2).sum(-1)

    def inverse_loss(self, now: torch.Tensor, after: torch.Tensor, batch: TransitionBatch) -> torch.Tensor:
        """Mean inverse-dynamics loss of a batch: how badly ``(φ(s), φ(s'))`` tells the action."""
        predicted = self.inverse(torch.cat([now, after], dim=-1))
        encoder = self.action_encoder
        if isinstance(encoder.space, spaces.Box):
            return (predicted - self.tensor(encoder.encode(batch.actions))).pow(2).sum(-1).mean()
        targets = torch.as_tensor(batch.actions - encoder.starts, dtype=torch.long, device=predicted.device)
        loss = predicted.new_zeros(())
        for column, logits in enumerate(predicted.split(encoder.sizes, dim=-1)):  # one head per component
            loss = loss + F.cross_entropy(logits, targets[:, column])
        return loss

    def _score(self, batch: TransitionBatch) -> torch.Tensor:
        with torch.no_grad():
            return self._forward_errors(*self._features(batch))

    def _loss_terms(self, batch: TransitionBatch) -> tuple[LossTerms, dict[str, torch.Tensor]]:
        now, after, actions = self._features(batch)
        inverse = self.inverse_loss(now, after, batch)
        forward = self._forward_errors(now, after, actions).mean()
        loss = (1.0 - self.forward_weight) * inverse + self.forward_weight * forward
        return [(loss, self.optim)], {"icm_inverse": inverse.detach(), "icm_forward": forward.detach()}

    def optimisers(self) -> dict[str, GuardedAdam]:
        return {"icm": self.optim}

    def statistics(self) -> dict[str, RunningMeanStd]:
        return {"obs": self.obs_norm.stats}
