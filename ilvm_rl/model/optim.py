"""Gradient steps that refuse non-finite losses or gradients instead of corrupting the weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class GuardedAdam:
    """Adam over a fixed parameter list with gradient-norm clipping.

    Args:
        params: the parameters this optimiser owns.
        learning_rate: Adam step size.
        max_grad_norm: gradients are clipped to this global norm.
        betas: Adam's moment decays; adversarial games train more stably with a short first one.
    """

    def __init__(
        self,
        params: Sequence[nn.Parameter],
        learning_rate: float,
        max_grad_norm: float = 10.0,
        betas: tuple[float, float] = (0.9, 0.999),
    ):
        self.params = list(params)
        self.optimizer = torch.optim.Adam(self.params, lr=learning_rate, betas=betas)
        self.max_grad_norm = max_grad_norm


def guarded_step(terms: Sequence[tuple[torch.Tensor, GuardedAdam]]) -> bool:
    """Minimise each ``(loss, optimiser)`` pair over that optimiser's parameters only.

    Every loss is back-propagated into its own parameter list (``backward(inputs=...)``), so two
    players of an adversarial game can share one forward pass. Nothing is updated when any loss or
    gradient is non-finite.

    Returns:
        True if the step was taken, False if it was skipped for a non-finite value.
    """
    if not all(bool(torch.isfinite(loss)) for loss, _ in terms):
        return False
    for loss, optim in terms:
        optim.optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=optim.params, retain_graph=True)
    norms = [nn.utils.clip_grad_norm_(optim.params, optim.max_grad_norm) for _, optim in terms]
    if not all(bool(torch.isfinite(norm)) for norm in norms):
        for _, optim in terms:
            optim.optimizer.zero_grad(set_to_none=True)
        return False
    for _, optim in terms:
        optim.optimizer.step()
    return True
