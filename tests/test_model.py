"""The ILVM learns conditional distributions, and its scores behave as DESIGN.md says."""

import numpy as np
import pytest
import torch

from ilvm_rl.model import ILVM, ModelConfig, energy_score, excess_error
from ilvm_rl.model.networks import mlp, mlp_on_pair
from ilvm_rl.model.optim import GuardedAdam, ModelOptimisers, guarded_step


def bimodal_batch(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x = c ± 1 with equal odds: a regressor would predict c, where no outcome ever lands."""
    context = rng.uniform(-1, 1, size=(n, 1))
    target = context + rng.choice([-1.0, 1.0], size=(n, 1))
    return torch.tensor(context, dtype=torch.float32), torch.tensor(target, dtype=torch.float32)


def fit(model: ILVM, batches, steps: int, lr: float = 3e-3) -> None:
    # the adversarial game (short-memory Adam, see ModelOptimisers) trains with a smaller step
    optims = ModelOptimisers(model, lr if model.critic is None else 1e-3)
    for _ in range(steps):
        assert optims.step(model.loss(*batches())) is not None


CONFIGS = {
    "energy": ModelConfig(objectives=("energy",), latent_dim=2, hidden_sizes=(32, 32)),
    "elbo": ModelConfig(objectives=("elbo",), latent_dim=2, hidden_sizes=(32, 32), kl_weight=0.5, huber_delta=0.1),
    "adversarial": ModelConfig(
        objectives=("adversarial",), latent_dim=1, hidden_sizes=(32, 32), critic_hidden_sizes=(32, 32)
    ),
}
STEPS = {"energy": 800, "elbo": 1500, "adversarial": 3000}


@pytest.mark.parametrize("objective", list(CONFIGS))
def test_samples_cover_both_modes_of_a_bimodal_outcome(objective: str, rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    model = ILVM(1, 1, CONFIGS[objective])
    fit(model, lambda: bimodal_batch(rng, 256), STEPS[objective])
    with torch.no_grad():
        samples = model.sample(torch.zeros(1, 1), k=400)[:, 0, 0].numpy()
    upper, lower = np.mean(samples > 0.5), np.mean(samples < -0.5)
    middle = np.mean(np.abs(samples) < 0.3)
    assert upper > 0.25 and lower > 0.25, (upper, lower)
    assert middle < 0.15, middle  # where the mean of the outcomes lies, and no outcome does


def test_kl_is_non_negative(rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    model = ILVM(3, 2, ModelConfig(objectives=("elbo",)))
    context = torch.tensor(rng.normal(size=(64, 3)), dtype=torch.float32)
    target = torch.tensor(rng.normal(scale=5, size=(64, 2)), dtype=torch.float32)
    surprise = model.score("latent_surprise", context, target)
    assert surprise.shape == (64,)
    assert torch.all(surprise >= 0)


def test_excess_error_ignores_learned_randomness_but_flags_the_unseen(rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    model = ILVM(1, 1, ModelConfig(objectives=("energy",), latent_dim=2, hidden_sizes=(32, 32), n_samples=16))
    fit(model, lambda: bimodal_batch(rng, 256), 800)
    seen_context, seen_target = bimodal_batch(rng, 4000)
    seen = model.score("excess_error", seen_context, seen_target)
    # squared error of a sample against a random outcome is about 2 per transition here; the
    # learned spread cancels it
    with torch.no_grad():
        raw_error = (model.sample(seen_context, 1)[0] - seen_target).pow(2).sum(-1).mean()
    assert raw_error > 1.0
    assert abs(float(seen.mean())) < 0.25 * float(raw_error)
    unseen = model.score("excess_error", torch.full((100, 1), 0.0), torch.full((100, 1), 4.0))
    assert float(unseen.mean()) > 5.0 * abs(float(seen.mean())) + 1.0


def test_latent_surprise_is_low_on_a_learned_deterministic_transition(rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    model = ILVM(1, 1, ModelConfig(objectives=("energy", "elbo"), latent_dim=2, hidden_sizes=(32, 32)))

    def batch():
        context = torch.tensor(rng.uniform(-1, 1, size=(256, 1)), dtype=torch.float32)
        return context, 2 * context

    fit(model, batch, 800)
    context = torch.linspace(-1, 1, 100).unsqueeze(1)
    seen = model.score("latent_surprise", context, 2 * context)
    unseen = model.score("latent_surprise", context, 2 * context + 3)
    assert float(unseen.mean()) > 3 * float(seen.mean())
    assert float((unseen > seen).float().mean()) > 0.95


def test_state_model_without_context_samples_and_encodes(rng: np.random.Generator) -> None:
    model = ILVM(0, 3, ModelConfig(objectives=("elbo",)))
    target = torch.tensor(rng.normal(size=(8, 3)), dtype=torch.float32)
    assert model.sample(None, k=5, batch=8).shape == (5, 8, 3)
    assert model.encode(None, target).shape == (8, model.config.latent_dim)
    assert model.score("novelty", None, target).shape == (8,)
    with pytest.raises(ValueError, match="context"):
        ILVM(2, 3).sample(None, k=2)


def test_energy_score_and_excess_error_hand_computed() -> None:
    samples = torch.tensor([[[0.0]], [[2.0]]])  # K=2, B=1, D=1
    target = torch.tensor([[1.0]])
    # E|x̂ − x| = 1, E|x̂ − x̂′| over k≠k′ = 2
    assert torch.allclose(energy_score(samples, target), torch.tensor([1.0 - 0.5 * 2.0]), atol=1e-5)
    # E(x − x̂)² = 1, E(x̂ − x̂′)² = 4
    assert torch.allclose(excess_error(samples, target), torch.tensor([1.0 - 4.0]))


def test_scores_that_need_an_untrained_part_are_refused() -> None:
    with pytest.raises(ValueError, match="posterior"):
        ModelConfig(objectives=("energy",)).check_score("latent_surprise")
    with pytest.raises(ValueError, match="unknown objective"):
        ModelConfig(objectives=("gan",))  # type: ignore[arg-type]


def test_non_finite_loss_skips_the_step() -> None:
    model = ILVM(1, 1)
    before = [p.detach().clone() for p in model.parameters()]
    optim = GuardedAdam(model.model_parameters(), 1e-2)
    loss = model.loss(torch.zeros(4, 1), torch.full((4, 1), float("nan")))
    assert not guarded_step([(loss.model, optim)])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_energy_score_and_excess_error_match_their_definitions_over_every_pair_of_samples() -> None:
    torch.manual_seed(0)
    samples, target = torch.randn(5, 3, 4), torch.randn(3, 4)
    pairs = [(i, j) for i in range(5) for j in range(5) if i != j]
    distance = [(samples[i] - samples[j]).norm(dim=-1) for i, j in pairs]
    spread = torch.stack(distance).mean(0)
    spread_squared = torch.stack([d.pow(2) for d in distance]).mean(0)
    to_target = (samples - target).norm(dim=-1)
    torch.testing.assert_close(energy_score(samples, target), to_target.mean(0) - 0.5 * spread)
    torch.testing.assert_close(excess_error(samples, target), to_target.pow(2).mean(0) - spread_squared)


def test_energy_score_has_a_finite_gradient_where_two_samples_coincide() -> None:
    samples = torch.tensor([[[0.0, 1.0]], [[0.0, 1.0]], [[2.0, 0.0]]], requires_grad=True)
    (gradient,) = torch.autograd.grad(energy_score(samples, torch.zeros(1, 2)).sum(), samples)
    assert torch.isfinite(gradient).all()


def test_the_decoder_reads_a_context_shared_by_many_latents_as_if_each_had_a_copy() -> None:
    torch.manual_seed(0)
    network = mlp(5, (8, 8), 3)
    context, latent = torch.randn(4, 3), torch.randn(6, 4, 2)
    copied = network(torch.cat([context.expand(6, 4, 3), latent], dim=-1))
    torch.testing.assert_close(mlp_on_pair(network, context, latent), copied)
