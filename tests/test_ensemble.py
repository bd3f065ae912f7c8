"""The ensemble's disagreement: epistemic, so learned randomness stops paying while the unseen pays."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from test_model import bimodal_batch
from torch import nn

from ilvm_rl.data.replay import TransitionBatch
from ilvm_rl.data.spaces import TransitionCodec
from ilvm_rl.exploration.bonus import DisagreementConfig, ILVMBonus
from ilvm_rl.exploration.checkpoint import load_explorer, save_explorer
from ilvm_rl.exploration.explorer import ExplorationConfig, Explorer
from ilvm_rl.model import ModelConfig
from ilvm_rl.model import ensemble as ensemble_module
from ilvm_rl.model.ensemble import ILVMEnsemble
from ilvm_rl.model.optim import GuardedAdam, ModelOptimisers, guarded_step


def test_disagreement_is_near_zero_where_members_agree_and_grows_where_they_differ() -> None:
    torch.manual_seed(0)
    ensemble = ILVMEnsemble(2, 3, ModelConfig(objectives=("energy",), latent_dim=3), size=2, anchor_scale=0.0)
    ensemble.members[0].prior_net[-1].bias.data[3:] += 1.0  # a broad, random outcome: wide latents
    ensemble.members[1].load_state_dict(ensemble.members[0].state_dict())
    context = torch.randn(4000, 2)
    agree = ensemble.disagreement(context, k=16)
    # identical members: only the spread of the 16-sample means is left, and it is subtracted
    assert abs(float(agree.mean())) < 4 * float(agree.std()) / len(agree) ** 0.5
    assert abs(float(agree.mean())) < 0.05
    ensemble.members[1].decoder[-1].bias.data += 0.5  # the same spread around another mean
    differ = ensemble.disagreement(context, k=16)
    assert float(differ.mean()) > 0.2


def test_disagreement_scored_in_chunks_equals_each_context_scored_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    ensemble = ILVMEnsemble(2, 3, ModelConfig(objectives=("energy",)), size=3)
    context = torch.randn(5, 2)
    monkeypatch.setattr(ensemble_module, "SCORE_CHUNK_VALUES", 2 * 3 * 4)  # two contexts a chunk at k=4
    torch.manual_seed(1)
    chunked = ensemble.disagreement(context, k=4)
    torch.manual_seed(1)
    alone = torch.cat([ensemble.disagreement(context[start : start + 2], k=4) for start in range(0, 5, 2)])
    assert chunked.shape == (5,)
    torch.testing.assert_close(chunked, alone)


def test_disagreement_fades_on_learned_randomness_and_stays_on_the_unseen(rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    config = ModelConfig(objectives=("energy",), latent_dim=2, hidden_sizes=(32, 32), n_samples=16)
    ensemble = ILVMEnsemble(1, 1, config, size=3)
    optim = GuardedAdam(ensemble.model_parameters(), 3e-3)
    context = torch.linspace(-1, 1, 200).unsqueeze(1)
    before = ensemble.disagreement(context, 64)
    for _ in range(800):
        assert guarded_step([(ensemble.loss(*bimodal_batch(rng, 256)).model, optim)])
    seen = ensemble.disagreement(context, 64)
    unseen = ensemble.disagreement(torch.full((200, 1), 6.0), 64)
    # every outcome is random (x = c ± 1), yet once learned the members agree on its distribution
    assert float(seen.mean()) < 0.2 * float(before.mean())
    assert abs(float(seen.mean())) < 0.05
    # off the data the members part ways: 0.07-0.21 nats over seeds 0-2, against under 0.001 where seen
    assert float(unseen.mean()) > 20 * abs(float(seen.mean())) + 0.03
    assert ensemble.loss(*bimodal_batch(rng, 8)).critic is None


def test_an_ensemble_of_one_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match="size must be >= 2"):
        DisagreementConfig(size=1)


def test_disagreement_module_round_trips_through_its_checkpoint(tmp_path, rng: np.random.Generator) -> None:
    obs_space = spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
    config = ExplorationConfig(
        bonus=DisagreementConfig(size=2), batch_size=16, model=ModelConfig(objectives=("energy",))
    )
    explorer = Explorer(config, obs_space, spaces.Discrete(2), n_envs=2, seed=0)
    for _ in range(8):
        obs = rng.uniform(-1, 1, size=(2, 3)).astype(np.float32)
        explorer.observe(obs, rng.integers(2, size=2), obs * 0.5, np.zeros(2, bool), np.zeros(2, bool))
    explorer.rollout_advantages(progress=0.0, last_obs=obs)
    assert "loss/energy" in explorer.update(recent=16)
    save_explorer(explorer, tmp_path / "module")
    restored = load_explorer(tmp_path / "module", obs_space, spaces.Discrete(2))
    for part in ("bonus_model", "int_critic"):
        trained, loaded = getattr(explorer, part), getattr(restored, part)
        for before, after in zip(trained.parameters(), loaded.parameters(), strict=True):
            assert torch.equal(before, after)
    assert torch.equal(explorer.torch_rng_state, restored.torch_rng_state)


def test_next_obs_target_is_the_scaled_next_observation(rng: np.random.Generator) -> None:
    obs_space = spaces.Box(-2.0, 2.0, (3,), dtype=np.float32)
    settings = DisagreementConfig(size=2, space="observation", target="next_obs")
    bonus = ILVMBonus(TransitionCodec(obs_space, spaces.Discrete(2)), settings)
    obs = rng.uniform(-2, 2, size=(5, 3)).astype(np.float32)
    batch = TransitionBatch(obs, np.zeros((5, 1), np.float32), obs[::-1].copy(), np.zeros(5, bool), np.zeros(5, bool))
    context, target = bonus.model_inputs(batch)
    assert context is not None and context.shape == (5, 3 + 2)
    np.testing.assert_allclose(target.numpy(), obs[::-1] / 2.0, rtol=1e-6)
    assert bonus.score(batch).shape == (5,)


def test_each_member_is_clipped_alone_so_one_spike_leaves_the_others_step_whole() -> None:
    torch.manual_seed(0)
    ensemble = ILVMEnsemble(2, 3, ModelConfig(objectives=("energy",), hidden_sizes=(8,)), size=2)
    optims = ModelOptimisers(ensemble, 1e-3, max_grad_norm=1.0)
    spiking, calm = ensemble.members
    # gradients of 1e6 on every parameter of one member, 1e-4 (a norm far below the clip) on the other
    loss = sum(1e6 * p.sum() for p in spiking.model_parameters()) + sum(1e-4 * p.sum() for p in calm.model_parameters())
    assert guarded_step([(loss, optims.model)])
    for p in calm.model_parameters():
        assert p.grad is not None
        torch.testing.assert_close(p.grad, torch.full_like(p, 1e-4))
    spiking_norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in spiking.model_parameters()]))
    assert float(spiking_norm) == pytest.approx(1.0, rel=1e-4)


def test_clip_groups_that_are_not_the_parameters_in_order_are_refused() -> None:
    first, second = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="clip_groups"):
        GuardedAdam([first, second], 1e-3, clip_groups=[[second], [first]])
