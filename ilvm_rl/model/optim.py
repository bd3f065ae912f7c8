"""Gradient steps that refuse non-finite losses or gradients instead of corrupting the weights."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from ilvm_rl.model.ensemble import ILVMEnsemble
from ilvm_rl.model.ilvm import ILVM, ModelLoss

ADVERSARIAL_BETAS = (0.5, 0.9)
"""Adam's moment decays for both players of an adversarial game: GANs train stably with a short memory."""


class GuardedAdam:
    """Adam over a fixed parameter list with gradient-norm clipping.

    Args:
        params: the parameters this optimiser owns.
        learning_rate: Adam step size.
        max_grad_norm: the gradients of each clip group are clipped to this norm.
        betas: Adam's moment decays; adversarial games train more stably with a short first one.
        clip_groups: ``params`` split into groups whose gradients are clipped each alone, in the
            order of ``params`` (None: one group). An ensemble clips each member alone, so that one
            member's spike does not shrink the other members' steps.

    Raises:
        ValueError: ``clip_groups`` are not ``params`` in order.
    """

    def __init__(
        self,
        params: Sequence[nn.Parameter],
        learning_rate: float,
        max_grad_norm: float = 10.0,
        betas: tuple[float, float] = (0.9, 0.999),
        clip_groups: Sequence[Sequence[nn.Parameter]] | None = None,
    ):
        self.params = list(params)
        self.clip_groups = [self.params] if clip_groups is None else [list(group) for group in clip_groups]
        if [id(p) for group in self.clip_groups for p in group] != [id(p) for p in self.params]:
            raise ValueError("clip_groups must split params into consecutive groups, in the order of params")
        self.optimizer = torch.optim.Adam(self.params, lr=learning_rate, betas=betas)
        self.max_grad_norm = max_grad_norm

    @classmethod
    def clipped_per_group(
        cls,
        groups: Sequence[Sequence[nn.Parameter]],
        learning_rate: float,
        max_grad_norm: float = 10.0,
        betas: tuple[float, float] = (0.9, 0.999),
    ) -> GuardedAdam:
        """One Adam over every parameter of ``groups``, each group's gradients clipped alone."""
        return cls([p for group in groups for p in group], learning_rate, max_grad_norm, betas, groups)

    def clip_gradients(self) -> list[torch.Tensor]:
        """Clip each group's gradients to ``max_grad_norm``; the norms before clipping, one per group."""
        return [nn.utils.clip_grad_norm_(group, self.max_grad_norm) for group in self.clip_groups]


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
    norms = [norm for _, optim in terms for norm in optim.clip_gradients()]
    if not all(bool(torch.isfinite(norm)) for norm in norms):
        for _, optim in terms:
            optim.optimizer.zero_grad(set_to_none=True)
        return False
    for _, optim in terms:
        optim.optimizer.step()
    return True


class ModelOptimisers:
    """The optimisers of an ILVM (or an ensemble of them): one for the prior, posterior and decoder
    and, with the ``adversarial`` objective, one for the critic.

    Args:
        model: the model whose parameters they own.
        learning_rate: Adam step size of both.
        max_grad_norm: each member's gradients are clipped to this norm, alone (``math.inf``: never).
    """

    def __init__(self, model: ILVM | ILVMEnsemble, learning_rate: float, max_grad_norm: float = 10.0):
        members = model.member_models() if isinstance(model, ILVMEnsemble) else [model]
        critic_groups = [member.critic_parameters() for member in members]
        has_critic = any(critic_groups)
        betas = ADVERSARIAL_BETAS if has_critic else (0.9, 0.999)
        model_groups = [member.model_parameters() for member in members]
        self.model = GuardedAdam.clipped_per_group(model_groups, learning_rate, max_grad_norm, betas)
        self.critic = (
            GuardedAdam.clipped_per_group(critic_groups, learning_rate, max_grad_norm, betas) if has_critic else None
        )

    def by_name(self) -> dict[str, GuardedAdam]:
        """``model`` and, with a critic, ``critic``: the names checkpoints keep their states under."""
        return {"model": self.model, **({"critic": self.critic} if self.critic is not None else {})}

    def terms(self, loss: ModelLoss) -> list[tuple[torch.Tensor, GuardedAdam]]:
        """Each loss of ``loss`` paired with the optimiser that minimises it, for :func:`guarded_step`."""
        terms = [(loss.model, self.model)]
        if loss.critic is not None and self.critic is not None:
            terms.append((loss.critic, self.critic))
        return terms

    def step(self, loss: ModelLoss) -> dict[str, float] | None:
        """One guarded step on ``loss``: its metrics as floats, or None if the step was skipped."""
        if not guarded_step(self.terms(loss)):
            return None
        return {name: float(value) for name, value in loss.metrics.items()}


def average_steps(steps: Iterable[dict[str, float] | None]) -> tuple[dict[str, float], int]:
    """Take the steps of a training loop and average what they report.

    Args:
        steps: the metrics of each step taken, or None for a step skipped for a non-finite value;
            drawn lazily, so each step runs when it is reached.

    Returns:
        The mean of each metric over the steps taken, as ``loss/<name>`` (empty if none was taken),
        and the number of steps skipped.
    """
    totals: dict[str, float] = {}
    taken = skipped = 0
    for metrics in steps:
        if metrics is None:
            skipped += 1
            continue
        taken += 1
        for name, value in metrics.items():
            totals[name] = totals.get(name, 0.0) + value
    return ({f"loss/{name}": value / taken for name, value in totals.items()} if taken else {}), skipped
