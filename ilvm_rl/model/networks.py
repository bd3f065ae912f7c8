"""Small building blocks shared by the models: MLPs and diagonal-Gaussian helpers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def mlp(
    in_dim: int,
    hidden_sizes: Sequence[int],
    out_dim: int,
    spectral_norm: bool = False,
) -> nn.Sequential:
    """A ReLU MLP ``in_dim -> hidden_sizes... -> out_dim`` with a linear output layer.

    Args:
        in_dim: input features.
        hidden_sizes: width of each hidden layer.
        out_dim: output features.
        spectral_norm: wrap every linear layer in spectral normalisation (for critics).
    """
    layers: list[nn.Module] = []
    width = in_dim
    for size in [*hidden_sizes, out_dim]:
        linear = nn.Linear(width, size)
        layers.append(nn.utils.parametrizations.spectral_norm(linear) if spectral_norm else linear)
        layers.append(nn.ReLU())
        width = size
    return nn.Sequential(*layers[:-1])


def mlp_on_pair(network: nn.Module, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``network(cat([first, second], -1))`` for an :func:`mlp`, with ``first`` broadcast against ``second``.

    The first layer multiplies ``first`` once however many rows of ``second`` share it: a decoder of
    K latents per context would otherwise multiply every context K times, most of its cost where the
    context is a wide observation.

    Args:
        network: an :func:`mlp` (its first module is the linear layer that reads the pair).
        first: ``(..., B, first_dim)``, broadcastable against ``second``'s leading dimensions.
        second: ``(..., B, second_dim)``.
    """
    head, *rest = network.children()
    if not isinstance(head, nn.Linear):
        raise TypeError(f"mlp_on_pair needs a network that starts with a linear layer, got {type(head).__name__}")
    split = first.shape[-1]
    hidden = F.linear(second, head.weight[:, split:]) + F.linear(first, head.weight[:, :split], head.bias)
    for layer in rest:
        hidden = layer(hidden)
    return hidden


def variance_mean(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unbiased variance and mean over the first dimension; by hand, because ``Tensor.var`` over a
    leading dimension runs several times slower on CPU."""
    mean = values.mean(0)
    return (values - mean).pow(2).sum(0) / (values.shape[0] - 1), mean


# log-std bounds keep exp() finite and the KL well conditioned
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def split_gaussian(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``(..., 2d)`` network outputs into a mean and a bounded log-std, each ``(..., d)``."""
    mean, raw_log_std = params.chunk(2, dim=-1)
    log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(raw_log_std) + 1.0)
    return mean, log_std


def gaussian_kl(
    mean_q: torch.Tensor, log_std_q: torch.Tensor, mean_p: torch.Tensor, log_std_p: torch.Tensor
) -> torch.Tensor:
    """``KL(N(mean_q, std_q²) ‖ N(mean_p, std_p²))`` per dimension, same shape as the inputs."""
    var_ratio = torch.exp(2.0 * (log_std_q - log_std_p))
    mean_term = ((mean_q - mean_p) * torch.exp(-log_std_p)) ** 2
    return 0.5 * (var_ratio + mean_term - 1.0) - (log_std_q - log_std_p)
