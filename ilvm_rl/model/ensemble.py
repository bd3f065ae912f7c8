"""An ensemble of ILVMs whose disagreement measures what the data have not yet pinned down.

Every member is fitted to the same batches from its own random initialisation. Where the data
determine the outcome distribution, random or not, the members converge to it; where data are
missing, each member extrapolates in its own way. Their disagreement is therefore an *epistemic*
signal: it fades on a noisy TV once the noise is learned, and it depends only on the context and on
model samples, never on the one observed outcome, so that outcome's randomness adds no variance.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from ilvm_rl.model.ilvm import ILVM, ModelConfig, ModelLoss


class ILVMEnsemble(nn.Module):
    """``size`` independently initialised ILVMs of one architecture, trained on the same data.

    Args:
        context_dim: width of the context ``c`` (0 for state models).
        target_dim: width of the target ``x``.
        config: settings shared by every member.
        size: number of members, at least 2.
    """

    def __init__(self, context_dim: int, target_dim: int, config: ModelConfig, size: int):
        super().__init__()
        self.config = config
        if size < 2:
            raise ValueError(f"an ensemble needs at least 2 members to disagree, got size={size}")
        self.members = nn.ModuleList(ILVM(context_dim, target_dim, config) for _ in range(size))

    def _members(self) -> list[ILVM]:
        return cast(list[ILVM], list(self.members))

    def model_parameters(self) -> list[nn.Parameter]:
        """Every member's prior, posterior and decoder parameters."""
        return [p for member in self._members() for p in member.model_parameters()]

    def critic_parameters(self) -> list[nn.Parameter]:
        """Every member's critic parameters (empty without the adversarial objective)."""
        return [p for member in self._members() for p in member.critic_parameters()]

    def loss(self, context: torch.Tensor | None, target: torch.Tensor) -> ModelLoss:
        """Members' losses summed (each member's gradient is its own), metrics averaged over members."""
        losses = [member.loss(context, target) for member in self._members()]
        critics = [loss.critic for loss in losses if loss.critic is not None]
        metrics = {name: torch.stack([loss.metrics[name] for loss in losses]).mean() for name in losses[0].metrics}
        return ModelLoss(
            model=torch.stack([loss.model for loss in losses]).sum(),
            critic=torch.stack(critics).sum() if critics else None,
            metrics=metrics,
        )

    @torch.no_grad()
    def disagreement(self, context: torch.Tensor, k: int) -> torch.Tensor:
        """How far apart the members' mean predictions are, shape ``(B,)``.

        The variance across members of their sample means, summed over target dimensions, minus
        its part that comes from estimating each mean from ``k`` samples (the members' average
        sample variance over ``k``). That makes it unbiased: zero in expectation where the members
        agree on the mean, however random the outcome, and possibly slightly negative; it is not
        clipped. Means are compared rather than whole distributions because a member's error in the
        shape of a broad distribution (a TV's noise) never vanishes and would pay forever, while
        means of learned noise converge.

        Args:
            context: ``(B, context_dim)``.
            k: samples drawn from each member per context, at least 2.
        """
        samples = torch.stack([member.sample(context, k) for member in self._members()])  # (M, k, B, D)
        between = samples.mean(1).var(0).sum(-1)
        within = samples.var(1).mean(0).sum(-1) / k
        return between - within
