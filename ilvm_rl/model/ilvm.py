"""The implicit latent variable model (ILVM).

``z ~ p(z | c)`` (a learned prior), ``x = f(c, z)`` (a deterministic decoder) and an amortised
posterior ``q(z | c, x)``. The distribution of ``x`` given ``c`` has no closed-form density: it exists
through samples. One class serves the state model (no context) and the transition model (context
``(s, a)``); which one is decided only by ``context_dim``.

All tensors here are already encoded and normalised flat floats; turning Gym spaces into such tensors
is the caller's job (see :mod:`ilvm_rl.data.spaces`). A target that holds images says so by an
:class:`~ilvm_rl.model.observations.ObservationLayout`: the posterior then reads it through a CNN and
the decoder draws it through a transposed CNN, while losses and scores still see flat vectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ilvm_rl.model.networks import gaussian_kl, mlp, mlp_on_pair, split_gaussian, variance_mean
from ilvm_rl.model.observations import ObservationDecoder, ObservationEncoder, ObservationLayout

Objective = Literal["energy", "elbo", "adversarial"]
Score = Literal["excess_error", "latent_surprise", "novelty"]

OBJECTIVES: tuple[Objective, ...] = ("energy", "elbo", "adversarial")
# scores that read the posterior q(z|c,x), which only the elbo and adversarial objectives train
POSTERIOR_SCORES: tuple[Score, ...] = ("latent_surprise", "novelty")


@dataclass(frozen=True)
class ModelConfig:
    """Settings of one ILVM.

    Attributes:
        objectives: training objectives, summed: ``energy`` (energy score of K prior samples),
            ``elbo`` (Huber reconstruction + ``kl_weight`` · KL with free bits) and ``adversarial``
            (a joint critic on ``(c, x, z)`` as in BiGAN/ALI, spectral norm + R1 penalty). No shipped
            recipe uses ``adversarial``: choose it when a score or a representation needs the
            posterior (as ``elbo`` trains it) and the samples must spread over random outcomes, which
            ``elbo``'s fixed-scale reconstruction loss narrows; it costs a critic to train and tune.
        latent_dim: size of ``z``.
        hidden_sizes: hidden widths of the prior, posterior and decoder MLPs.
        n_samples: K, prior samples per example for the energy score and the excess error.
        kl_weight: β on ``KL(q ‖ p)`` in the ELBO.
        free_bits: nats per latent dimension below which the KL is not penalised.
        huber_delta: threshold of the Huber reconstruction loss.
        critic_hidden_sizes: hidden widths of the adversarial critic.
        r1_weight: weight of the zero-centred gradient penalty on real critic inputs.
        adversarial_reconstruction: weight of an extra Huber reconstruction term for ``adversarial``
            (helps the encoder and decoder agree early in training).
    """

    objectives: tuple[Objective, ...] = ("elbo",)
    latent_dim: int = 4
    hidden_sizes: tuple[int, ...] = (64, 64)
    n_samples: int = 8
    kl_weight: float = 1.0
    free_bits: float = 0.05
    huber_delta: float = 1.0
    critic_hidden_sizes: tuple[int, ...] = (64, 64)
    r1_weight: float = 1.0
    adversarial_reconstruction: float = 0.0

    def __post_init__(self) -> None:
        if not self.objectives:
            raise ValueError(f"objectives must name at least one of {OBJECTIVES}")
        for name in self.objectives:
            if name not in OBJECTIVES:
                raise ValueError(f"objectives: unknown objective {name!r}; accepted: {OBJECTIVES}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.n_samples < 2:
            raise ValueError(
                f"n_samples must be >= 2: the energy score and the excess error compare pairs of "
                f"samples, got {self.n_samples}"
            )
        for weight in ("kl_weight", "free_bits", "r1_weight", "adversarial_reconstruction"):
            if getattr(self, weight) < 0:
                raise ValueError(f"{weight} must be >= 0, got {getattr(self, weight)}")
        if self.huber_delta <= 0:
            raise ValueError(f"huber_delta must be > 0, got {self.huber_delta}")

    def check_score(self, score: Score) -> None:
        """Raise if ``score`` needs a part of the model that these objectives do not train."""
        if score in POSTERIOR_SCORES and not {"elbo", "adversarial"} & set(self.objectives):
            raise ValueError(
                f"score {score!r} reads the posterior q(z|c,x), which only the 'elbo' and "
                f"'adversarial' objectives train; objectives are {self.objectives}"
            )


@dataclass
class ModelLoss:
    """Losses of one batch.

    Attributes:
        model: scalar to minimise over :meth:`ILVM.model_parameters`.
        critic: scalar to minimise over :meth:`ILVM.critic_parameters`, or None without a critic.
        metrics: detached scalars for logging, keyed by short names (``energy``, ``recon``, ``kl``...).
    """

    model: torch.Tensor
    critic: torch.Tensor | None
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class ILVM(nn.Module):
    """Conditional implicit latent variable model ``x = f(c, z)``, ``z ~ p(z|c)``.

    Args:
        context_dim: width of the context ``c``; 0 builds an unconditional (state) model.
        target_dim: width of the target ``x``.
        config: architecture and objective settings.
        layout: the parts of the target (images, named vectors); None for a plain vector.
    """

    def __init__(
        self,
        context_dim: int,
        target_dim: int,
        config: ModelConfig | None = None,
        layout: ObservationLayout | None = None,
    ):
        super().__init__()
        if context_dim < 0 or target_dim < 1:
            raise ValueError(f"need context_dim >= 0 and target_dim >= 1, got {context_dim}, {target_dim}")
        self.layout = layout or ObservationLayout.vector(target_dim)
        if self.layout.dim != target_dim:
            raise ValueError(f"the target layout holds {self.layout.dim} values, target_dim is {target_dim}")
        self.config = config or ModelConfig()
        self.context_dim = context_dim
        self.target_dim = target_dim
        latent, hidden = self.config.latent_dim, self.config.hidden_sizes
        if context_dim:
            self.prior_net: nn.Module = mlp(context_dim, hidden, 2 * latent)
        else:
            self.prior_params = nn.Parameter(torch.zeros(2 * latent))
        # image parts of the target are read by a CNN and drawn by a transposed CNN; vector parts
        # pass as they are, so a plain vector model keeps its MLPs (and its checkpoints)
        self.target_reader = ObservationEncoder(self.layout)
        self.posterior_net = mlp(context_dim + self.target_reader.out_dim, hidden, 2 * latent)
        self.decoder: nn.Module = (
            ObservationDecoder(context_dim + latent, hidden, self.layout)
            if self.layout.has_images
            else mlp(context_dim + latent, hidden, target_dim)
        )
        self.critic = (
            mlp(context_dim + target_dim + latent, self.config.critic_hidden_sizes, 1, spectral_norm=True)
            if "adversarial" in self.config.objectives
            else None
        )

    # ----------------------------------------------------------------- parts of the model
    def _context(self, context: torch.Tensor | None, batch: int) -> torch.Tensor:
        if context is None:
            if self.context_dim:
                raise ValueError(f"this model needs a context of width {self.context_dim}")
            return torch.zeros(batch, 0, device=next(self.decoder.parameters()).device)
        if context.shape[-1] != self.context_dim:
            raise ValueError(f"context has width {context.shape[-1]}, the model expects {self.context_dim}")
        return context

    def prior(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-std of ``p(z | c)``, each ``(B, latent_dim)``, for a context ``(B, context_dim)``."""
        if self.context_dim:
            return split_gaussian(self.prior_net(context))
        return split_gaussian(self.prior_params.expand(context.shape[0], -1))

    def posterior(self, context: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-std of ``q(z | c, x)``, each ``(B, latent_dim)``."""
        return split_gaussian(self.posterior_net(torch.cat([context, self.target_reader(target)], dim=-1)))

    def decode(self, context: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """``f(c, z)``: context ``(..., B, context_dim)`` and latent ``(..., B, latent_dim)`` to
        ``(..., B, target_dim)``; the context broadcasts, so K latents per context need no K copies of it."""
        if isinstance(self.decoder, ObservationDecoder):
            return self.decoder(context, latent)
        return mlp_on_pair(self.decoder, context, latent)

    def _prior_samples(self, context: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K reparameterised prior latents ``(k, B, latent_dim)`` and their decodings ``(k, B, target_dim)``."""
        mean, log_std = self.prior(context)
        latent = mean + torch.exp(log_std) * torch.randn(k, *mean.shape, device=mean.device)
        decoded = self.decode(context, latent)
        return latent, decoded

    def model_parameters(self) -> list[nn.Parameter]:
        """Parameters of the prior, posterior and decoder (everything but the critic)."""
        critic_ids = {id(p) for p in self.critic_parameters()}
        return [p for p in self.parameters() if id(p) not in critic_ids]

    def critic_parameters(self) -> list[nn.Parameter]:
        """Parameters of the adversarial critic (empty without one)."""
        return list(self.critic.parameters()) if self.critic is not None else []

    # ----------------------------------------------------------------- public interface
    def sample(self, context: torch.Tensor | None, k: int, batch: int = 1) -> torch.Tensor:
        """Draw ``k`` samples of ``x`` per context.

        Args:
            context: ``(B, context_dim)``, or None for an unconditional model (then ``batch`` rows).
            k: samples per context.

        Returns:
            Samples of shape ``(k, B, target_dim)``.
        """
        rows = batch if context is None else context.shape[0]
        return self._prior_samples(self._context(context, rows), k)[1]

    def encode(self, context: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        """Posterior mean ``E[z | c, x]`` of shape ``(B, latent_dim)``: the representation of ``x``."""
        return self.posterior(self._context(context, target.shape[0]), target)[0]

    def loss(self, context: torch.Tensor | None, target: torch.Tensor) -> ModelLoss:
        """Training losses of a batch: context ``(B, context_dim)`` or None, target ``(B, target_dim)``."""
        context = self._context(context, target.shape[0])
        config = self.config
        metrics: dict[str, torch.Tensor] = {}
        model_loss = target.new_zeros(())
        critic_loss: torch.Tensor | None = None
        if "energy" in config.objectives:
            _, samples = self._prior_samples(context, config.n_samples)
            energy = energy_score(samples, target).mean()
            metrics["energy"] = energy.detach()
            model_loss = model_loss + energy
        if "elbo" in config.objectives:
            recon, kl = self._elbo_terms(context, target)
            free_kl = torch.clamp(kl, min=config.free_bits).sum(-1).mean()
            metrics["recon"], metrics["kl"] = recon.mean().detach(), kl.sum(-1).mean().detach()
            model_loss = model_loss + recon.mean() + config.kl_weight * free_kl
        if self.critic is not None:
            generator, critic_loss, adv_metrics = self._adversarial_losses(context, target)
            metrics.update(adv_metrics)
            model_loss = model_loss + generator
        metrics["total"] = model_loss.detach()
        return ModelLoss(model=model_loss, critic=critic_loss, metrics=metrics)

    @torch.no_grad()
    def score(self, kind: Score, context: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        """How surprising each ``(c, x)`` is to the model, shape ``(B,)``; higher is more surprising.

        Kinds:
            ``excess_error``: ``E_k‖x − x̂_k‖² − E_{k≠k′}‖x̂_k − x̂_k′‖²`` over K prior samples, zero in
            expectation wherever the samples reproduce the outcome distribution (not clipped).
            ``latent_surprise``: ``KL(q(z|c,x) ‖ p(z|c))``.
            ``novelty``: negative ELBO, Huber reconstruction from the posterior mean plus the KL.
        """
        self.config.check_score(kind)
        context = self._context(context, target.shape[0])
        if kind == "excess_error":
            _, samples = self._prior_samples(context, self.config.n_samples)
            return excess_error(samples, target)
        if kind == "latent_surprise":
            return gaussian_kl(*self.posterior(context, target), *self.prior(context)).sum(-1)
        if kind == "novelty":
            recon, kl = self._elbo_terms(context, target, use_mean=True)
            return recon + kl.sum(-1)
        raise ValueError(f"unknown score {kind!r}")

    # ----------------------------------------------------------------- objective terms
    def _elbo_terms(
        self, context: torch.Tensor, target: torch.Tensor, use_mean: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Huber reconstruction ``(B,)`` from ``z ~ q`` and per-dimension KL ``(B, latent_dim)``."""
        mean_q, log_std_q = self.posterior(context, target)
        latent = mean_q if use_mean else mean_q + torch.exp(log_std_q) * torch.randn_like(mean_q)
        recon = F.huber_loss(self.decode(context, latent), target, reduction="none", delta=self.config.huber_delta).sum(
            -1
        )
        return recon, gaussian_kl(mean_q, log_std_q, *self.prior(context))

    def _adversarial_losses(
        self, context: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """BiGAN/ALI losses: the critic tells ``(c, x, z~q)`` from ``(c, f(c,z), z~p)``.

        Returns the generator loss (for prior, posterior and decoder), the critic loss (non-saturating
        logistic loss plus the R1 penalty on real inputs) and logging metrics.
        """
        assert self.critic is not None
        mean_q, log_std_q = self.posterior(context, target)
        latent_q = mean_q + torch.exp(log_std_q) * torch.randn_like(mean_q)
        latent_p, generated = self._prior_samples(context, 1)
        real = torch.cat([context, target, latent_q], dim=-1)
        fake = torch.cat([context, generated[0], latent_p[0]], dim=-1)

        # critic: inputs detached so only its own parameters see this loss
        real_in = real.detach().requires_grad_(True)
        real_logit = self.critic(real_in)
        fake_logit = self.critic(fake.detach())
        critic_loss = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
        (grad,) = torch.autograd.grad(real_logit.sum(), real_in, create_graph=True)
        r1 = grad.pow(2).sum(-1).mean()
        critic_loss = critic_loss + 0.5 * self.config.r1_weight * r1

        # generator and encoder: swap the labels
        generator = F.softplus(self.critic(real)).mean() + F.softplus(-self.critic(fake)).mean()
        if self.config.adversarial_reconstruction:
            recon = F.huber_loss(self.decode(context, latent_q), target, delta=self.config.huber_delta)
            generator = generator + self.config.adversarial_reconstruction * recon
        metrics = {"critic": critic_loss.detach(), "generator": generator.detach(), "r1": r1.detach()}
        return generator, critic_loss, metrics


def _pairwise_mean(samples: torch.Tensor, power: float) -> torch.Tensor:
    """Mean over pairs ``k ≠ k′`` of ``‖x̂_k − x̂_k′‖^power`` (power 1 or 2); samples ``(K, B, D)`` to ``(B,)``.

    Neither builds the ``(K, K, B, D)`` differences, which take gigabytes on one-hot views of a few
    hundred features: squared distances average to twice the samples' variance summed over
    dimensions, and ``cdist`` computes the distances, with a gradient of zero where two coincide.
    """
    k = samples.shape[0]
    if power == 2:
        return 2 * variance_mean(samples)[0].sum(-1)
    if power != 1:
        raise ValueError(f"power must be 1 or 2, got {power}")
    per_context = samples.transpose(0, 1)  # (B, K, D)
    distances = torch.cdist(per_context, per_context, compute_mode="donot_use_mm_for_euclid_dist")
    return distances.sum((1, 2)) / (k * (k - 1))


def energy_score(samples: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Energy score ``E‖x̂ − x‖ − ½ E‖x̂ − x̂′‖`` per example; samples ``(K, B, D)``, target ``(B, D)`` to ``(B,)``.

    A strictly proper scoring rule: its expectation is minimal only when the samples follow the
    distribution of the target.
    """
    to_target = ((samples - target).pow(2).sum(-1) + 1e-12).sqrt().mean(0)
    return to_target - 0.5 * _pairwise_mean(samples, power=1)


def excess_error(samples: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``E_k‖x − x̂_k‖² − E_{k≠k′}‖x̂_k − x̂_k′‖²``; samples ``(K, B, D)``, target ``(B, D)`` to ``(B,)``."""
    return (samples - target).pow(2).sum(-1).mean(0) - _pairwise_mean(samples, power=2)
