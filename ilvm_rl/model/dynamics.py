"""Reference dynamics models for comparison with the ILVM world model.

Both have the ILVM's interface (``loss(context, target)`` and ``sample(context, k)``), so that a
benchmark fits and scores all three the same way:

- :class:`DeterministicDynamics` regresses the mean outcome; where outcomes are random its
  prediction lands between them, where no real outcome is.
- :class:`GaussianDynamics` predicts a mean and a diagonal variance per target feature; it covers a
  fork by widening one Gaussian across both branches, so most of its samples land between them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ilvm_rl.model.ilvm import ModelLoss
from ilvm_rl.model.networks import mlp, split_gaussian


class DeterministicDynamics(nn.Module):
    """``x̂ = g(c)`` trained by squared error.

    Args:
        context_dim: width of the context ``c``.
        target_dim: width of the target ``x``.
        hidden_sizes: hidden widths of ``g``.
    """

    def __init__(self, context_dim: int, target_dim: int, hidden_sizes: Sequence[int] = (128, 128)):
        super().__init__()
        self.net = mlp(context_dim, hidden_sizes, target_dim)

    def loss(self, context: torch.Tensor, target: torch.Tensor) -> ModelLoss:
        """Mean squared error summed over features, for ``(B, context_dim)`` and ``(B, target_dim)``."""
        error = (self.net(context) - target).pow(2).sum(-1).mean()
        return ModelLoss(model=error, critic=None, metrics={"mse": error.detach()})

    def sample(self, context: torch.Tensor, k: int) -> torch.Tensor:
        """The prediction repeated: ``(k, B, target_dim)``."""
        return self.net(context).expand(k, -1, -1)


class GaussianDynamics(nn.Module):
    """``x ~ N(μ(c), diag σ²(c))`` trained by negative log-likelihood.

    Args:
        context_dim: width of the context ``c``.
        target_dim: width of the target ``x``.
        hidden_sizes: hidden widths of the network that outputs ``μ`` and ``log σ``.
    """

    def __init__(self, context_dim: int, target_dim: int, hidden_sizes: Sequence[int] = (128, 128)):
        super().__init__()
        self.net = mlp(context_dim, hidden_sizes, 2 * target_dim)

    def loss(self, context: torch.Tensor, target: torch.Tensor) -> ModelLoss:
        """Gaussian negative log-likelihood (without the constant), summed over features."""
        mean, log_std = split_gaussian(self.net(context))
        nll = (0.5 * ((target - mean) * torch.exp(-log_std)).pow(2) + log_std).sum(-1).mean()
        return ModelLoss(model=nll, critic=None, metrics={"nll": nll.detach()})

    def sample(self, context: torch.Tensor, k: int) -> torch.Tensor:
        """``k`` draws per context: ``(k, B, target_dim)``."""
        mean, log_std = split_gaussian(self.net(context))
        return mean + torch.exp(log_std) * torch.randn(k, *mean.shape, device=mean.device)
