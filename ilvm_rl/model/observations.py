"""Observations that are not flat vectors: images, and several named parts (a Dict space).

The models keep one interface for every observation: a flat float vector ``(B, D)``. An
:class:`ObservationLayout` says how that vector is cut into parts: an image part holds its ``C·H·W``
values in channel-first order, a vector part its values as they are. :class:`ObservationEncoder`
reads the flat vector into features (a small CNN per image part, vector parts as they are) and
:class:`ObservationDecoder` writes one (a transposed CNN per image part, a linear head per vector
part). With them the ILVM's posterior ``q(z | c, x)`` reads an image through a CNN and its decoder
``f(c, z)`` draws one, while every loss and score still sees flat vectors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ilvm_rl.model.networks import mlp, mlp_on_pair

# each convolution halves height and width; three of them turn 36 x 36 pixels into 5 x 5
CNN_CHANNELS = (8, 16, 32)
IMAGE_FEATURES = 64
"""Width of the features the CNN makes of one image part."""


@dataclass(frozen=True)
class ObservationPart:
    """One part of a flat observation vector.

    Attributes:
        name: the part's key in a Dict observation (empty for a plain Box).
        shape: ``(C, H, W)`` of an image part (channel first), ``(D,)`` of a vector part.
    """

    name: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.shape) not in (1, 3) or min(self.shape) < 1:
            raise ValueError(
                f"observation part {self.name!r}: shape {self.shape} is neither a vector (D,) nor an image (C, H, W)"
            )

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class ObservationLayout:
    """How a flat observation vector ``(B, dim)`` is cut into parts, in order.

    Attributes:
        parts: the parts, laid end to end.
    """

    parts: tuple[ObservationPart, ...]

    @classmethod
    def vector(cls, dim: int) -> ObservationLayout:
        """The layout of a plain vector of ``dim`` values."""
        return cls((ObservationPart("", (dim,)),))

    @property
    def dim(self) -> int:
        return sum(part.size for part in self.parts)

    @property
    def has_images(self) -> bool:
        return any(part.is_image for part in self.parts)

    def split(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The parts of ``flat`` ``(..., dim)``, each ``(..., part.size)``."""
        return flat.split([part.size for part in self.parts], dim=-1)


def _conv_stack(channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in CNN_CHANNELS:
        layers += [nn.Conv2d(channels, width, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        channels = width
    return nn.Sequential(*layers)


def _reduced(side: int) -> int:
    """Height or width after the convolutions (each ``⌊(n + 2 − 4) / 2⌋ + 1``)."""
    for _ in CNN_CHANNELS:
        side = (side - 2) // 2 + 1
    return side


class ImageEncoder(nn.Module):
    """A small CNN: flat channel-first pixels ``(B, C·H·W)`` to features ``(B, out_dim)``.

    Args:
        shape: ``(C, H, W)``; height and width of at least 8.
        out_dim: features out.
    """

    def __init__(self, shape: tuple[int, ...], out_dim: int = IMAGE_FEATURES):
        super().__init__()
        channels, height, width = shape
        if min(height, width) < 2 ** len(CNN_CHANNELS):
            raise ValueError(f"images must be at least {2 ** len(CNN_CHANNELS)} pixels high and wide, got {shape}")
        self.shape = shape
        self.convs = _conv_stack(channels)
        self.linear = nn.Linear(CNN_CHANNELS[-1] * _reduced(height) * _reduced(width), out_dim)

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        images = flat.reshape(-1, *self.shape)
        features = self.linear(self.convs(images).flatten(1))
        return torch.relu(features).reshape(*flat.shape[:-1], -1)


class ImageDecoder(nn.Module):
    """The mirror of :class:`ImageEncoder`: features ``(..., in_dim)`` to flat pixels ``(..., C·H·W)``.

    A linear layer makes a coarse grid of ``⌈H/8⌉ × ⌈W/8⌉`` cells, three transposed convolutions
    double it three times and the result is cropped to ``H × W``.

    Args:
        in_dim: features in.
        shape: ``(C, H, W)`` of the image drawn.
    """

    def __init__(self, in_dim: int, shape: tuple[int, ...]):
        super().__init__()
        channels, height, width = shape
        self.shape = shape
        scale = 2 ** len(CNN_CHANNELS)
        self.grid = (CNN_CHANNELS[-1], -(-height // scale), -(-width // scale))
        self.linear = nn.Linear(in_dim, math.prod(self.grid))
        layers: list[nn.Module] = []
        widths = [*CNN_CHANNELS[::-1][1:], channels]
        previous = CNN_CHANNELS[-1]
        for index, width_out in enumerate(widths):
            layers.append(nn.ConvTranspose2d(previous, width_out, kernel_size=4, stride=2, padding=1))
            if index < len(widths) - 1:  # the last layer writes pixel values, unbounded
                layers.append(nn.ReLU())
            previous = width_out
        self.deconvs = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch_shape = features.shape[:-1]
        grid = torch.relu(self.linear(features.reshape(-1, features.shape[-1]))).reshape(-1, *self.grid)
        _, height, width = self.shape
        images = self.deconvs(grid)[:, :, :height, :width]
        return images.reshape(*batch_shape, -1)


class ObservationEncoder(nn.Module):
    """Flat observations ``(..., layout.dim)`` to features ``(..., out_dim)``: each image part through
    its own :class:`ImageEncoder`, vector parts as they are, concatenated in layout order.

    Args:
        layout: the parts of the observation.
        image_features: features per image part.
    """

    def __init__(self, layout: ObservationLayout, image_features: int = IMAGE_FEATURES):
        super().__init__()
        self.layout = layout
        self.readers = nn.ModuleList(
            [ImageEncoder(part.shape, image_features) if part.is_image else nn.Identity() for part in layout.parts]
        )
        self.out_dim = sum(image_features if part.is_image else part.size for part in layout.parts)

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        pieces = [reader(piece) for reader, piece in zip(self.readers, self.layout.split(flat), strict=True)]
        return torch.cat(pieces, dim=-1)


class ObservationDecoder(nn.Module):
    """A context and a latent to flat observations ``(..., layout.dim)``: an MLP trunk, then per part a
    transposed CNN (:class:`ImageDecoder`) or a linear head, concatenated in layout order.

    Args:
        in_dim: context and latent widths together.
        hidden_sizes: widths of the trunk; the last one feeds every head.
        layout: the parts of the observation.
    """

    def __init__(self, in_dim: int, hidden_sizes: Sequence[int], layout: ObservationLayout):
        super().__init__()
        if not hidden_sizes:
            raise ValueError("a decoder of image parts needs at least one hidden layer for its heads to share")
        self.trunk = nn.Sequential(mlp(in_dim, hidden_sizes[:-1], hidden_sizes[-1]), nn.ReLU())
        self.heads = nn.ModuleList(
            [
                ImageDecoder(hidden_sizes[-1], part.shape) if part.is_image else nn.Linear(hidden_sizes[-1], part.size)
                for part in layout.parts
            ]
        )

    def forward(self, context: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Context ``(..., B, context_dim)`` broadcast against latents ``(..., B, latent_dim)``, as in
        :func:`mlp_on_pair`."""
        mlp_part, activation = self.trunk
        shared = activation(mlp_on_pair(mlp_part, context, latent))
        return torch.cat([head(shared) for head in self.heads], dim=-1)
