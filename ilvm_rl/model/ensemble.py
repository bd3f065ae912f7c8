"""An ensemble of ILVMs whose disagreement measures what the data have not yet pinned down.

Every member is fitted to the same batches from its own random initialisation. Where the data
determine the outcome distribution, random or not, the members converge to it; where data are
missing, each member extrapolates in its own way. Their disagreement is therefore an *epistemic*
signal: it fades on a noisy TV once the noise is learned, and it depends only on the context and on
model samples, never on the one observed outcome, so that outcome's randomness adds no variance.

Members trained from different initialisations alone tend to extrapolate alike (a ReLU net that
learned "move right adds a step" says so at positions it never saw), so each member's output is
anchored to a fixed random function of the context, ``x = f_m(c, z) + scale · a_m(c)``, as in
randomised prior functions (Osband et al., 2018): where data exist, ``f_m`` learns to cancel its
anchor; where they do not, the anchors differ and so do the members, as RND's random targets do.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from ilvm_rl.model.ilvm import ILVM, ModelConfig, ModelLoss
from ilvm_rl.model.networks import mlp, variance_mean
from ilvm_rl.model.observations import ObservationLayout

SPREAD_FLOOR = 1e-2
"""Added to the predicted variance of a (normalised) target dimension before dividing by it, so that
dimensions the members predict as deterministic do not turn tiny disagreements into huge bonuses."""


SCORE_CHUNK_VALUES = 2**21
"""Sample values one member draws at a time when scoring (8 MB): contexts are scored in chunks so
that a member's samples stay in cache while their statistics are read; on wide observations the
whole batch's samples take hundreds of megabytes and reading them back costs more than drawing them."""


class ILVMEnsemble(nn.Module):
    """``size`` independently initialised ILVMs of one architecture, trained on the same data.

    Args:
        context_dim: width of the context ``c`` (0 for state models).
        target_dim: width of the target ``x``.
        config: settings shared by every member.
        size: number of members, at least 2.
        anchor_scale: weight of each member's fixed random anchor ``a_m(c)``; 0 turns anchors off.
        layout: the parts of the target (images, named vectors); None for a plain vector.
    """

    def __init__(
        self,
        context_dim: int,
        target_dim: int,
        config: ModelConfig,
        size: int,
        anchor_scale: float = 1.0,
        layout: ObservationLayout | None = None,
    ):
        super().__init__()
        self.config = config
        if size < 2:
            raise ValueError(f"an ensemble needs at least 2 members to disagree, got size={size}")
        if anchor_scale < 0:
            raise ValueError(f"anchor_scale must be >= 0, got {anchor_scale}")
        self.members = nn.ModuleList(ILVM(context_dim, target_dim, config, layout) for _ in range(size))
        self.anchor_scale = anchor_scale
        self.anchors = nn.ModuleList(mlp(context_dim, config.hidden_sizes, target_dim) for _ in range(size))
        self.anchors.requires_grad_(False)

    def _anchor(self, index: int, context: torch.Tensor) -> torch.Tensor:
        """``scale · a_m(c)`` of member ``index``, ``(B, target_dim)``; zeros without a context."""
        if context.shape[-1] == 0 or self.anchor_scale == 0:
            return context.new_zeros(())
        return self.anchor_scale * self.anchors[index](context)

    def member_models(self) -> list[ILVM]:
        """The members, in order."""
        return cast(list[ILVM], list(self.members))

    def model_parameters(self) -> list[nn.Parameter]:
        """Every member's prior, posterior and decoder parameters, member after member."""
        return [p for member in self.member_models() for p in member.model_parameters()]

    def critic_parameters(self) -> list[nn.Parameter]:
        """Every member's critic parameters (empty without the adversarial objective)."""
        return [p for member in self.member_models() for p in member.critic_parameters()]

    def loss(self, context: torch.Tensor | None, target: torch.Tensor) -> ModelLoss:
        """Members' losses summed (each member's gradient is its own); metrics averaged over members."""
        context = target.new_zeros(target.shape[0], 0) if context is None else context
        losses = [
            member.loss(context, target - self._anchor(index, context))
            for index, member in enumerate(self.member_models())
        ]
        critics = [loss.critic for loss in losses if loss.critic is not None]
        metrics = {name: torch.stack([loss.metrics[name] for loss in losses]).mean() for name in losses[0].metrics}
        return ModelLoss(
            model=torch.stack([loss.model for loss in losses]).sum(),
            critic=torch.stack(critics).sum() if critics else None,
            metrics=metrics,
        )

    @torch.no_grad()
    def disagreement(self, context: torch.Tensor, k: int) -> torch.Tensor:
        """Information the outcome would give about which member is right, ``(B,)`` nats.

        Per target dimension, with Gaussian outcomes: ``½ log(1 + between / within)``, where
        ``between`` is the variance across members of their sample means (less the part that comes
        from estimating each mean from ``k`` samples, so that it is zero in expectation where the
        members agree) and ``within`` is the members' average sample variance plus
        :data:`SPREAD_FLOOR`; summed over dimensions. Dividing by the predicted spread is what makes
        a noisy TV stop paying: each member's mean of learned noise keeps jittering with the
        stochastic gradient, so a plain variance of means stays higher on noise than on any learned
        deterministic transition, while relative to the noise's own variance that jitter is
        negligible. The log keeps the untrained ensemble's huge first disagreements from dwarfing
        every later bonus in the running reward scale. It may be slightly negative (down to
        ``½ log(1 − 1/k)`` per dimension) and is not clipped.

        Args:
            context: ``(B, context_dim)``.
            k: samples drawn from each member per context, at least 2.
        """
        rows_per_chunk = max(1, SCORE_CHUNK_VALUES // (k * self.member_models()[0].target_dim))
        return torch.cat([self._disagreement(rows, k) for rows in context.split(rows_per_chunk)])

    def _disagreement(self, context: torch.Tensor, k: int) -> torch.Tensor:
        means, variances = [], []
        for index, member in enumerate(self.member_models()):
            variance, mean = variance_mean(member.sample(context, k))
            variances.append(variance)
            means.append(mean + self._anchor(index, context))
        within = torch.stack(variances).mean(0)
        between = variance_mean(torch.stack(means))[0] - within / k
        return 0.5 * torch.log1p(between / (within + SPREAD_FLOOR)).sum(-1)
