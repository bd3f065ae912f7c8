"""Representation module: image and Dict observations, the features extractor in its three modes,
pretraining checkpoints, and image and Dict spaces through the exploration bonus, at toy scale."""

from pathlib import Path

import numpy as np
import pytest
import torch
from fast import FAST_FLAGS
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.vec_env import VecNormalize
from toy_envs import ImageEnv

from ilvm_rl import ExplorationCallback, ExplorationConfig, ModelConfig
from ilvm_rl.checkpoint import CheckpointError
from ilvm_rl.cli import main
from ilvm_rl.config import ConfigError
from ilvm_rl.data.spaces import ObservationFlattener, UnsupportedSpaceError
from ilvm_rl.exploration import DisagreementConfig, ILVMScoreConfig
from ilvm_rl.model import ILVM
from ilvm_rl.recipes import load_recipe
from ilvm_rl.representation import (
    ILVMFeaturesExtractor,
    RepresentationCallback,
    RepresentationConfig,
    StateModel,
    load_pretrained,
    pretrain,
    representation_policy_kwargs,
)
from ilvm_rl.representation.state_model import load_state_model_weights

TINY_MODEL = ModelConfig(objectives=("elbo",), latent_dim=3, hidden_sizes=(16,))
IMAGE = spaces.Box(0, 255, (12, 12, 1), dtype=np.uint8)
SPACES = {
    "vector": spaces.Box(-1.0, 1.0, (4,), dtype=np.float32),
    "image_channels_last": IMAGE,
    "image_channels_first": spaces.Box(0, 255, (3, 8, 10), dtype=np.uint8),
    "dict": spaces.Dict({"image": IMAGE, "vector": spaces.Box(-np.inf, np.inf, (2,), dtype=np.float32)}),
}


def tiny(mode: str, **settings) -> RepresentationConfig:
    return RepresentationConfig(mode=mode, batch_size=16, store_capacity=200, model=TINY_MODEL, **settings)


def ppo(config: RepresentationConfig, algo=PPO, dict_obs: bool = False):
    env = make_vec_env(lambda: ImageEnv(dict_obs=dict_obs), n_envs=2, seed=0)
    policy = "MultiInputPolicy" if dict_obs else "MlpPolicy"
    kwargs = representation_policy_kwargs(config, {"net_arch": [8]})
    batch = {"batch_size": 32} if algo is PPO else {}
    return algo(policy, env, n_steps=16, seed=0, policy_kwargs=kwargs, device="cpu", **batch)


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module, prefix: str) -> bool:
    return any(
        not torch.equal(value, module.state_dict()[name]) for name, value in before.items() if name.startswith(prefix)
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A state model pretrained on the toy image task, as the policy observes it (channel first)."""
    folder = tmp_path_factory.mktemp("pretrained")
    pretrain("ImageToy-v0", tiny("frozen", fit_steps=20), folder, steps=64, n_envs=2)
    return folder


@pytest.mark.parametrize("name", list(SPACES))
def test_extractor_output_shape_and_features_dim(name: str, rng: np.random.Generator) -> None:
    space = SPACES[name]
    space.seed(0)
    extractor = ILVMFeaturesExtractor(space, tiny("finetune"))
    assert extractor.features_dim == TINY_MODEL.latent_dim
    samples = [space.sample() for _ in range(5)]
    if isinstance(space, spaces.Dict):
        batch = {key: torch.as_tensor(np.stack([s[key] for s in samples])) for key in space.spaces}
    else:
        batch = torch.as_tensor(np.stack(samples))
    features = extractor(preprocess_obs(batch, space, normalize_images=True))
    assert features.shape == (5, TINY_MODEL.latent_dim)
    assert torch.isfinite(features).all()


def test_flattener_puts_channels_first_the_same_way_for_arrays_and_tensors(rng: np.random.Generator) -> None:
    space = SPACES["dict"]
    flattener = ObservationFlattener(space)
    assert [part.shape for part in flattener.layout.parts] == [(1, 12, 12), (2,)]
    assert flattener.flat_space.dtype == np.float32 and flattener.layout.dim == 146
    image = rng.integers(0, 256, size=(4, 12, 12, 1)).astype(np.uint8)
    vector = rng.normal(size=(4, 2)).astype(np.float32)
    flat = flattener.flatten({"image": image, "vector": vector}, 4)
    np.testing.assert_array_equal(flat[:, :144], image[..., 0].reshape(4, 144))
    np.testing.assert_array_equal(flat[:, 144:], vector)
    as_tensors = flattener.flatten_tensor({"image": torch.as_tensor(image), "vector": torch.as_tensor(vector)})
    np.testing.assert_array_equal(as_tensors.numpy(), flat)
    # a replay of images only stays uint8
    assert ObservationFlattener(IMAGE).flat_space.dtype == np.uint8


@pytest.mark.parametrize(
    "space, named",
    [
        (spaces.Box(0, 1, (4, 4)), "observation space"),
        (spaces.Dict({"ok": IMAGE, "bad": spaces.Discrete(3)}), "part 'bad'"),
        (spaces.Discrete(4), "observation space"),
    ],
)
def test_unsupported_observation_spaces_name_the_part_and_what_is_accepted(space: spaces.Space, named: str) -> None:
    with pytest.raises(UnsupportedSpaceError, match=rf"{named}.*accept a 1-D Box .* a 3-D Box .* Dict"):
        ObservationFlattener(space)


def test_ilvm_reads_and_draws_images_through_its_cnn_pair() -> None:
    flattener = ObservationFlattener(SPACES["dict"])
    model = ILVM(0, flattener.layout.dim, TINY_MODEL, flattener.layout)
    target = torch.rand(6, flattener.layout.dim)
    assert model.sample(None, k=2, batch=6).shape == (2, 6, flattener.layout.dim)
    assert model.encode(None, target).shape == (6, TINY_MODEL.latent_dim)
    assert torch.isfinite(model.loss(None, target).model)
    assert any(isinstance(m, torch.nn.Conv2d) for m in model.target_reader.modules())
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.decoder.modules())


def test_frozen_mode_loads_after_ortho_init_and_keeps_the_weights_through_learn(checkpoint: Path) -> None:
    model = ppo(tiny("frozen"))
    extractor = model.policy.features_extractor
    load_pretrained(model.policy, checkpoint)
    reference = StateModel(extractor.state_model.flattener.space, TINY_MODEL)
    load_state_model_weights(reference, checkpoint)
    loaded = weights(extractor.state_model)
    assert all(torch.equal(value, reference.state_dict()[name]) for name, value in loaded.items())
    heads = weights(model.policy.action_net)
    model.learn(64)
    assert not changed(loaded, extractor.state_model, "")
    assert changed(heads, model.policy.action_net, "")  # the policy itself did learn


@pytest.mark.parametrize("algo", [PPO, A2C])
def test_finetune_mode_trains_the_encoder_by_the_rl_loss(checkpoint: Path, algo) -> None:
    model = ppo(tiny("finetune"), algo)
    load_pretrained(model.policy, checkpoint)
    state_model = model.policy.features_extractor.state_model
    before = weights(state_model)
    model.learn(64)
    assert changed(before, state_model, "model.posterior_net") and changed(before, state_model, "model.target_reader")
    assert not changed(before, state_model, "model.decoder")  # the RL loss never reaches the decoder


def test_online_mode_trains_the_model_by_its_own_objective() -> None:
    config = tiny("online", updates_per_rollout=2)
    without_callback = ppo(config)
    before = weights(without_callback.policy.features_extractor.state_model)
    without_callback.learn(64)
    # the RL loss alone reaches the encoder, never the decoder
    assert not changed(before, without_callback.policy.features_extractor.state_model, "model.decoder")

    model = ppo(config, dict_obs=True)
    state_model = model.policy.features_extractor.state_model
    before = weights(state_model)
    callback = RepresentationCallback(config, seed=0)
    model.learn(64, callback=callback)
    assert callback.trainer is not None and callback.trainer.store.size == 64
    assert changed(before, state_model, "model.posterior_net") and changed(before, state_model, "model.decoder")
    # the unbounded vector part is standardised by statistics of the replay
    assert changed(before, state_model, "half_width")
    # the module's own objective, without the RL loss, reaches the encoder (CNN and posterior MLP)
    before = weights(state_model)
    callback.trainer.update(1)
    assert changed(before, state_model, "model.target_reader") and changed(before, state_model, "model.posterior_net")


def test_online_mode_on_an_off_policy_agent_trains_the_online_network_not_its_target() -> None:
    env = make_vec_env(lambda: ImageEnv(), n_envs=2, seed=0)
    kwargs = representation_policy_kwargs(tiny("online", updates_per_rollout=1), {"net_arch": [8]})
    model = DQN("MlpPolicy", env, learning_starts=0, train_freq=4, batch_size=16, buffer_size=200, seed=0,
                policy_kwargs=kwargs, device="cpu")  # fmt: skip
    online, target = model.q_net.features_extractor.state_model, model.q_net_target.features_extractor.state_model
    before_online, before_target = weights(online), weights(target)
    callback = RepresentationCallback(tiny("online", updates_per_rollout=1), seed=0)
    model.learn(64, callback=callback)
    assert callback.trainer is not None and callback.trainer.state_model is online
    assert callback.trainer.store.size == 64  # every step of both envs
    assert changed(before_online, online, "model.decoder")  # only the model's own objective reaches it
    assert not changed(before_target, target, "model.decoder")  # the target copies it at DQN's pace (every 10,000)


def test_online_mode_needs_one_extractor_for_sacs_actor_and_critic(tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text("extends: sac\ndefault:\n  representation: {mode: online}\n")
    with pytest.raises(ConfigError, match=r"share_features_extractor to true"):
        load_recipe(str(path), "Pendulum-v1")
    path.write_text(
        "extends: sac\ndefault:\n  representation: {mode: online}\n"
        "  algo_kwargs: {policy_kwargs: {share_features_extractor: true}}\n"
    )
    assert load_recipe(str(path), "Pendulum-v1")[0].representation.mode == "online"
    kwargs = representation_policy_kwargs(tiny("online"), {"net_arch": [8], "share_features_extractor": True})
    model = SAC("MlpPolicy", "Pendulum-v1", learning_starts=0, batch_size=16, seed=0, policy_kwargs=kwargs,
                device="cpu")  # fmt: skip
    callback = RepresentationCallback(tiny("online"), seed=0)
    model.learn(32, callback=callback)
    assert callback.trainer is not None and callback.trainer.state_model is model.actor.features_extractor.state_model


def test_pretraining_checkpoint_round_trip(checkpoint: Path, tmp_path: Path) -> None:
    space = spaces.Box(0, 255, (1, 12, 12), dtype=np.uint8)  # what PPO observes of ImageEnv
    first, second = StateModel(space, TINY_MODEL), StateModel(space, TINY_MODEL)
    load_state_model_weights(first, checkpoint)
    load_state_model_weights(second, checkpoint)
    observations = torch.as_tensor(np.stack([space.sample() for _ in range(4)]).reshape(4, -1))
    assert torch.equal(first.features(observations), second.features(observations))
    # the same seed pretrains the same model
    pretrain("ImageToy-v0", tiny("frozen", fit_steps=20), tmp_path / "again", steps=64, n_envs=2)
    again = StateModel(space, TINY_MODEL)
    load_state_model_weights(again, tmp_path / "again")
    assert torch.equal(first.features(observations), again.features(observations))


def test_a_checkpoint_for_another_space_or_model_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"pretrained on the observation space .* but the policy observes"):
        load_state_model_weights(StateModel(spaces.Box(0, 255, (1, 12, 13), dtype=np.uint8), TINY_MODEL), checkpoint)
    other_model = ModelConfig(objectives=("elbo",), latent_dim=5, hidden_sizes=(16,))
    with pytest.raises(CheckpointError, match="model settings"):
        load_state_model_weights(StateModel(spaces.Box(0, 255, (1, 12, 12), dtype=np.uint8), other_model), checkpoint)
    with pytest.raises(CheckpointError, match=r"settings\.json: missing"):
        load_state_model_weights(StateModel(IMAGE, TINY_MODEL), tmp_path)


@pytest.mark.parametrize("dict_obs", [False, True], ids=["image", "dict"])
@pytest.mark.parametrize("score", ["novelty", "excess_error", "disagreement"])
def test_image_and_dict_observations_through_the_bonus(dict_obs: bool, score: str) -> None:
    # SB3's own Dict extractor reads images by NatureCNN, too big for a toy image: use ours
    model = ppo(tiny("finetune"), dict_obs=dict_obs)
    config = ExplorationConfig(
        bonus=DisagreementConfig() if score == "disagreement" else ILVMScoreConfig(score=score),
        int_coef_final=None,  # β held: the module stores every step of the run
        store_capacity=100,
        batch_size=16,
        updates_per_rollout=1,
        model=ModelConfig(objectives=("energy", "elbo"), latent_dim=2, hidden_sizes=(16,), n_samples=4),
    )
    callback = ExplorationCallback(config, seed=0)
    model.learn(64, callback=callback)
    explorer = callback.explorer
    assert explorer.store.size == 64
    assert explorer.store.arrays["obs"].dtype == (np.float32 if dict_obs else np.uint8)
    assert np.all(np.isfinite(model.rollout_buffer.rewards))
    # the store holds the flattened (channel-first) image of each observation
    flat = explorer.store.latest(1).next_obs[0]
    assert set(np.unique(flat[:144]).tolist()) <= {0.0, 255.0} and flat[:144].max() == 255.0


def test_recipe_representation_section_is_checked(tmp_path: Path) -> None:
    recipe, _ = load_recipe("ppo_ilvm_repr_frozen", "ilvm/PixelRoom-v0")
    assert recipe.representation is not None and recipe.representation.mode == "frozen"
    assert recipe.policy == "CnnPolicy"
    path = tmp_path / "recipe.yaml"
    path.write_text("extends: ppo_ilvm_repr\ndefault:\n  representation:\n    mod: frozen\n")
    with pytest.raises(ConfigError, match=r"recipe\.yaml: default\.representation: unknown key 'mod'"):
        load_recipe(str(path), "ilvm/PixelRoom-v0")
    path.write_text(
        "extends: ppo_ilvm_repr\ndefault:\n  algo_kwargs: {policy_kwargs: {features_extractor_class: NatureCNN}}\n"
    )
    with pytest.raises(ConfigError, match=r"default: algo_kwargs\.policy_kwargs\.features_extractor_class is set"):
        load_recipe(str(path), "ilvm/PixelRoom-v0")
    path.write_text("default:\n  representation: {mode: online, model: {objectives: [energy]}}\n")
    with pytest.raises(ConfigError, match=r"default\.representation: .*posterior mean"):
        load_recipe(str(path), "ilvm/PixelRoom-v0")


def test_cli_pretrains_a_checkpoint_that_a_recipe_points_to(tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "repr.yaml"
    recipe.write_text(
        "extends: ppo_ilvm_repr\n"
        "default:\n"
        "  policy: MlpPolicy\n"
        "  representation:\n"
        "    mode: frozen\n"
        "    batch_size: 16\n"
        "    model: {objectives: [elbo], latent_dim: 3, hidden_sizes: [16]}\n"
    )
    out = tmp_path / "pretrained"
    pretrain_flags = ["--agent", str(recipe), "--steps", "64", "--fit-steps", "5", "--out", str(out)]
    assert main(["pretrain", "--env", "ImageToy-v0", *pretrain_flags]) == 0
    assert (out / "weights.safetensors").is_file() and (out / "settings.json").is_file()
    run_flags = ["--agent", str(recipe), "--steps", "64", "--runs-dir", str(tmp_path / "runs"), *FAST_FLAGS]
    with_checkpoint = ["--set", f"representation.checkpoint={out}"]
    assert main(["train", "--env", "ImageToy-v0", *run_flags, *with_checkpoint]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert not (run_dir / "representation").exists()  # it used the checkpoint instead of pretraining its own
    capsys.readouterr()
    # CartPole observes a vector, not the image the checkpoint was fitted on
    assert main(["train", "--env", "CartPole-v1", *run_flags, *with_checkpoint]) == 2
    assert "pretrained on the observation space" in capsys.readouterr().err
    assert main(["train", "--env", "ImageToy-v0", *run_flags, "--set", "representation.checkpoint=nowhere"]) == 2
    assert "nowhere/settings.json: missing" in capsys.readouterr().err


class ScaleSpy(BaseCallback):
    """Records the features extractor's input scale at every step, rollout by rollout."""

    def __init__(self) -> None:
        super().__init__()
        self.rollouts: list[list[torch.Tensor]] = []

    def _on_rollout_start(self) -> None:
        self.rollouts.append([])

    def _on_step(self) -> bool:
        state_model = self.model.policy.features_extractor.state_model
        self.rollouts[-1].append(torch.cat([state_model.centre, state_model.half_width]).clone())
        return True


def online_ppo_under_vec_normalize(seed: int = 0) -> tuple[PPO, VecNormalize]:
    # CartPole's velocities are unbounded: the state model standardises them by running statistics
    env = VecNormalize(make_vec_env("CartPole-v1", n_envs=2, seed=seed), norm_obs=True, norm_reward=False)
    kwargs = representation_policy_kwargs(tiny("online"), {"net_arch": [8]})
    return PPO("MlpPolicy", env, n_steps=16, batch_size=32, seed=seed, policy_kwargs=kwargs, device="cpu"), env


def test_online_mode_changes_the_input_scale_only_between_rollouts() -> None:
    model, _ = online_ppo_under_vec_normalize()
    spy = ScaleSpy()
    model.learn(32 * 4, callback=[RepresentationCallback(tiny("online")), spy])
    for steps in spy.rollouts:  # the stored log-probabilities and values saw one scale per rollout
        assert all(torch.equal(scale, steps[0]) for scale in steps)
    firsts = [steps[0] for steps in spy.rollouts]
    assert not torch.equal(firsts[1], firsts[2])  # it does change, between rollouts


def test_online_mode_under_vec_normalize_learns_what_the_policy_reads() -> None:
    model, env = online_ppo_under_vec_normalize()
    callback = RepresentationCallback(tiny("online"))
    model.learn(32 * 3, callback=callback)
    assert callback.trainer is not None
    stored = callback.trainer.store.state()["next_obs"][: callback.trainer.store.size]
    # the normalised observations (clipped to ±10 by VecNormalize), not CartPole's raw ones
    raw = env.get_original_obs()
    assert np.abs(stored).max() <= env.clip_obs
    np.testing.assert_allclose(stored.mean(0), 0.0, atol=1.0)
    assert not np.allclose(env.normalize_obs(raw), raw)
    # the features extractor standardises them with statistics of the same, normalised, values
    state_model = model.policy.features_extractor.state_model
    free = ~state_model.bounded
    assert np.all(np.abs(state_model.stats.mean[free]) < 1.0)
